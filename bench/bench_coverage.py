"""Benchmark: coverage of the bootstrap's 95 % intervals on synthetic sweeps with known truth and shared offsets.

    .venv/bin/python bench/bench_coverage.py [--seeds 100] [--first-seed 0] [--bootstrap 1000] [--starts 4]
        [--designs shared,few] [--save rows.pkl] [--load a.pkl,b.pkl]

Two designs, each with D-CPT (L3) and Chinchilla sweeps on the demo's sizes (N = 2.5e4, 1e5, 2.2e5). Noise is
correlated as in a real sweep (log scale): every run draws one loss offset (sd 1 %), every checkpoint a small
extra term (sd 0.3 %).

- ``shared``: all runs of a size also share one offset (sd 1 %): they start from the same base model. D-CPT:
  3 sizes x 5 domain ratios (0, 0.25, 0.5, 0.75, 1) x 1 budget, 4 checkpoints per run (D = 16k..65k): 15 runs,
  60 points. Chinchilla: one pretraining run per size, 4 checkpoints (D = 65k..262k): 12 points. Fitted as a user
  who states what the runs share would: ``run_noise`` 0.01 (Chinchilla's one run per size needs it) and
  ``base_noise`` 0.01; with the run noise stated, both laws' resamples are parametric (``hierarchical``).
- ``few``: no shared offset, two or three runs per size, no noise stated (estimated from the runs). D-CPT: ratios
  (0, 0.5, 1), (0.25, 0.75), (0, 0.5, 1) for the three sizes: 8 runs, 32 points. Chinchilla: 2, 3, 2 runs per
  size with token budgets 131k, 262k, 393k (4 checkpoints each): 7 runs, 28 points.

Each seed's sweep is fitted as the workflow does (``groups`` = the runs, each resample refitted from ``--starts``
starts); a seed covers when the 95 % interval contains the true value. Quantities: α and β of both laws, the
usage-2 optimum r (largest size, 32k domain tokens) and the usage-3 optimal size (compute 6·1e5·65536, ratio 0.5),
both from the D-CPT fit (evaluated at the fit and at every resample). Target [0.90, 0.99] for each. Every interval
method of :func:`~cpt_scaling.fit.bootstrap.interval` (percentile, basic, BC) is computed from the same resamples,
so the methods are compared on the same fits; choose on some seeds and report others (``--first-seed``). The
``reported`` column is what the workflow reports: the fit's ``ci`` for α, β and the decision functions'
``_lo``/``_hi`` for r and N, i.e. the percentile interval, or its union with the profile-likelihood set where the
fit puts E at its floor (:mod:`cpt_scaling.fit.profile`). Per quantity the table also splits the percentile and
reported coverage by whether the fit puts E at zero (flagged "not identified"). The last line is
``coverage alpha=<a> beta=<b> r_opt=<r> n_opt=<n>`` for the reported intervals: per quantity the worst design
(α, β: the worst law too), the coverage farthest outside the target band [0.90, 0.99] on either side; the lines
before it give the same for each bootstrap method alone.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import logging
import pickle
import time
from typing import Any

import numpy as np
import pandas as pd

from cpt_scaling.fit import decisions
from cpt_scaling.fit.bootstrap import INTERVAL, INTERVAL_METHODS, interval
from cpt_scaling.fit.fitting import E_FLOOR_SHARE, fit_law
from cpt_scaling.laws import LAWS

SIZES = (2.5e4, 1e5, 2.2e5)
RATIOS = (0.0, 0.25, 0.5, 0.75, 1.0)
FEW_RATIOS = ((0.0, 0.5, 1.0), (0.25, 0.75), (0.0, 0.5, 1.0))
CPT_CKPTS = (16384.0, 32768.0, 49152.0, 65536.0)
PRE_BUDGETS = (131072.0, 262144.0, 393216.0)
FEW_PRE_RUNS = (2, 3, 2)
L3_TRUE = {"E": 2.0, "A": 60.0, "B": 40.0, "C": 0.3, "alpha": 0.34, "beta": 0.30, "gamma": 0.5, "eta": 0.6,
           "epsilon": 0.05}
CHIN_TRUE = {"E": 1.8, "A": 60.0, "B": 120.0, "alpha": 0.34, "beta": 0.28}
DOMAIN_TOKENS = 32768.0
COMPUTE, COMPUTE_RATIO = 6.0 * 1e5 * 65536.0, 0.5
BASE_SD, RUN_SD, POINT_SD = 0.01, 0.01, 0.003
DESIGNS = {"shared": {"base_sd": BASE_SD, "run_noise": RUN_SD, "base_noise": BASE_SD},
           "few": {"base_sd": 0.0, "run_noise": None, "base_noise": None}}


def runs_of(law: str, design: str) -> list[dict[str, Any]]:
    """The runs of one sweep: their columns and checkpoints (``D`` values)."""
    if law == "dcpt":
        ratios = [RATIOS] * len(SIZES) if design == "shared" else FEW_RATIOS
        return [{"N": n, "r": r, "ckpts": CPT_CKPTS} for n, rs in zip(SIZES, ratios, strict=True) for r in rs]
    counts = [1] * len(SIZES) if design == "shared" else FEW_PRE_RUNS
    budgets = (PRE_BUDGETS[1],) if design == "shared" else PRE_BUDGETS
    return [{"N": n, "ckpts": tuple(b * k / 4 for k in range(1, 5))} for n, m in zip(SIZES, counts, strict=True)
            for b in budgets[:m]]


def sweep(law: str, truth: dict[str, float], design: str, rng: np.random.Generator) -> pd.DataFrame:
    """Points of one synthetic sweep: a shared offset per size, one per run, one per point; ``run`` names runs."""
    base = {n: rng.normal(0.0, DESIGNS[design]["base_sd"]) for n in SIZES}
    rows = []
    for i, run in enumerate(runs_of(law, design)):
        offset = base[run["N"]] + rng.normal(0.0, RUN_SD)
        cols = {k: v for k, v in run.items() if k != "ckpts"}
        for d in run["ckpts"]:
            rows.append({**cols, "D": d, "run": f"run{i}", "noise": offset + rng.normal(0.0, POINT_SD)})
    df = pd.DataFrame(rows)
    spec = LAWS[law]
    true = spec.predict(truth, {c: df[c].to_numpy(float) for c in spec.columns})
    return df.assign(loss=true * np.exp(df["noise"])).drop(columns="noise")


def truths() -> dict[str, float]:
    law = {"law": "dcpt", "params": L3_TRUE}
    return {"l3_alpha": L3_TRUE["alpha"], "l3_beta": L3_TRUE["beta"], "chin_alpha": CHIN_TRUE["alpha"],
            "chin_beta": CHIN_TRUE["beta"],
            "r_opt": float(decisions.dcpt_ratio_for_limited_domain_data(law, N=SIZES[-1],
                                                                        domain_tokens=DOMAIN_TOKENS)["ratio"]),
            "n_opt": float(decisions.dcpt_compute_allocation(law, compute=COMPUTE, r=COMPUTE_RATIO)["N"])}


def decision_values(doc: dict[str, Any], samples: np.ndarray) -> dict[str, np.ndarray]:
    """The usage-2 optimum r and the usage-3 optimal size of a D-CPT fit and of each resample (row 0: the fit)."""
    plain = {k: v for k, v in doc.items() if k != "bootstrap_samples"}
    names = list(doc["bootstrap_samples"]["params"]) if "bootstrap_samples" in doc else []
    rows = [{}] + [dict(zip(names, row, strict=True)) for row in samples]
    out: dict[str, list[float]] = {"r_opt": [], "n_opt": []}
    for row in rows:
        if any(not np.isfinite(v) for v in row.values()):
            out["r_opt"].append(np.nan)
            out["n_opt"].append(np.nan)
            continue
        law = {**plain, "params": {**doc["params"], **row}}
        u2 = decisions.dcpt_ratio_for_limited_domain_data(law, N=SIZES[-1], domain_tokens=DOMAIN_TOKENS)
        u3 = decisions.dcpt_compute_allocation(law, compute=COMPUTE, r=COMPUTE_RATIO)
        out["r_opt"].append(np.nan if u2["ratio"] is None else u2["ratio"])
        out["n_opt"].append(np.nan if u3["N"] is None else u3["N"])
    return {k: np.asarray(v, dtype=float) for k, v in out.items()}


def one_seed(design: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """Per quantity the point estimate and its resampled values ``(point, (R,) values)``; per law whether its
    fit puts E at zero (``<law>_E_zero``: below 1 % of the smallest loss, flagged not identified); the D-CPT
    fit's resampling."""
    rng = np.random.default_rng([seed, list(DESIGNS).index(design)])
    noise = {k: v for k, v in DESIGNS[design].items() if k != "base_sd" and v is not None}
    out: dict[str, Any] = {"reported": {}}
    for law, truth, prefix in (("dcpt", L3_TRUE, "l3"), ("chinchilla", CHIN_TRUE, "chin")):
        df = sweep(law, truth, design, rng)
        res = fit_law(law, df.drop(columns="run"), bootstrap=args.bootstrap, groups=df["run"],
                      bootstrap_starts=args.starts, seed=seed, **noise)
        samples = res.samples if res.samples is not None else np.empty((0, len(res.params)))
        for j, name in enumerate(res.params):
            if name in ("alpha", "beta"):
                out[f"{prefix}_{name}"] = (res.params[name], samples[:, j])
        out[f"{prefix}_E_zero"] = res.params["E"] < E_FLOOR_SHARE * float(df["loss"].min())
        out["reported"].update({f"{prefix}_{k}": tuple(res.ci[k] or (np.nan, np.nan)) for k in ("alpha", "beta")})
        if law == "dcpt":
            doc = res.to_json()
            values = decision_values(doc, samples)
            out.update({k: (v[0], v[1:]) for k, v in values.items()})
            out["method"] = res.bootstrap_info.get("resampling", res.bootstrap_info.get("method"))
            u2 = decisions.dcpt_ratio_for_limited_domain_data(doc, N=SIZES[-1], domain_tokens=DOMAIN_TOKENS)
            u3 = decisions.dcpt_compute_allocation(doc, compute=COMPUTE, r=COMPUTE_RATIO)
            out["reported"].update(r_opt=(u2["ratio_lo"], u2["ratio_hi"]), n_opt=(u3["N_lo"], u3["N_hi"]))
    return out


