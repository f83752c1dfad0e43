"""Helpers shared by the studies: row selection, the size hold-out, fitting and writing points."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from cpt_scaling.core.atomic import atomic_path
from cpt_scaling.fit.fitting import extrapolation_factor, fit_law

# Eval-table kinds of the models a continued-pretraining run starts from: a pretraining run of ours (its final
# checkpoint is the base) or a local base checkpoint (evaluated once, at D = 0).
BASE_KINDS = ("pretrain", "base")


def test_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Rows of the reported (test) suites; validation rows only select checkpoints."""
    return df[df["split"] == "test"] if "split" in df.columns else df


def holdout_largest(points: pd.DataFrame) -> pd.Series | None:
    """Hold out the largest model size when at least three sizes are present (fit small, predict large)."""
    if points["N"].nunique() >= 3:
        return points["N"] == points["N"].max()
    return None


def run_groups(points: pd.DataFrame) -> pd.Series | None:
    """The bootstrap's resampling unit: the training run of each point (all its checkpoints together)."""
    return points["run"].astype(str) if "run" in points.columns else None


def fit_points(law: str, points: pd.DataFrame, fit: dict[str, Any], holdout: bool = True,
               groups: pd.Series | None = None) -> dict[str, Any]:
    """Fit ``law`` to all of ``points`` (bootstrap over ``groups``); with ``holdout`` and three sizes or more, a
    second fit without the largest size is reported beside it as the validation error (decisions never use it).
    ``fit["coarse_grid"]`` (not a config key; tests) uses the law's small initialisation grid."""
    points = points.reset_index(drop=True)
    groups = None if groups is None else pd.Series(groups).reset_index(drop=True)
    cols = [c for c in points.columns if c != "run"]
    result = fit_law(law, points[cols], huber_delta=fit["huber_delta"], bootstrap=fit["bootstrap"],
                     seed=fit["seed"], groups=groups, bootstrap_starts=fit.get("bootstrap_starts", 4),
                     coarse=fit.get("coarse_grid", False), where=f"{law} points").to_json()
    result["diagnostics"]["extrapolation_limit"] = float(fit.get("extrapolation_limit", 100.0))
    mask = holdout_largest(points) if holdout else None
    if mask is not None:
        val = fit_law(law, points[cols], huber_delta=fit["huber_delta"], seed=fit["seed"], holdout=mask,
                      coarse=fit.get("coarse_grid", False), where=f"{law} points without the largest size")
        result["validation"] = {
            "protocol": "largest_model",
            "held_out": f"N == {points['N'].max():g}",
            "held_out_sizes": sorted({float(v) for v in points.loc[mask, "N"]}),
            "n_train": val.n_points,
            "heldout": val.heldout,
            "params": val.params,
            "note": "validation only: decisions use the fit on all sizes",
        }
    return result


def extrapolation(law: dict[str, Any], N: float, tokens: float | None = None) -> float:
    """Extrapolation factor of a query against the fit's largest N and compute."""
    return float(extrapolation_factor(law.get("diagnostics", {}).get("fit_range", {}), N, tokens))


def summary_diagnostics(fits: dict[str, dict[str, Any] | None], extrapolations: list[float] | None = None,
                        warnings: list[str] | None = None) -> dict[str, Any]:
    """A study's ``diagnostics`` block: each fit's convergence and bound flags, the largest extrapolation factor of
    its reported decisions, and every warning."""
    out: dict[str, Any] = {"fits": {}, "warnings": list(warnings or [])}
    for name, fit in fits.items():
        if fit is None:
            continue
        d = fit.get("diagnostics", {})
        out["fits"][name] = {"converged": d.get("converged"), "params_at_bound": d.get("params_at_bound", []),
                             "n_sizes": d.get("n_sizes"), "bootstrap_failed": fit.get("bootstrap_info", {}).get(
                                 "failed")}
        out["warnings"] += [f"{name}: {w}" for w in d.get("warnings", [])]
    out["converged"] = all(f["converged"] is not False for f in out["fits"].values())
    finite = [float(x) for x in (extrapolations or []) if x is not None and x == x]
    out["max_decision_extrapolation"] = max(finite) if finite else None
    return out


def records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Table rows for a JSON document (NaN as null)."""
    return [{k: (None if isinstance(v, float) and v != v else v) for k, v in row.items()}
            for row in df.astype(object).to_dict(orient="records")]


def write_csv(df: pd.DataFrame, out: Path) -> None:
    """Write a table atomically as CSV."""
    with atomic_path(out) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g")
