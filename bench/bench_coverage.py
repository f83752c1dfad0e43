"""Benchmark: coverage of the bootstrap's 95 % intervals on synthetic sweeps with known truth.

    .venv/bin/python bench/bench_coverage.py [--seeds 100] [--bootstrap 1000] [--starts 4] [--run-noise 0.01]

Data: the demo's run structure. D-CPT (L3): 3 sizes (N = 2.5e4, 1e5, 2.2e5, the demo's non-embedding sizes) x 5
domain ratios (0, 0.25, 0.5, 0.75, 1) x 1 budget, 4 checkpoints per run (D = 16k..65k tokens): 15 runs, 60 points.
Chinchilla: 3 pretraining runs (one per size), 4 checkpoints each (D = 65k..262k): 12 points. Noise is correlated
within a run: each run draws one log-loss offset (sd 1 %), each checkpoint a small extra term (sd 0.3 %), so a
run's checkpoints move together as a real run's do (one seed, one data order).

Each seed's sweep is fitted as the workflow does (all sizes, bootstrap over whole runs, each resample refitted from
``--starts`` starts); a seed covers when the 95 % percentile interval contains the true value. The D-CPT runs are
resampled within each size. Chinchilla has one run per size, whose offsets its size terms absorb, so it is fitted
with the stated run noise ``--run-noise`` (``fit.run_noise``: parametric resamples), by default the simulation's
own 1 %; the same seeds are refitted with half and twice that noise and without it (whole-run resampling), to show
what a misstated or missing noise does. Reported: coverage of α and β for both laws, and of the true usage-2
optimum r (largest size, 32k domain tokens) by the decision's interval; the target for each is [0.90, 0.99]. The
last line is ``coverage alpha=<x> beta=<y> r_opt=<z>``, with alpha and beta the lower coverage of the two laws
(Chinchilla at the stated run noise).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import itertools
import logging
import time

import numpy as np
import pandas as pd

from cpt_scaling.fit import decisions
from cpt_scaling.fit.fitting import fit_law
from cpt_scaling.laws import LAWS

SIZES = (2.5e4, 1e5, 2.2e5)
RATIOS = (0.0, 0.25, 0.5, 0.75, 1.0)
CPT_CKPTS = (16384.0, 32768.0, 49152.0, 65536.0)
PRE_CKPTS = (65536.0, 131072.0, 196608.0, 262144.0)
L3_TRUE = {"E": 2.0, "A": 60.0, "B": 40.0, "C": 0.3, "alpha": 0.34, "beta": 0.30, "gamma": 0.5, "eta": 0.6,
           "epsilon": 0.05}
CHIN_TRUE = {"E": 1.8, "A": 60.0, "B": 120.0, "alpha": 0.34, "beta": 0.28}
DOMAIN_TOKENS = 32768.0
RUN_SD, POINT_SD = 0.01, 0.003


def sweep(law: str, truth: dict[str, float], rng: np.random.Generator) -> pd.DataFrame:
    """Points of one synthetic sweep with per-run correlated noise; column ``run`` names each run."""
    if law == "dcpt":
        runs = [{"N": n, "r": r} for n, r in itertools.product(SIZES, RATIOS)]
        ckpts = CPT_CKPTS
    else:
        runs = [{"N": n} for n in SIZES]
        ckpts = PRE_CKPTS
    rows = []
    for i, run in enumerate(runs):
        offset = rng.normal(0.0, RUN_SD)
        for d in ckpts:
            rows.append({**run, "D": d, "run": f"run{i}", "noise": offset + rng.normal(0.0, POINT_SD)})
    df = pd.DataFrame(rows)
    spec = LAWS[law]
    true = spec.predict(truth, {c: df[c].to_numpy(float) for c in spec.columns})
    return df.assign(loss=true * np.exp(df["noise"])).drop(columns="noise")


def true_r_opt() -> float:
    law = {"law": "dcpt", "params": L3_TRUE}
    return float(decisions.dcpt_ratio_for_limited_domain_data(law, N=SIZES[-1], domain_tokens=DOMAIN_TOKENS)["ratio"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--starts", type=int, default=4)
    parser.add_argument("--run-noise", type=float, default=RUN_SD, help="fit.run_noise stated for Chinchilla")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    r_true = true_r_opt()
    print(f"truth: L3 alpha {L3_TRUE['alpha']}, beta {L3_TRUE['beta']}; Chinchilla alpha {CHIN_TRUE['alpha']}, "
          f"beta {CHIN_TRUE['beta']}; usage-2 optimum r = {r_true:.4f} (N = {SIZES[-1]:g}, "
          f"{DOMAIN_TOKENS:g} domain tokens)")
    variants = {"x0.5": 0.5 * args.run_noise, "x2": 2.0 * args.run_noise, "none": None}
    keys = ["l3_alpha", "l3_beta", "chin_alpha", "chin_beta", "r_opt"]
    keys += [f"chin_{p}_{v}" for v in variants for p in ("alpha", "beta")]
    hits: dict[str, list[bool]] = {k: [] for k in keys}
    widths: dict[str, list[float]] = {k: [] for k in hits}
    points: dict[str, list[float]] = {k: [] for k in hits}
    failed = 0
    t0 = time.perf_counter()
    for seed in range(args.seeds):
        rng = np.random.default_rng(seed)
        for law, truth, prefix in (("dcpt", L3_TRUE, "l3"), ("chinchilla", CHIN_TRUE, "chin")):
            df = sweep(law, truth, rng)
            fits = {"": args.run_noise} | ({f"_{v}": noise for v, noise in variants.items()} if law == "chinchilla"
                                           else {})
            for suffix, noise in fits.items():
                res = fit_law(law, df.drop(columns="run"), bootstrap=args.bootstrap, groups=df["run"],
                              bootstrap_starts=args.starts, seed=seed, run_noise=noise)
                failed += res.bootstrap_info["failed"] if not suffix else 0
                for name in ("alpha", "beta"):
                    ci = res.ci[name]
                    key = f"{prefix}_{name}{suffix}"
                    hits[key].append(ci is not None and ci[0] <= truth[name] <= ci[1])
                    widths[key].append(np.nan if ci is None else ci[1] - ci[0])
                    points[key].append(res.params[name])
            if law == "dcpt":
                u2 = decisions.dcpt_ratio_for_limited_domain_data(res.to_json(), N=SIZES[-1],
                                                                  domain_tokens=DOMAIN_TOKENS)
                lo, hi = u2["ratio_lo"], u2["ratio_hi"]
                hits["r_opt"].append(lo is not None and lo <= r_true <= hi)
                widths["r_opt"].append(np.nan if lo is None else hi - lo)
                points["r_opt"].append(u2["ratio"])
        if (seed + 1) % 10 == 0:
            running = " ".join(f"{k}={np.mean(v):.2f}" for k, v in hits.items() if k in keys[:5])
            print(f"  {seed + 1} seeds, {time.perf_counter() - t0:.0f} s: {running}", flush=True)
    secs = time.perf_counter() - t0
    print(f"{args.seeds} seeds x 2 laws (+3 Chinchilla variants), {args.bootstrap} resamples, {args.starts} starts "
          f"each: {secs:.0f} s; failed resamples (main fits): {failed}")
    print("| quantity | truth | coverage | median 95 % width | point estimates 5-95 % |")
    print("| --- | --- | --- | --- | --- |")
    truth_of = {k: CHIN_TRUE[k.split("_")[1]] for k in keys if k.startswith("chin")}
    truth_of |= {"l3_alpha": L3_TRUE["alpha"], "l3_beta": L3_TRUE["beta"], "r_opt": r_true}
    print(f"(chin_*: stated run noise {args.run_noise:g}; _x0.5, _x2: half, twice that; _none: whole-run resampling)")
    cover = {k: float(np.mean(v)) for k, v in hits.items()}
    for k in hits:
        p5, p95 = np.percentile(points[k], [5, 95])
        print(f"| {k} | {truth_of[k]:.4g} | {cover[k]:.2f} | {np.nanmedian(widths[k]):.3g} | {p5:.3g}-{p95:.3g} |")
    alpha = min(cover["l3_alpha"], cover["chin_alpha"])
    beta = min(cover["l3_beta"], cover["chin_beta"])
    print(f"coverage alpha={alpha:.2f} beta={beta:.2f} r_opt={cover['r_opt']:.2f}")


if __name__ == "__main__":
    main()