def intervals(key: str, row: dict[str, Any]) -> dict[str, tuple[float, float]]:
    """The 95 % interval of one quantity of one seed by every method, from the same resamples. Positive quantities
    (all but r) are reflected on a log scale by ``basic``; the percentile interval of a decision is widened to
    contain the point, as the workflow's decision tables are; ``reported`` is what the fit (α, β: ``ci``) and
    the decision functions (``<key>_lo``/``_hi``) report: percentile, or its union with the profile set."""
    point, values = row[key]
    out: dict[str, tuple[float, float]] = {"reported": tuple(float(v) for v in row["reported"][key])}
    finite = values[np.isfinite(values)]
    if not finite.size or not np.isfinite(point):
        return {m: (np.nan, np.nan) for m in METHODS}
    for method in INTERVAL_METHODS:
        if method == "basic" and key != "r_opt":
            lo, hi = np.exp(interval(np.log(finite), method=method, point=np.log(point)))
        else:
            lo, hi = interval(finite, method=method, point=point)
        if method == "percentile" and key in ("r_opt", "n_opt"):
            lo, hi = min(lo, point), max(hi, point)
        out[method] = (float(lo), float(hi))
    return out


METHODS = (*INTERVAL_METHODS, "reported")
REPORTED = "reported"
L3_KEYS = ("l3_alpha", "l3_beta", "r_opt", "n_opt")


