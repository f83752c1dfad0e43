"""Helpers shared by the studies: row selection, the size hold-out, fitting and writing points."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from cpt_scaling.core.atomic import atomic_path
from cpt_scaling.core.errors import InputError
from cpt_scaling.fit.fitting import extrapolation_factor, fit_law

# Eval-table kinds of the models a continued-pretraining run starts from: a pretraining run of ours (its final
# checkpoint is the base) or a local base checkpoint (evaluated once, at D = 0).
BASE_KINDS = ("pretrain", "base")

log = logging.getLogger(__name__)


def test_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Rows of the reported (test) suites; validation rows only select checkpoints."""
    return df[df["split"] == "test"] if "split" in df.columns else df


def with_annealed(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with its ``annealed`` column (:func:`cpt_scaling.evaluate.tables.read_eval_tables` adds it; a table
    without one: a point is annealed at its run's budget)."""
    return df if "annealed" in df.columns else df.assign(annealed=df["D"] == df["budget"])


def selection(points: pd.DataFrame, kept: pd.DataFrame, fit: dict[str, Any], always: bool = False) -> dict[str, Any]:
    """How a law JSON states its point selection: the rule, and how many unannealed points it left out."""
    return {"intermediate_points": intermediate_points(fit) and not always,
            "unannealed_left_out": int(len(points) - len(kept))}


def intermediate_points(fit: dict[str, Any]) -> bool:
    """Whether the fits take unannealed (intermediate cosine) checkpoints too: ``fit.intermediate_points``."""
    return bool(fit.get("intermediate_points", False))


CPT_FIX = "list several cpt.tokens (budgets: branches) or set fit.intermediate_points: true"


def annealed_points(points: pd.DataFrame, fit: dict[str, Any], where: str, always: bool = False,
                    fix: str = CPT_FIX) -> pd.DataFrame:
    """The points a fit uses: the annealed ones, or every one with ``fit.intermediate_points`` (unless ``always``
    asks for annealed only); each keeps its ``annealed`` flag. An empty selection, or annealed points of a
    single D (the data exponent unidentified; ``fix`` says what to change), is an :class:`InputError`."""
    flag = points["annealed"].astype(bool)
    keep = points if intermediate_points(fit) and not always else points[flag]
    dropped = len(points) - len(keep)
    if dropped:
        log.info("%s: %d intermediate (unannealed) checkpoint(s) left out of %d (fit.intermediate_points: false)",
                 where, dropped, len(points))
    if points.empty or keep.empty:
        raise InputError(where, "no annealed points to fit (a WSD branch end or a cosine run's last checkpoint); "
                                "set fit.intermediate_points: true to fit intermediate checkpoints")
    if not intermediate_points(fit) and not always and keep["D"].nunique() < 2:
        raise InputError(where, f"one annealed token budget ({keep['D'].iloc[0]:.0f}): the data exponent is not "
                                f"identified; {fix}")
    return keep.assign(annealed=keep["annealed"].astype(bool)).reset_index(drop=True)


def note_unannealed(result: dict[str, Any], points: pd.DataFrame, where: str) -> dict[str, Any]:
    """Record in a law JSON how many fitted points are not annealed (``unannealed_points``), with a warning
    when there are any."""
    n = int((~points["annealed"].astype(bool)).sum())
    result["unannealed_points"] = n
    if n:
        note = (f"{n} of {len(points)} fitted points are intermediate checkpoints of cosine runs (not annealed: "
                "their loss is high and biases the data exponent; fit.intermediate_points: true); list several "
                "cpt.tokens with cpt.budgets: branches for annealed points only")
        result["unannealed_note"] = note
        result.setdefault("diagnostics", {}).setdefault("warnings", []).append(note)
        log.warning("%s: %s", where, note)
    return result


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
                     coarse=fit.get("coarse_grid", False), where=f"{law} points",
                     run_noise=fit.get("run_noise"), base_noise=fit.get("base_noise")).to_json()
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
                             "not_identified": d.get("not_identified", []), "n_sizes": d.get("n_sizes"),
                             "bootstrap_failed": fit.get("bootstrap_info", {}).get("failed")}
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
