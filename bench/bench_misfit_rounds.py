"""Benchmark: how often the misfit test flags a law that holds on the small designs a decision loop fits on the way.

    .venv/bin/python bench/bench_misfit_rounds.py [--seeds 30] [--first-seed 0] [--branches 20 40]

World and fits as ``bench/bench_decide.py`` under its L3 truth (WSD branch ends, a log-loss offset per trunk and
per point; L3 fitted to the domain and to the general loss, no bootstrap): per seed and per ``--branches`` count,
the starting design plus that many grid branches drawn at random. Reported per design size: the share of fits
flagged (``diagnostics.misfit``; the test's level is 5 %) and the share of designs with either fit flagged (a
decision round checks both). Last line ``flagged_fits=<share per size> flagged_rounds=<share per size>``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import logging

import bench_decide as bd
import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--branches", type=int, nargs="+", default=[20, 40])
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    start = bd.start_runs("small")
    rest = [g for g in bd.GRID if g not in start]
    flags: dict[int, list[list[bool]]] = {k: [] for k in args.branches}
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        rng = np.random.default_rng(seed)
        for extra in args.branches:
            design = start + [rest[i] for i in rng.choice(len(rest), size=extra, replace=False)]
            pts = bd.World(0.0, rng).train(design)
            got = [bool(law["diagnostics"].get("misfit")) for law in bd.fit(pts, 0, seed).values()]
            flags[extra].append(got)
            print(f"  seed {seed}, start + {extra} branches ({len(design)} points): flagged "
                  f"{[t for t, f in zip(pts, got, strict=True) if f] or 'none'}", flush=True)
    fits = {k: float(np.mean(v)) for k, v in flags.items()}
    rounds = {k: float(np.mean([any(x) for x in v])) for k, v in flags.items()}
    for k in args.branches:
        print(f"start + {k} branches: {fits[k]:.3f} of fits flagged, {rounds[k]:.3f} of rounds (level 0.05 per fit)")
    print("flagged_fits=" + ",".join(f"{k}:{fits[k]:.3f}" for k in args.branches)
          + " flagged_rounds=" + ",".join(f"{k}:{rounds[k]:.3f}" for k in args.branches))


if __name__ == "__main__":
    main()