def summarise(design: str, rows: list[dict[str, Any]], truth: dict[str, float]) -> dict[str, dict[str, float]]:
    """Print one design's table; return coverage per method and quantity."""
    cover: dict[str, dict[str, float]] = {}
    table = []
    for key, t in truth.items():
        cells = []
        split: tuple[str, ...] = ()
        for method in METHODS:
            ivs = [intervals(key, row)[method] for row in rows]
            hit = np.array([lo <= t <= hi for lo, hi in ivs])
            width = [np.log(hi / lo) if key == "n_opt" else hi - lo for lo, hi in ivs]
            cover.setdefault(method, {})[key] = float(hit.mean())
            cells.append(f"{hit.mean():.2f} / {np.nanmedian(width):.3g}")
            if method in (INTERVAL, REPORTED):
                flagged = np.array([row[("l3" if key in L3_KEYS else "chin") + "_E_zero"] for row in rows])
                split += (f"{hit[~flagged].mean():.2f} ({(~flagged).sum()})" if (~flagged).any() else "-",
                          f"{hit[flagged].mean():.2f} ({flagged.sum()})" if flagged.any() else "-")
        table.append(f"| {key} | {t:.4g} | " + " | ".join(cells) + " | " + " | ".join(split) + " |")
    print(f"design {design} ({len(rows)} seeds; D-CPT resampling: {rows[-1]['method']}); coverage / median 95 % "
          "width (n_opt: log hi/lo) per interval method; the percentile and reported coverage (seeds) where the "
          "fit's E is identified / at zero")
    print("| quantity | truth | " + " | ".join(METHODS) + " | percentile, E identified | percentile, E at zero | "
          "reported, E identified | reported, E at zero |")
    print("| --- | --- | " + " | ".join("---" for _ in METHODS) + " | --- | --- | --- | --- |")
    print("\n".join(table))
    return cover


