"""Benchmark: the split study on sweeps with known truth whose value of pretraining depends on N (issue 24).

    .venv/bin/python bench/bench_split.py [--seeds 50] [--bootstrap 400] [--starts 4] [--first-seed 0]

Truth: ``split_transfer_n``, ``E + A/N^α + B/D^β + C/(D′ + κ·(N/1e8)^η·D)^γ`` with η = 0.3 > 0 (larger models
transfer more from pretraining: under it the optimal share falls with the budget and with N, so the split point
D* = T·(1 − f*) rises with N). Design: 3 sizes (N = 3e4, 1.2e5, 4.8e5) x 3 pretraining budgets (P = 32,768,
90,112, 262,144) x 3 specialisation budgets (D′ = 8,192, 24,576, 65,536), plus the unsplit pretraining points
(D′ = 0): per size one pretraining run and one split run per P (its three D′ share the run label, like a WSD
trunk's branches), 36 points. Correlated noise on the log loss: one offset per size shared by all its runs (sd
0.5 %), one per run (sd 0.5 %), and a small term per point (sd 0.2 %); fitted as the workflow fits it (candidates
chosen by held-out error, bootstrap over runs with ``run_noise`` and ``base_noise`` stated at their true values).

Per seed: whether the 95 % intervals contain the true optimal share f*(N, T) at the largest size and largest fitted
budget T = D + D′ = 327,680, and the true K-domain compute multiplier (K = 3) there; whether the fitted split point
rises with N (D* at the largest size above D* at the smallest, same T); which form was chosen; the two findings'
verdicts (:func:`cpt_scaling.studies.split.split_findings`). Target: each coverage and ``rises`` >= 0.90. The last
line is ``split_cover_f=<> split_cover_mult=<> rises=<>``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import logging
import time
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd

from cpt_scaling.fit.fitting import fit_law
from cpt_scaling.fit.split_decisions import split_compute_multiplier
from cpt_scaling.laws import LAWS
from cpt_scaling.studies.split import split_findings

TRUE = {"E": 2.0, "A": 40.0, "alpha": 0.3, "B": 40.0, "beta": 0.28, "C": 200.0, "gamma": 0.42, "kappa": 1.0,
        "eta": 0.3}
SIZES = (3e4, 1.2e5, 4.8e5)
PRETRAIN = (32768, 90112, 262144)
SPEC = (8192, 24576, 65536)
K = 3
BASE_NOISE, RUN_NOISE, POINT_NOISE = 0.005, 0.005, 0.002


def sweep(seed: int) -> pd.DataFrame:
    """One synthetic split sweep: columns run, N, D, D_spec, loss."""
    rng = np.random.default_rng(seed)
    rows = []
    for i, n in enumerate(SIZES):
        base = rng.normal(0.0, BASE_NOISE)
        runs = [(f"pt-{i}", [(p, 0) for p in PRETRAIN])]
        runs += [(f"split-{i}-p{p}", [(p, d) for d in SPEC]) for p in PRETRAIN]
        for run, coords in runs:
            offset = base + rng.normal(0.0, RUN_NOISE)
            for d, d_spec in coords:
                rows.append({"run": run, "N": n, "D": float(d), "D_spec": float(d_spec),
                             "noise": offset + rng.normal(0.0, POINT_NOISE)})
    df = pd.DataFrame(rows)
    truth = LAWS["split_transfer_n"].predict(TRUE, {c: df[c].to_numpy(float) for c in ("N", "D", "D_spec")})
    return df.assign(loss=truth * np.exp(df.pop("noise"))).reset_index(drop=True)


def one_seed(seed: int, bootstrap: int, starts: int) -> dict[str, Any]:
    """Fit one sweep and score its decisions against the truth."""
    df = sweep(seed)
    law = fit_law("split", df[["N", "D", "D_spec", "loss"]], bootstrap=bootstrap, seed=seed, groups=df["run"],
                  bootstrap_starts=starts, run_noise=RUN_NOISE, base_noise=BASE_NOISE).to_json()
    truth = {"law": "split_transfer_n", "params": TRUE}
    n_max, n_min = max(SIZES), min(SIZES)
    total = float(max(PRETRAIN) + max(SPEC))
    fitted = {"one": split_compute_multiplier(law, N=n_max, total_tokens=total),
              "many": split_compute_multiplier(law, N=n_max, total_tokens=total, k=K),
              "small": split_compute_multiplier(law, N=n_min, total_tokens=total)}
    true_f = split_compute_multiplier(truth, N=n_max, total_tokens=total)["fraction"]
    true_mult = split_compute_multiplier(truth, N=n_max, total_tokens=total, k=K)["multiplier"]
    f, mult = fitted["one"], fitted["many"]
    rises = (1 - f["fraction"]) > (1 - fitted["small"]["fraction"])
    verdicts = {row["finding"]: row["verdict"] for row in split_findings(law, "synthetic")}
    return {"seed": seed, "law": law["law"], "f": f["fraction"], "f_lo": f["fraction_lo"], "f_hi": f["fraction_hi"],
            "true_f": true_f, "cover_f": f["fraction_lo"] <= true_f <= f["fraction_hi"],
            "mult": mult["multiplier"], "mult_lo": mult["multiplier_lo"], "mult_hi": mult["multiplier_hi"],
            "true_mult": true_mult, "cover_mult": mult["multiplier_lo"] <= true_mult <= mult["multiplier_hi"],
            "rises": bool(rises), **verdicts}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=50)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--bootstrap", type=int, default=400)
    ap.add_argument("--starts", type=int, default=4)
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    start = time.perf_counter()
    rows = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        row = one_seed(seed, args.bootstrap, args.starts)
        rows.append(row)
        print(f"seed {seed}: {row['law']} f*={row['f']:.3f} [{row['f_lo']:.3f}, {row['f_hi']:.3f}] (true "
              f"{row['true_f']:.3f}); K={K} multiplier {row['mult']:.3f} [{row['mult_lo']:.3f}, {row['mult_hi']:.3f}] "
              f"(true {row['true_mult']:.3f}); split point rises {row['rises']}", flush=True)
    df = pd.DataFrame(rows)
    print(f"{len(df)} seeds, {args.bootstrap} resamples x {args.starts} starts, {time.perf_counter() - start:.0f} s")
    print("chosen forms:", dict(Counter(df["law"])))
    for finding in ("split_optimal_share_falls_with_budget", "split_point_rises_with_size"):
        print(f"{finding}:", dict(Counter(df[finding])))
    print(f"split_cover_f={df['cover_f'].mean():.2f} split_cover_mult={df['cover_mult'].mean():.2f} "
          f"rises={df['rises'].mean():.2f}")


if __name__ == "__main__":
    main()
