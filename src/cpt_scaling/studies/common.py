"""Helpers shared by the studies: row selection, the size hold-out, fitting and writing points."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from cpt_scaling.atomic import atomic_path
from cpt_scaling.laws import fit_law


def test_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Rows of the reported (test) suites; validation rows only select checkpoints."""
    return df[df["split"] == "test"] if "split" in df.columns else df


def holdout_largest(points: pd.DataFrame) -> pd.Series | None:
    """Hold out the largest model size when at least three sizes are present (fit small, predict large)."""
    if points["N"].nunique() >= 3:
        return points["N"] == points["N"].max()
    return None


def fit_points(law: str, points: pd.DataFrame, fit: dict[str, Any], holdout: bool = True) -> dict[str, Any]:
    """Fit ``law`` to ``points`` with the study's fit settings; the JSON of the fit."""
    points = points.reset_index(drop=True)
    mask = holdout_largest(points) if holdout else None
    result = fit_law(law, points, huber_delta=fit["huber_delta"], bootstrap=fit["bootstrap"], seed=fit["seed"],
                     holdout=mask)
    return result.to_json()


def write_csv(df: pd.DataFrame, out: Path) -> None:
    """Write a table atomically as CSV."""
    with atomic_path(out) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g")