#: The coverage the issue asks of each quantity in each design.
TARGET_BAND = (0.90, 0.99)


def worst(values: list[float]) -> float:
    """The value farthest outside :data:`TARGET_BAND` (too narrow or too wide alike); where all lie inside it, the
    one nearest its edge."""
    lo, hi = TARGET_BAND
    return max(values, key=lambda c: max(lo - c, c - hi))


def worst_line(cover: dict[str, dict[str, dict[str, float]]], method: str) -> str:
    """``coverage alpha=.. beta=.. r_opt=.. n_opt=..``: per quantity the worst design (α, β: the worst law too) by
    :func:`worst`, so that an interval that covers every seed (wider than its level) shows as well as one that
    misses too often."""
    groups = (("alpha", ("l3_alpha", "chin_alpha")), ("beta", ("l3_beta", "chin_beta")), ("r_opt", ("r_opt",)),
              ("n_opt", ("n_opt",)))
    return "coverage " + " ".join(f"{k}={worst([c[method][q] for c in cover.values() for q in keys]):.2f}"
                                  for k, keys in groups)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--first-seed", type=int, default=0, help="seeds first-seed .. first-seed + seeds - 1")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--starts", type=int, default=4)
    parser.add_argument("--designs", default="shared,few", help="comma-separated subset of: shared, few")
    parser.add_argument("--save", help="pickle the seeds' rows here as they finish (one design per run)")
    parser.add_argument("--load", help="comma-separated pickles of --save: tabulate them instead of fitting")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    truth = truths()
    print("truth: " + ", ".join(f"{k} {v:.4g}" for k, v in truth.items()))
    cover: dict[str, dict[str, dict[str, float]]] = {}
    t0 = time.perf_counter()
    saved: dict[str, list[dict[str, Any]]] = {}
    for path in args.load.split(",") if args.load else []:
        with open(path, "rb") as fh:
            for design, rows in pickle.load(fh).items():
                saved.setdefault(design, []).extend(rows)
    for design in args.designs.split(","):
        rows = saved.get(design, [])
        for seed in range(args.first_seed, args.first_seed + args.seeds) if not args.load else ():
            rows.append(one_seed(design, seed, args))
            if args.save:  # every seed's row as it finishes: a run cut short can still be tabulated (--load)
                with open(args.save, "wb") as fh:
                    pickle.dump({design: rows}, fh)
            if len(rows) % 10 == 0:
                print(f"  {design}: {len(rows)} seeds, {time.perf_counter() - t0:.0f} s", flush=True)
        if rows:
            cover[design] = summarise(design, rows, truth)
    print(f"{time.perf_counter() - t0:.0f} s in all")
    for method in METHODS:  # the reported intervals last
        print(("" if method == REPORTED else f"{method} interval: ") + worst_line(cover, method))

if __name__ == "__main__":
    main()
