"""Benchmark: coverage of the bootstrap's 95 % intervals on synthetic sweeps with known truth and shared offsets.

    .venv/bin/python bench/bench_coverage.py [--seeds 100] [--bootstrap 1000] [--starts 4] [--designs shared,few]

Two designs, each with D-CPT (L3) and Chinchilla sweeps on the demo's sizes (N = 2.5e4, 1e5, 2.2e5). Noise is
correlated as in a real sweep (log scale): every run draws one loss offset (sd 1 %), every checkpoint a small
extra term (sd 0.3 %).

- ``shared``: all runs of a size also share one offset (sd 1 %): they start from the same base model. D-CPT:
  3 sizes x 5 domain ratios (0, 0.25, 0.5, 0.75, 1) x 1 budget, 4 checkpoints per run (D = 16k..65k): 15 runs,
  60 points. Chinchilla: one pretraining run per size, 4 checkpoints (D = 65k..262k): 12 points. Fitted as a user
  who states what the runs share would: ``run_noise`` 0.01 (Chinchilla's one run per size needs it) and
  ``base_noise`` 0.01.
- ``few``: no shared offset, two or three runs per size, no noise stated (estimated from the runs). D-CPT: ratios
  (0, 0.5, 1), (0.25, 0.75), (0, 0.5, 1) for the three sizes: 8 runs, 32 points. Chinchilla: 2, 3, 2 runs per
  size with token budgets 131k, 262k, 393k (4 checkpoints each): 7 runs, 28 points.

Each seed's sweep is fitted as the workflow does (``groups`` = the runs, each resample refitted from ``--starts``
starts); a seed covers when the 95 % interval contains the true value. Quantities: α and β of both laws, the
usage-2 optimum r (largest size, 32k domain tokens) and the usage-3 optimal size (compute 6·1e5·65536, ratio 0.5),
both from the D-CPT fit. Target [0.90, 0.99] for each. The last line is
``coverage alpha=<a> beta=<b> r_opt=<r> n_opt=<n>``: per quantity the worse design (α, β: the worse law too).
``base_noise`` is passed only where stated and accepted, so the script also runs against code that predates it
(the "before" figures in bench/RESULTS.md; the first line says which noises the fits were given).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import inspect
import logging
import time
from typing import Any

import numpy as np
import pandas as pd

from cpt_scaling.fit import decisions
from cpt_scaling.fit.fitting import fit_law
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

#: The noise keywords this code's fit_law takes (code before issue 23 has no base_noise).
STATED = [k for k in ("run_noise", "base_noise") if k in inspect.signature(fit_law).parameters]


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


def one_seed(design: str, seed: int, args: argparse.Namespace) -> dict[str, tuple[float | None, float | None]]:
    """Intervals ``(lo, hi)`` of every quantity for one seed of one design."""
    rng = np.random.default_rng([seed, list(DESIGNS).index(design)])
    noise = {k: v for k, v in DESIGNS[design].items() if k in STATED and v is not None}
    out: dict[str, tuple[float | None, float | None]] = {}
    for law, truth, prefix in (("dcpt", L3_TRUE, "l3"), ("chinchilla", CHIN_TRUE, "chin")):
        df = sweep(law, truth, design, rng)
        res = fit_law(law, df.drop(columns="run"), bootstrap=args.bootstrap, groups=df["run"],
                      bootstrap_starts=args.starts, seed=seed, **noise)
        for name in ("alpha", "beta"):
            ci = res.ci[name]
            out[f"{prefix}_{name}"] = (None, None) if ci is None else (ci[0], ci[1])
        if law == "dcpt":
            doc = res.to_json()
            u2 = decisions.dcpt_ratio_for_limited_domain_data(doc, N=SIZES[-1], domain_tokens=DOMAIN_TOKENS)
            u3 = decisions.dcpt_compute_allocation(doc, compute=COMPUTE, r=COMPUTE_RATIO)
            out["r_opt"] = (u2["ratio_lo"], u2["ratio_hi"])
            out["n_opt"] = (u3["N_lo"], u3["N_hi"])
            out["method"] = res.bootstrap_info.get("resampling", res.bootstrap_info.get("method"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--starts", type=int, default=4)
    parser.add_argument("--designs", default="shared,few", help="comma-separated subset of: shared, few")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    truth = truths()
    print("truth: " + ", ".join(f"{k} {v:.4g}" for k, v in truth.items()) + f"; fits take: {', '.join(STATED)}")
    cover: dict[str, dict[str, float]] = {}
    t0 = time.perf_counter()
    for design in args.designs.split(","):
        hits: dict[str, list[bool]] = {k: [] for k in truth}
        widths: dict[str, list[float]] = {k: [] for k in truth}
        for seed in range(args.seeds):
            got = one_seed(design, seed, args)
            for k, t in truth.items():
                lo, hi = got[k]
                hits[k].append(lo is not None and hi is not None and lo <= t <= hi)
                widths[k].append(np.nan if lo is None or hi is None else
                                 (np.log(hi / lo) if k == "n_opt" else hi - lo))
            if (seed + 1) % 10 == 0:
                running = " ".join(f"{k}={np.mean(v):.2f}" for k, v in hits.items())
                print(f"  {design}: {seed + 1} seeds, {time.perf_counter() - t0:.0f} s: {running}", flush=True)
        cover[design] = {k: float(np.mean(v)) for k, v in hits.items()}
        print(f"design {design} ({args.seeds} seeds, {args.bootstrap} resamples, {args.starts} starts; D-CPT "
              f"resampling: {got['method']})")
        print("| quantity | truth | coverage | median 95 % width (n_opt: log ratio) |")
        print("| --- | --- | --- | --- |")
        for k in truth:
            print(f"| {k} | {truth[k]:.4g} | {cover[design][k]:.2f} | {np.nanmedian(widths[k]):.3g} |")
    print(f"{time.perf_counter() - t0:.0f} s in all")
    worst = {k: min(min(c[k] for c in cover.values()) for k in keys)
             for k, keys in (("alpha", ("l3_alpha", "chin_alpha")), ("beta", ("l3_beta", "chin_beta")),
                             ("r_opt", ("r_opt",)), ("n_opt", ("n_opt",)))}
    print("coverage " + " ".join(f"{k}={v:.2f}" for k, v in worst.items()))


if __name__ == "__main__":
    main()
