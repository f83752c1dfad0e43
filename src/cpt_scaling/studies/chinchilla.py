"""Chinchilla study: E + A/N^α + B/D^β fitted to the pretraining runs' general loss at their annealed points (WSD
branch ends; never a cosine run's intermediate checkpoints), and its compute frontier."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cpt_scaling.config.names import GENERAL
from cpt_scaling.core.atomic import write_json
from cpt_scaling.core.errors import InputError
from cpt_scaling.evaluate.tables import read_eval_tables
from cpt_scaling.fit.decisions import chinchilla_compute_optimal
from cpt_scaling.fit.fitting import extrapolation_factor
from cpt_scaling.studies.common import (
    annealed_points,
    fit_points,
    note_unannealed,
    selection,
    test_rows,
    with_annealed,
    write_csv,
)

log = logging.getLogger(__name__)


def chinchilla_points(df: pd.DataFrame) -> pd.DataFrame:
    """General test loss of the pretraining runs at every checkpoint: columns size, N, D, loss, annealed (WSD
    branch ends and a cosine run's last checkpoint are; a cosine run's earlier checkpoints are not)."""
    df = with_annealed(test_rows(df))
    pre = df[(df["kind"] == "pretrain") & (df["suite"] == GENERAL) & (df["D"] > 0)]
    return pre[["size", "N", "D", "loss", "annealed"]].sort_values(["N", "D"]).reset_index(drop=True)


def frontier(law: dict[str, Any], points: pd.DataFrame, n: int = 25) -> pd.DataFrame:
    """Compute-optimal N*, D* and loss over budgets from the smallest run's compute to 10^4 times the largest."""
    c = 6.0 * points["N"] * points["D"]
    budgets = np.geomspace(float(c.min()), float(c.max()) * 1e4, n)
    table = pd.DataFrame([chinchilla_compute_optimal(law, float(b)) for b in budgets])
    table["extrapolation"] = extrapolation_factor(law["diagnostics"]["fit_range"], table["N"], table["D"])
    return table


def fit_chinchilla_study(eval_tables: list[Path], fit: dict[str, Any], law_out: Path, points_out: Path,
                         frontier_out: Path) -> dict[str, Any]:
    """Fit the Chinchilla form to the annealed points only (whatever fit.intermediate_points says: a cosine run's
    intermediate checkpoints bias the data exponent); write the law JSON, its points and the compute-optimal
    frontier."""
    candidates = chinchilla_points(read_eval_tables(eval_tables))
    points = annealed_points(candidates, fit, "Chinchilla points", always=True)
    if points["D"].nunique() < 2:
        raise InputError("Chinchilla points", f"one annealed pretraining budget ({points['D'].iloc[0]:.0f} tokens): "
                                              "the data exponent is not identified; set pretrain.budgets: branches "
                                              "with pretrain.checkpoints >= 2")
    log.info("fitting Chinchilla to %d annealed points", len(points))
    result = {"study": "chinchilla",
              **fit_points("chinchilla", points[["N", "D", "loss"]], fit, groups=points["size"]),
              "point_selection": selection(candidates, points, fit, always=True)}
    note_unannealed(result, points, "Chinchilla")  # 0: annealed points only
    write_csv(points, points_out)
    write_csv(frontier(result, points), frontier_out)
    write_json(law_out, result)
    return result
