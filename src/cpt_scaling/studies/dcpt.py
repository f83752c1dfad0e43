"""D-CPT Law study (Que et al. 2024) for one domain.

The domain loss is fitted against (N, D, r) with r the domain ratio, and the general loss against (N, D, 1 - r),
both with the L3 form, on the test suites at every checkpoint of the D-CPT runs. With three or more sizes the
largest is held out of the fit and predicted. Usages: (1) the largest domain ratio whose general loss stays within
a tolerance of the base model's, (2) the best ratio when domain data is limited, (3) the best (N, D) for a compute
budget at fixed r. With nine or more ratios the paper's 7-of-9 ratio cross-validation is reported too.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from cpt_scaling import decisions
from cpt_scaling.atomic import write_json
from cpt_scaling.config import GENERAL
from cpt_scaling.studies.common import fit_points, test_rows, write_csv
from cpt_scaling.tables import read_eval_tables
from cpt_scaling.validation import ratio_cross_validation

log = logging.getLogger(__name__)


def dcpt_points(df: pd.DataFrame, domain: str) -> pd.DataFrame:
    """Points of the domain-loss and general-loss fits: columns target, size, N, D, r, ratio, budget, loss."""
    df = test_rows(df)
    cpt = df[df["kind"] == "cpt"]
    dom = cpt[cpt["suite"] == domain].assign(target="domain", r=lambda x: x["ratio"])
    gen = cpt[cpt["suite"] == GENERAL].assign(target="general", r=lambda x: 1.0 - x["ratio"])
    pts = pd.concat([dom, gen], ignore_index=True)
    pts = pts[pts["D"] > 0]
    return pts[["target", "size", "N", "D", "r", "ratio", "budget", "loss"]].sort_values(
        ["target", "N", "ratio", "D"]).reset_index(drop=True)


def base_losses(df: pd.DataFrame, domain: str) -> dict[str, dict[str, float]]:
    """Loss of each base (pretrained) model before continued pretraining, on the domain and general suites."""
    df = test_rows(df)
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


def usages(result: dict[str, Any], points: pd.DataFrame, study: dict[str, Any],
           domain_tokens: float) -> pd.DataFrame:
    """The three D-CPT usages per model size of the sweep, as one table."""
    rows: list[dict[str, Any]] = []
    d_max = float(points["D"].max())
    for size, base in sorted(result["base"].items(), key=lambda kv: kv[1]["N"]):
        n = float(base["N"])
        u1 = decisions.dcpt_max_domain_ratio(result["general_loss"], N=n, D=d_max,
                                             base_general_loss=base["general_loss"],
                                             tolerance=study["general_tolerance"])
        rows.append({"usage": 1, "size": size, "N": n, "D": d_max, "ratio": u1["ratio"],
                     "loss": u1["general_loss"], "note": f"general loss <= {u1['limit']:.4f}"})
        u2 = decisions.dcpt_ratio_for_limited_domain_data(result["domain_loss"], N=n, domain_tokens=domain_tokens)
        rows.append({"usage": 2, "size": size, "N": n, "D": u2["D"], "ratio": u2["ratio"], "loss": u2["loss"],
                     "note": f"{domain_tokens:.0f} domain tokens"})
    largest = 6.0 * float(points["N"].max()) * d_max
    budgets = study["compute_budgets"] or [largest * f for f in (10.0, 100.0, 1000.0)]
    best_r = float(points.loc[points["target"] == "domain"].groupby("ratio")["loss"].mean().idxmin())
    for c in budgets:
        u3 = decisions.dcpt_compute_allocation(result["domain_loss"], compute=c, r=best_r)
        rows.append({"usage": 3, "size": None, "N": u3["N"], "D": u3["D"], "ratio": best_r, "loss": u3["loss"],
                     "note": f"compute {c:.3g} FLOPs" + (" (at search bound)" if u3["at_bound"] else "")})
    return pd.DataFrame(rows)


def fit_dcpt_study(eval_tables: list[Path], domain: str, fit: dict[str, Any], study: dict[str, Any],
                   domain_tokens: float, law_out: Path, points_out: Path, usage_out: Path) -> dict[str, Any]:
    """Fit L3 to one domain's domain and general losses; write the law JSON, its points and the usage table."""
    df = read_eval_tables(eval_tables)
    points = dcpt_points(df, domain)
    result: dict[str, Any] = {"study": "dcpt", "domain": domain, "law": "dcpt", "base": base_losses(df, domain)}
    for target in ("domain", "general"):
        sub = points[points["target"] == target][["N", "D", "r", "loss"]]
        log.info("fitting D-CPT L3 to %d %s-loss points of %s", len(sub), target, domain)
        result[f"{target}_loss"] = fit_points("dcpt", sub, fit)
        if sub["r"].nunique() >= 9:
            cv = ratio_cross_validation(sub.reset_index(drop=True), "dcpt", huber_delta=fit["huber_delta"])
            result[f"{target}_loss"]["ratio_cv"] = {k: v for k, v in cv.items() if k != "splits"}
    table = usages(result, points, study, domain_tokens)
    result["usages"] = table.to_dict(orient="records")
    write_csv(points, points_out)
    write_csv(table, usage_out)
    write_json(law_out, result)
    return result
