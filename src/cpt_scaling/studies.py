"""Studies: turn a sweep's evaluation tables into the points of each law, fit them and write the results.

D-CPT Law (Que et al. 2024): for one domain, the domain loss is fitted against (N, D, r) with r the domain ratio,
and the general loss against (N, D, 1 - r), both with the L3 form. Chinchilla: general loss of the pretraining runs
against (N, D). With three or more model sizes the largest is held out of the fit and predicted.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from cpt_scaling.atomic import atomic_path, write_json
from cpt_scaling.config import GENERAL
from cpt_scaling.laws import fit_law
from cpt_scaling.tables import read_eval_tables

log = logging.getLogger(__name__)


def test_split(df: pd.DataFrame) -> pd.DataFrame:
    """Rows of the reported (test) suites; validation rows only select checkpoints."""
    return df[df["split"] == "test"] if "split" in df.columns else df


def dcpt_points(df: pd.DataFrame, domain: str) -> pd.DataFrame:
    """Points of the domain-loss and general-loss D-CPT fits: columns target, size, N, D, r, ratio, loss."""
    df = test_split(df)
    cpt = df[df["kind"] == "cpt"]
    dom = cpt[cpt["suite"] == domain].assign(target="domain", r=lambda x: x["ratio"])
    gen = cpt[cpt["suite"] == GENERAL].assign(target="general", r=lambda x: 1.0 - x["ratio"])
    pts = pd.concat([dom, gen], ignore_index=True)
    pts = pts[pts["D"] > 0]
    return pts[["target", "size", "N", "D", "r", "ratio", "budget", "loss"]].sort_values(
        ["target", "N", "ratio", "D"]).reset_index(drop=True)


def base_losses(df: pd.DataFrame, domain: str) -> dict[str, dict[str, float]]:
    """Loss of each base (pretrained) model before continued pretraining, on the domain and general suites."""
    df = test_split(df)
    pre = df[df["kind"] == "pretrain"]
    out: dict[str, dict[str, float]] = {}
    for size, rows in pre.groupby("size"):
        final = rows[rows["D"] == rows["D"].max()]
        out[str(size)] = {
            "N": int(final["N"].iloc[0]),
            "domain_loss": float(final.loc[final["suite"] == domain, "loss"].mean()),
            "general_loss": float(final.loc[final["suite"] == GENERAL, "loss"].mean()),
        }
    return out


def _holdout_largest(points: pd.DataFrame) -> pd.Series | None:
    """Hold out the largest model size when at least three sizes are present."""
    if points["N"].nunique() >= 3:
        return points["N"] == points["N"].max()
    return None


def _fit(law: str, points: pd.DataFrame, fit: dict[str, Any]) -> dict[str, Any]:
    holdout = _holdout_largest(points)
    result = fit_law(law, points.reset_index(drop=True), huber_delta=fit["huber_delta"], bootstrap=fit["bootstrap"],
                     seed=fit["seed"], holdout=None if holdout is None else holdout.reset_index(drop=True))
    return result.to_json()


def _write_points(points: pd.DataFrame, out: Path) -> None:
    with atomic_path(out) as tmp:
        points.to_csv(tmp, index=False, float_format="%.6g")


def fit_dcpt_study(eval_tables: list[Path], domain: str, fit: dict[str, Any], law_out: Path,
                   points_out: Path) -> dict[str, Any]:
    """Fit the D-CPT L3 law to one domain's domain and general losses; write the law JSON and its points."""
    df = read_eval_tables(eval_tables)
    points = dcpt_points(df, domain)
    result = {"study": "dcpt", "domain": domain, "law": "dcpt", "base": base_losses(df, domain)}
    for target in ("domain", "general"):
        sub = points[points["target"] == target][["N", "D", "r", "loss"]]
        log.info("fitting D-CPT L3 to %d %s-loss points of %s", len(sub), target, domain)
        result[f"{target}_loss"] = _fit("dcpt", sub, fit)
    _write_points(points, points_out)
    write_json(law_out, result)
    return result


def chinchilla_points(df: pd.DataFrame) -> pd.DataFrame:
    """Points of the Chinchilla fit: general loss of the pretraining runs at every checkpoint."""
    df = test_split(df)
    pre = df[(df["kind"] == "pretrain") & (df["suite"] == GENERAL) & (df["D"] > 0)]
    return pre[["size", "N", "D", "loss"]].sort_values(["N", "D"]).reset_index(drop=True)


def fit_chinchilla_study(eval_tables: list[Path], fit: dict[str, Any], law_out: Path,
                         points_out: Path) -> dict[str, Any]:
    """Fit the Chinchilla form to the pretraining runs; write the law JSON and its points."""
    points = chinchilla_points(read_eval_tables(eval_tables))
    log.info("fitting Chinchilla to %d points", len(points))
    result = {"study": "chinchilla", **_fit("chinchilla", points[["N", "D", "loss"]], fit)}
    _write_points(points, points_out)
    write_json(law_out, result)
    return result
