"""SGER from annealed curves with known truth: interval coverage and how often the finding reads "rising".

Data (``tests/test_sger_study.py``, :func:`_family`): 3 sizes, the generalist's annealed branch ends at 1, 2, 4, 8
times the specialist's budget, each annealed point's loss with relative noise ``RUN_NOISE`` (the bootstrap's too);
two families of true SGER per size, rising (1.5, 2.6, 5.0) and flat (2.6 each). Per family over ``--seeds`` sweeps:
the share of (sweep, size) whose 95 % interval holds the true SGER, the mean log bias, and the share of sweeps whose
``sger_rises_with_size`` verdict is "reproduced". The last line is JSON.

    .venv/bin/python bench/bench_sger.py --seeds 300
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the known-truth families the tests use
from test_sger_study import _family, _verdicts

FAMILIES = {"rising": {"xs": 1.5, "s": 2.6, "m": 5.0}, "flat": {"xs": 2.6, "s": 2.6, "m": 2.6}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seeds", type=int, default=300)
    args = ap.parse_args()
    out = {}
    for name, truth in FAMILIES.items():
        covered, bias, rising = [], [], 0
        for seed in range(args.seeds):
            rows = _family(truth, seed)
            covered += list((rows["sger_lo"] <= rows["true"]) & (rows["true"] <= rows["sger_hi"]))
            bias += list(np.log(rows["sger"] / rows["true"]))
            rising += _verdicts(rows)["sger_rises_with_size"] == "reproduced"
        out[name] = {"coverage": float(np.mean(covered)), "mean_log_bias": float(np.mean(bias)),
                     "rising_share": rising / args.seeds, "seeds": args.seeds}
        print(f"{name}: coverage {out[name]['coverage']:.3f} (nominal 0.95), mean log bias "
              f"{out[name]['mean_log_bias']:+.4f}, 'rising' in {rising}/{args.seeds} sweeps")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
