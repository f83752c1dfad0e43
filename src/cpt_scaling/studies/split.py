"""Split study: loss of size N after D pretraining and D' specialisation tokens, L(N, D, D').

Points are the domain test loss of the branches (every pretraining checkpoint D, each specialised for D' tokens at
the study's domain ratio) and of the unsplit runs (the pretraining checkpoints themselves, D' = 0): the annealed
ones (WSD branch ends, a cosine run's last checkpoint), intermediate checkpoints too with ``fit.intermediate_points``
(flagged ``annealed`` false). ``fit_law("split")`` fits the candidate forms, both finite at D' = 0, and keeps
the one with the lower held-out error (the paper's exact form is not public; see :mod:`cpt_scaling.laws.split`), with a
bootstrap over whole runs. Decisions, each with ``_lo``/``_hi`` from the resamples: the optimal specialisation
share of a token total per size, and the compute multiplier of that optimum over standard pretraining.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cpt_scaling.core.atomic import write_json
from cpt_scaling.evaluate.tables import read_eval_tables
from cpt_scaling.fit import decisions
from cpt_scaling.fit.fitting import extrapolation_factor, fit_law
from cpt_scaling.studies.common import (
    annealed_points,
    note_unannealed,
    records,
    selection,
    test_rows,
    with_annealed,
    write_csv,
)

log = logging.getLogger(__name__)


def split_points(df: pd.DataFrame, domain: str, ratio: float) -> pd.DataFrame:
    """Columns run, size, N, D (pretraining tokens), D_spec (specialisation tokens so far; 0 for the unsplit
    pretraining checkpoints), loss, annealed (a WSD branch end or a cosine run's last checkpoint)."""
    df = with_annealed(test_rows(df))
    rows = df[df["kind"].isin(["split", "cpt"]) & (df["suite"] == domain) & (df["ratio"] == ratio) & (df["D"] > 0)]
    pts = rows.rename(columns={"D": "D_spec", "pretrain_tokens": "D"})
    pts = pts[pts["D"] > 0]
    unsplit = df[(df["kind"] == "pretrain") & (df["suite"] == domain) & (df["D"] > 0) & df["size"].isin(pts["size"])]
    unsplit = unsplit.assign(D_spec=0.0)
    both = pd.concat([pts, unsplit], ignore_index=True)
    return both[["run", "size", "N", "D", "D_spec", "loss", "annealed"]].sort_values(["N", "D", "D_spec"]).reset_index(
        drop=True)


def split_decisions(law: dict[str, Any], points: pd.DataFrame) -> pd.DataFrame:
    """Optimal specialisation share and compute multiplier vs standard pretraining per size over token totals."""
    totals = points["D"] + points["D_spec"]
    fit_range = law["diagnostics"]["fit_range"]
    rows = []
    for n in sorted(points["N"].unique()):
        for total in np.geomspace(float(totals.min()), float(totals.max()) * 100.0, 12):
            m = decisions.split_compute_multiplier(law, N=float(n), total_tokens=float(total))
            rows.append({"N": int(n), "total_tokens": float(total), "compute": 6.0 * float(n) * float(total),
                         "optimal_spec_fraction": m["fraction"], "optimal_spec_fraction_lo": m["fraction_lo"],
                         "optimal_spec_fraction_hi": m["fraction_hi"], "loss": m["loss"],
                         "reference": "standard pretraining (D' = 0)", "multiplier": m["multiplier"],
                         "multiplier_lo": m["multiplier_lo"], "multiplier_hi": m["multiplier_hi"],
                         "beyond_limit": m["beyond_limit"],
                         "extrapolation": float(extrapolation_factor(fit_range, float(n), float(total)))})
    return pd.DataFrame(rows)


def fit_split_study(eval_tables: list[Path], domain: str, study: dict[str, Any], fit: dict[str, Any],
                    law_out: Path, points_out: Path, decisions_out: Path) -> dict[str, Any]:
    """Fit the split law for one domain; write the law JSON, its points and the decision table."""
    candidates = split_points(read_eval_tables(eval_tables), domain, study["ratio"])
    points = annealed_points(candidates, fit, f"split points of {domain}",
                             fix="set pretrain.checkpoints >= 2 or fit.intermediate_points: true")
    log.info("fitting the split law to %d points of %s (%d unsplit)", len(points), domain,
             int((points["D_spec"] == 0).sum()))
    law = fit_law("split", points[["N", "D", "D_spec", "loss"]], huber_delta=fit["huber_delta"],
                  bootstrap=fit["bootstrap"], seed=fit["seed"], groups=points["run"].astype(str),
                  bootstrap_starts=fit.get("bootstrap_starts", 4), coarse=fit.get("coarse_grid", False),
                  where=f"split points of {domain}", run_noise=fit.get("run_noise"),
                  base_noise=fit.get("base_noise")).to_json()
    law["diagnostics"]["extrapolation_limit"] = float(fit.get("extrapolation_limit", 100.0))
    table = split_decisions(law, points)
    law["diagnostics"]["max_decision_extrapolation"] = float(table["extrapolation"].max())
    result = {"study": "split", "domain": domain, **law, "decisions": records(table),
              "point_selection": selection(candidates, points, fit)}
    note_unannealed(result, points, f"split {domain}")
    write_csv(points, points_out)
    write_csv(table, decisions_out)
    write_json(law_out, result)
    return result
