"""Benchmark: the project's Chinchilla fitter vs a straightforward scipy loop over the same init grid.

    .venv/bin/python bench/bench_fit.py [--baseline-starts K] [--seed S]

Data: 240 synthetic points (12 sizes x 20 token counts) of ``E + A/N^α + B/D^β`` with 0.5 % multiplicative
noise. Both sides minimise the same objective (sum of Huber δ=1e-3 on log-loss, parameters in log space, same
bounds) from the same 4500-point grid. Baseline: ``scipy.optimize.minimize(method="L-BFGS-B")`` once per start
with finite-difference gradients; the project: :func:`cpt_scaling.fit.fitting.fit_law` (batched L-BFGS, analytic
gradients). Prints both times, the speed ratio, both optima, and the end-to-end time of ``cpt-scaling fit
chinchilla`` (a subprocess, no bootstrap). BLAS is pinned to one thread for both sides (see RESULTS.md).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from cpt_scaling.fit.fitting import fit_law
from cpt_scaling.fit.optimize import huber
from cpt_scaling.laws import LAWS

TRUE = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
DELTA = 1e-3


def make_points(seed: int) -> pd.DataFrame:
    """240 noisy Chinchilla points."""
    n = np.repeat(np.geomspace(1e7, 2e9, 12), 20)
    d = np.tile(np.geomspace(1e8, 2e11, 20), 12)
    loss = LAWS["chinchilla"].predict(TRUE, {"N": n, "D": d})
    loss = loss * np.exp(np.random.default_rng(seed).normal(0.0, 0.005, n.size))
    return pd.DataFrame({"N": n, "D": d, "loss": loss})


def baseline(df: pd.DataFrame, starts: np.ndarray) -> tuple[float, np.ndarray, float]:
    """Per-start scipy L-BFGS-B with numerical gradients; returns (best objective, best params, seconds)."""
    law = LAWS["chinchilla"]
    ln_n, ln_d = np.log(df["N"].to_numpy()), np.log(df["D"].to_numpy())
    log_y = np.log(df["loss"].to_numpy())

    def objective(theta: np.ndarray) -> float:
        e, a, b, alpha, beta = np.exp(theta)
        pred = e + a * np.exp(-alpha * ln_n) + b * np.exp(-beta * ln_d)
        return float(huber(np.log(pred) - log_y, DELTA).sum())

    bounds = [tuple(np.log(law.param_bounds(k))) for k in law.params]
    best_f, best_x = np.inf, starts[0]
    t0 = time.perf_counter()
    for x0 in np.log(starts):
        res = minimize(objective, np.clip(x0, *zip(*bounds, strict=True)), method="L-BFGS-B", bounds=bounds)
        if res.fun < best_f:
            best_f, best_x = float(res.fun), np.exp(res.x)
    return best_f, best_x, time.perf_counter() - t0


def cli_seconds(df: pd.DataFrame) -> float:
    """Wall time of `cpt-scaling fit chinchilla --data points.csv --out law.json` as a subprocess."""
    tmp = Path(tempfile.mkdtemp())
    try:
        data = tmp / "points.csv"
        df.to_csv(data, index=False)
        exe = shutil.which("cpt-scaling", path=str(Path(sys.executable).parent)) or "cpt-scaling"
        t0 = time.perf_counter()
        subprocess.run(
            [exe, "fit", "chinchilla", "--data", str(data), "--out", str(tmp / "law.json")], check=True
        )
        return time.perf_counter() - t0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--baseline-starts",
        type=int,
        default=0,
        help="run the baseline on a random subset of K starts and extrapolate (0: all)",
    )
    args = parser.parse_args()
    df = make_points(args.seed)
    grid = LAWS["chinchilla"].grid_points()
    print(f"points: {len(df)}, grid starts: {len(grid)}")

    fit_law("chinchilla", df.head(30))  # warm-up (imports, caches)
    t0 = time.perf_counter()
    res = fit_law("chinchilla", df)
    ours = time.perf_counter() - t0
    print(f"project fitter: {ours:.3f} s, objective {res.huber:.12e}, params {res.params}")

    starts = grid
    if args.baseline_starts:
        pick = np.random.default_rng(1).choice(len(grid), args.baseline_starts, replace=False)
        starts = grid[pick]
    f_base, x_base, t_base = baseline(df, starts)
    scale = len(grid) / len(starts)
    note = "" if scale == 1 else f" on {len(starts)} starts, extrapolated x{scale:.1f}"
    print(
        f"scipy loop: {t_base * scale:.1f} s{note}, objective {f_base:.12e}, params "
        f"{dict(zip(LAWS['chinchilla'].params, x_base.round(6), strict=True))}"
    )
    ratio = t_base * scale / ours
    diff = res.huber - f_base
    print(f"speed ratio: {ratio:.0f}x (target >= 100x)")
    print(
        f"objective difference (project - scipy): {diff:.3e} (target: within 1e-9, negative = project lower)"
    )
    secs = cli_seconds(df)
    print(f"cpt-scaling fit chinchilla end to end: {secs:.2f} s (target <= 2 s)")


if __name__ == "__main__":
    main()
