"""Benchmark: does the project's fitter reach the minimum of its own objective?

    .venv/bin/python bench/bench_fit_optimum.py [--fits 300] [--seed 0] [--skip 0]

Each fit draws a law (cycled over: powerlaw on 3 and on 4 sizes, chinchilla on 3-12 sizes, dcpt (L3),
split_separable, split_effective, cross_domain), a design (demo-like tiny sizes and token counts, or Qwen-like
0.5-14B sizes and billions of tokens), a truth whose terms have realistic magnitudes, and losses with correlated
run noise: one log-normal offset per run (shared by all of the run's checkpoints) plus point noise. The project
fits it with :func:`cpt_scaling.fit.fitting.fit_law` (no bootstrap). The reference optimum is the best of

* the project's optimum polished by scipy Nelder-Mead (adaptive, restarted until it stops improving), and
* a scipy L-BFGS-B multistart (analytic gradient, the same bounds, 15 random starts from the law's initialisation grid),
  its best result polished by Nelder-Mead as well,

all on the project's objective (Huber δ = 1e-3 on log loss, in the optimiser's coordinates), evaluated by the
project's :class:`~cpt_scaling.fit.optimize.Objective` (the reference is :mod:`cpt_scaling.fit.optimum_check`'s, which
the demo recorder also applies to the demo's own fits). A fit counts as at the optimum when its objective is within
1e-6 relative of the reference. Prints one line per law family and, last, ``optimum_share=<share> worst_ratio=<max
project/best>``. BLAS is pinned to one thread. ``--skip K`` draws the first ``K`` cases without fitting them, so
that chunks run side by side (``--fits 150`` and ``--skip 150``) fit the same 300 cases as one run.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import itertools
import time
from collections import defaultdict

import numpy as np
import pandas as pd

from cpt_scaling.fit.fitting import fit_law
from cpt_scaling.fit.optimize import Objective
from cpt_scaling.fit.optimum_check import TOL, reference
from cpt_scaling.laws import LAWS

DELTA = 1e-3
KINDS = ("powerlaw3", "powerlaw4", "chinchilla", "dcpt", "split_separable", "split_effective", "cross_domain")
DEMO_SIZES = np.array([3e4, 1e5, 3e5, 1e6])
QWEN_SIZES = np.array([0.5e9, 1.5e9, 3e9, 7e9, 14e9])


def _frame(**axes: object) -> pd.DataFrame:
    return pd.DataFrame(list(itertools.product(*axes.values())), columns=list(axes))


def _noisy(df: pd.DataFrame, law: str, truth: dict[str, float], run_cols: list[str], rng: np.random.Generator
           ) -> pd.DataFrame:
    """Losses of ``law`` at ``truth`` with a log-normal offset per run (rows sharing ``run_cols``) and point noise."""
    spec = LAWS[law]
    true = spec.predict({**spec.fixed, **truth}, {c: df[c].to_numpy(float) for c in spec.columns})
    run = df.groupby(run_cols, sort=False).ngroup().to_numpy()
    run_sd, point_sd = rng.uniform(0.002, 0.01), rng.uniform(0.0005, 0.003)
    offset = rng.normal(0.0, run_sd, run.max() + 1)[run]
    return df.assign(loss=true * np.exp(offset + rng.normal(0.0, point_sd, len(df))))


def _terms(rng: np.random.Generator, n_min: float, d_min: float) -> dict[str, float]:
    """E, exponents and coefficients whose size and data terms are 0.2-1.5 nats at the smallest N and D."""
    alpha, beta = rng.uniform(0.15, 0.6, 2)
    return {"E": rng.uniform(1.2, 3.0), "alpha": alpha, "beta": beta,
            "A": rng.uniform(0.2, 1.5) * n_min ** alpha, "B": rng.uniform(0.2, 1.5) * d_min ** beta}


def make_case(kind: str, rng: np.random.Generator) -> tuple[str, pd.DataFrame]:
    """A law name and a noisy points table for one benchmark fit of ``kind``."""
    qwen = bool(rng.integers(2))
    sizes = QWEN_SIZES if qwen else DEMO_SIZES
    d_unit = 1e9 if qwen else 2e4
    if kind.startswith("powerlaw"):
        n = sizes[: int(kind[-1])] if rng.integers(2) else np.geomspace(sizes[0], sizes[-1], int(kind[-1]))
        p = -rng.uniform(0.02, 0.35)
        truth = {"k": float(np.exp(rng.uniform(1.5, 4.0)) * n[0] ** -p), "p": float(p)}
        df = pd.DataFrame({"N": n})
        return "powerlaw", _noisy(df, "powerlaw", truth, ["N"], rng)
    if kind == "chinchilla":
        n_sizes = int(rng.integers(3, 13))
        n = np.geomspace(sizes[0], sizes[-1] * (4 if n_sizes > 6 else 1), n_sizes)
        budgets = d_unit * np.array([1.0, 4.0, 16.0])[: int(rng.integers(1, 4))]
        df = _frame(N=n, budget=budgets, frac=(0.25, 0.5, 0.75, 1.0))
        df["D"] = df["budget"] * df["frac"]
        truth = _terms(rng, n[0], df["D"].min())
        return "chinchilla", _noisy(df, "chinchilla", truth, ["N", "budget"], rng)[["N", "D", "budget", "loss"]]
    if kind in ("dcpt", "cross_domain"):
        df = _frame(N=sizes[:3], r=(0.0, 0.1, 0.25, 0.5, 0.75, 1.0), frac=(0.25, 0.5, 0.75, 1.0))
        df["D"] = d_unit * df["frac"]
        truth = _terms(rng, sizes[0], df["D"].min())
        truth.update(C=rng.uniform(0.05, 0.5), gamma=rng.uniform(0.2, 1.0), eta=rng.uniform(0.2, 1.0),
                     epsilon=rng.uniform(0.01, 0.2))
        if kind == "dcpt":
            return "dcpt", _noisy(df, "dcpt", truth, ["N", "r"], rng)
        domains = {"a": (1.9, 0.30), "b": (2.4, 0.12), "c": (2.8, 0.08), "d": (2.1, 0.20)}
        df = df[df["r"].isin((0.1, 0.5, 1.0))]
        df = pd.concat([df.assign(domain=k, k1=v[0], k2=v[1]) for k, v in domains.items()], ignore_index=True)
        truth.update(F=rng.uniform(0.1, 0.5), mu=rng.uniform(0.5, 1.5), w2=rng.uniform(0.5, 4.0))
        return "cross_domain", _noisy(df, "cross_domain", truth, ["N", "r", "domain"], rng)
    # split candidates: sizes x pretraining budgets x specialisation tokens (checkpoints of one run per N, D)
    df = _frame(N=sizes[:4], D=d_unit * np.array([4.0, 8.0, 16.0]), D_spec=d_unit * np.array([0.0, 0.25, 0.5, 1.0]))
    truth = _terms(rng, sizes[0], df["D"].min())
    truth.update(C=rng.uniform(0.2, 1.0) * d_unit ** 0.3, gamma=0.3 * rng.uniform(0.7, 1.5))
    if kind == "split_separable":
        truth["s"] = d_unit * rng.uniform(0.05, 0.5)
    else:
        truth["kappa"] = rng.uniform(0.01, 0.3)
        df = df[df["D_spec"] > 0]
    return kind, _noisy(df, kind, truth, ["N", "D"], rng)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fits", type=int, default=300, help="number of synthetic fits (default 300)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip", type=int, default=0, help="draw (but do not fit) the first SKIP cases")
    ap.add_argument("--only", choices=KINDS, help="fit only the cases of this kind (the others are drawn, not fitted)")
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    per_kind: dict[str, list[float]] = defaultdict(list)
    ratios: list[float] = []
    fit_time = 0.0
    for i in range(args.fits):
        kind = KINDS[i % len(KINDS)]
        name, df = make_case(kind, rng)
        law = LAWS[name]
        # a skipped case takes the same random draws as a fitted one, so later cases are unchanged
        if i < args.skip or (args.only and kind != args.only):
            grid = law.grid_points(False, {c: df[c].to_numpy(float) for c in law.columns})
            rng.choice(len(grid), size=min(15, len(grid)), replace=False)
            continue
        t0 = time.perf_counter()
        res = fit_law(name, df, huber_delta=DELTA)
        fit_time += time.perf_counter() - t0
        x = {c: df[c].to_numpy(float) for c in law.columns}
        obj = Objective(law, x, np.log(df["loss"].to_numpy(float)), DELTA)
        theta = obj.to_theta(np.array([res.params[k] for k in law.params]))
        f_proj = float(obj(theta[None, :])[0][0])
        grid = law.grid_points(False, x)
        pick = grid[rng.choice(len(grid), size=min(15, len(grid)), replace=False)]
        f_best = min(f_proj, reference(obj, theta, pick))
        ratio = f_proj / f_best
        ratios.append(ratio)
        per_kind[kind].append(ratio)
        print(f"fit {i:3d} {kind:16s} n={len(df):3d} project={f_proj:.8g} best={f_best:.8g} ratio={ratio:.6g} "
              f"converged={res.diagnostics.get('converged')}", flush=True)
    for kind, rs in per_kind.items():
        r = np.array(rs)
        print(f"{kind:16s} fits={r.size:3d} share={np.mean(r <= 1 + TOL):.3f} worst={r.max():.4g}")
    r = np.array(ratios)
    print(f"project fit time: {fit_time:.1f} s for {r.size} fits ({fit_time / r.size:.2f} s per fit)")
    print(f"optimum_share={np.mean(r <= 1 + TOL):.4f} worst_ratio={r.max():.6g}")


if __name__ == "__main__":
    main()
