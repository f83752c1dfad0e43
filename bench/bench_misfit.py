"""Benchmark: the misfit diagnostic and the measured-vs-law usage-1 check on D-CPT sweeps with known truth.

    .venv/bin/python bench/bench_misfit.py [--seeds 40] [--bootstrap 200] [--forgetting 0.08] [--jobs 1]
                                           [--no-selection]

Data (``tests/law_synth.py``, :func:`misfit_sweep`): 3 sizes (1e8, 3e8, 1e9) x 5 domain ratios (0..1) x 3 WSD
budgets (1e9, 3e9, 1e10 tokens, one branch end each); each (size, ratio) trunk draws one log-loss offset (sd 0.3 %)
shared by its branches and both suites, each branch end its own noise (sd 0.2 %). The domain loss is an L3 law.
The general loss is either an L3 law in the general ratio (*null*: L3 can express it) or that law plus
``k·ratio⁴·ln(D/5e8)`` (*forgetting*: grows with D where the general ratio is low, a form no candidate has; ``k`` is
``--forgetting``). The base loss puts the true usage-1 ratio (3 % tolerance) at 0.7 for every size.

Per seed, the study's fits (:func:`cpt_scaling.studies.dcpt.fit_dcpt_laws`: bootstrap over runs) with the general
loss fitted by L3 alone, and the usage table (:func:`cpt_scaling.studies.dcpt.usages`); the forgetting sweeps again
with the study's default selection between L3 and ``dcpt_forget``. Reported: how often the L3 general fit carries
``misfit`` (null: false alarm; forgetting: detection, counted when it names a run at domain ratio 1), and how often
the largest size's usage-1 row is ``consistent`` (null: target >= 0.95 together with no misfit; forgetting: how
often it is flagged inconsistent); ``inside``: how often the measured value itself lies in the law's interval
(without the measured value's own noise). ``--no-selection`` skips the selected sweeps; ``--jobs`` fits seeds in
parallel processes (same results); ``--first-seed`` runs a later block of seeds. Last line:
``misfit_detect=<share> false_alarm=<share> consistent_true=<share> null_clean=<share> inconsistent_detect=<share>``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import logging
import sys
import time
from multiprocessing import Pool
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the known-truth sweep the tests use
from law_synth import MISFIT_CROSSING, MISFIT_TOLERANCE, misfit_sweep

from cpt_scaling.studies.dcpt import GENERAL_FORMS, fit_dcpt_laws, usages

DOMAIN_TOKENS = 3e9


def one(seed: int, forgetting: float, fit: dict[str, Any], forms: tuple[str, ...]) -> dict[str, Any]:
    """One sweep fitted as the study does: misfit flags of both fits and the largest size's usage-1 row."""
    points, base = misfit_sweep(seed, forgetting)
    laws = fit_dcpt_laws(points, fit, "synthetic", forms)
    table = usages({**laws, "base": base}, points, {"general_tolerance": MISFIT_TOLERANCE, "compute_budgets": []},
                   DOMAIN_TOKENS)
    row = table[(table["usage"] == 1)].sort_values("N").iloc[-1]
    general = laws["general_loss"]["diagnostics"].get("misfit") or {}
    named = [g for g in general.get("groups", []) if g.get("r") == 0.0]  # general ratio 0 = domain ratio 1
    return {"general_misfit": bool(general), "names_ratio_1": bool(named),
            "domain_misfit": bool(laws["domain_loss"]["diagnostics"].get("misfit")),
            "law": row["value"], "lo": row["lo"], "hi": row["hi"], "measured": row["measured"],
            "consistent": row["consistent"], "inside": bool(row["lo"] <= row["measured"] <= row["hi"]),
            "chosen": laws["general_loss"]["law"]}


def _seed_rows(task: tuple[int, float, dict[str, Any], bool]) -> list[dict[str, Any]]:
    """The rows of one seed: null, forgetting and (``selection``) forgetting with the study's form selection."""
    seed, forgetting, fit, selection = task
    logging.disable(logging.WARNING)
    truths = [("null", 0.0, ("dcpt",)), ("forgetting", forgetting, ("dcpt",))]
    if selection:
        truths.append(("forgetting, selected", forgetting, GENERAL_FORMS))
    return [{"seed": seed, "truth": truth, **one(seed, k, fit, forms)} for truth, k, forms in truths]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=40)
    ap.add_argument("--first-seed", type=int, default=0, help="seeds first-seed .. first-seed + seeds - 1")
    ap.add_argument("--bootstrap", type=int, default=200)
    ap.add_argument("--starts", type=int, default=2)
    ap.add_argument("--forgetting", type=float, default=0.08)
    ap.add_argument("--jobs", type=int, default=1, help="parallel processes (default 1)")
    ap.add_argument("--no-selection", action="store_true", help="skip the sweeps fitted with form selection")
    args = ap.parse_args()
    fit = {"huber_delta": 1e-3, "bootstrap": args.bootstrap, "seed": 0, "bootstrap_starts": args.starts}
    t0 = time.time()
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    tasks = [(seed, args.forgetting, fit, not args.no_selection) for seed in seeds]
    rows = []
    with Pool(args.jobs) as pool:
        for seed_rows in pool.imap(_seed_rows, tasks):
            rows += seed_rows
            print(" | ".join(f"seed {r['seed']} {r['truth']}: misfit {r['general_misfit']}, names ratio 1 "
                             f"{r['names_ratio_1']}, consistent {r['consistent']}" for r in seed_rows), flush=True)
    df = pd.DataFrame(rows)
    pd.set_option("display.width", 200)
    summary = df.groupby("truth").agg(
        general_misfit=("general_misfit", "mean"), names_ratio_1=("names_ratio_1", "mean"),
        domain_misfit=("domain_misfit", "mean"), consistent=("consistent", lambda s: float(np.mean(s == True))),  # noqa: E712
        inside=("inside", "mean"),
        law_median=("law", "median"), measured_median=("measured", "median"),
        chose_forget=("chosen", lambda s: float(np.mean(s == "dcpt_forget"))))
    print(f"{args.seeds} seeds, bootstrap {args.bootstrap} x {args.starts} starts, forgetting k={args.forgetting}, "
          f"true usage-1 ratio {MISFIT_CROSSING}, {time.time() - t0:.0f} s")
    print(summary.to_string(float_format=lambda v: f"{v:.3f}"))
    null, bad = df[df["truth"] == "null"], df[df["truth"] == "forgetting"]
    clean = (~null["general_misfit"]) & (null["consistent"] == True)  # noqa: E712
    print(f"misfit_detect={np.mean(bad['general_misfit'] & bad['names_ratio_1']):.3f} "
          f"false_alarm={null['general_misfit'].mean():.3f} "
          f"consistent_true={np.mean(null['consistent'] == True):.3f} "  # noqa: E712
          f"null_clean={clean.mean():.3f} inconsistent_detect={np.mean(bad['consistent'] == False):.3f}")  # noqa: E712


if __name__ == "__main__":
    main()
