"""D-CPT Law study (Que et al. 2024) for one domain.

The domain loss is fitted against (N, D, r) with r the domain ratio with the L3 form, and the general loss against
(N, D, 1 - r) with L3 or ``dcpt_forget`` (L3 plus forgetting that grows with D at a low general ratio), whichever
predicts the largest-D points better from the others (``selection`` in its JSON), on the test suites at the
annealed checkpoints of the D-CPT runs (a WSD branch's end per budget, a cosine run's last checkpoint; every
checkpoint with ``fit.intermediate_points``, flagged ``annealed`` false in the points table and counted in the law
JSON's ``unannealed_points``), with a bootstrap over whole runs. Decisions use the fit on all sizes; with three or
more sizes a second fit without the largest is reported as the validation error. Usages: (1) the ratio minimising
the domain loss subject to the general loss staying within ``(1 + T)`` of the base model's, (2) the best ratio when
domain data is limited, (3) the best (N, D) for a compute budget at fixed r; each with ``lo``/``hi`` from the
bootstrap resamples and its extrapolation factor, and where it falls inside the sweep the same decision read off
the measured points (``measured``, ``consistent``: agrees with ``[lo, hi]``). With nine or
more ratios the paper's 7-of-9 ratio cross-validation is reported too.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from cpt_scaling.config.names import GENERAL
from cpt_scaling.core.atomic import write_json
from cpt_scaling.core.errors import InputError
from cpt_scaling.evaluate.tables import read_eval_tables
from cpt_scaling.fit import decisions, measured
from cpt_scaling.fit.fitting import fit_law
from cpt_scaling.fit.measured import consistent
from cpt_scaling.fit.validation import ratio_cross_validation
from cpt_scaling.studies.common import (
    BASE_KINDS,
    annealed_points,
    extrapolation,
    fit_points,
    note_unannealed,
    records,
    run_groups,
    selection,
    summary_diagnostics,
    test_rows,
    with_annealed,
    write_csv,
)

log = logging.getLogger(__name__)

#: General-loss forms the study selects among by held-out error (the domain loss keeps L3).
GENERAL_FORMS = ("dcpt", "dcpt_forget")


def dcpt_points(df: pd.DataFrame, domain: str) -> pd.DataFrame:
    """Candidate points of the domain-loss and general-loss fits, every checkpoint of the D-CPT runs: columns
    target, run, size, N, D, r, ratio, budget, loss, annealed (a WSD branch end or a cosine run's last
    checkpoint; the fits drop the others unless fit.intermediate_points, :func:`annealed_points`)."""
    df = with_annealed(test_rows(df))
    cpt = df[df["kind"] == "cpt"]
    dom = cpt[cpt["suite"] == domain].assign(target="domain", r=lambda x: x["ratio"])
    gen = cpt[cpt["suite"] == GENERAL].assign(target="general", r=lambda x: 1.0 - x["ratio"])
    pts = pd.concat([dom, gen], ignore_index=True)
    pts = pts[pts["D"] > 0]
    return pts[["target", "run", "size", "N", "D", "r", "ratio", "budget", "loss", "annealed"]].sort_values(
        ["target", "N", "ratio", "D"]).reset_index(drop=True)


def base_losses(df: pd.DataFrame, domain: str) -> dict[str, dict[str, float]]:
    """Loss of each base (pretrained) model before continued pretraining, on the domain and general suites."""
    df = test_rows(df)
    pre = df[df["kind"].isin(BASE_KINDS)]
    out: dict[str, dict[str, float]] = {}
    for size, rows in pre.groupby("size"):
        final = rows[rows["D"] == rows["D"].max()]
        out[str(size)] = {
            "N": int(final["N"].iloc[0]),
            "domain_loss": float(final.loc[final["suite"] == domain, "loss"].mean()),
            "general_loss": float(final.loc[final["suite"] == GENERAL, "loss"].mean()),
        }
    return out


def _row(usage: int, size: Any, decision: str, out: dict[str, Any], key: str, **cols: Any) -> dict[str, Any]:
    return {"usage": usage, "size": size, "decision": decision, "value": out[key], "lo": out[f"{key}_lo"],
            "hi": out[f"{key}_hi"], **cols}


def _with_measured(row: dict[str, Any], read: dict[str, Any]) -> dict[str, Any]:
    """A decision row plus the same decision read off the measured points and whether they agree."""
    return {**row, "measured_lo": None, "measured_hi": None, **read,
            "consistent": consistent(read, row["lo"], row["hi"])}


def usages(result: dict[str, Any], points: pd.DataFrame, study: dict[str, Any],
           domain_tokens: float) -> pd.DataFrame:
    """The three D-CPT usages per model size of the sweep, as one table: each row's decided quantity
    (``decision``) with its ``value``, ``lo``/``hi`` and ``extrapolation`` factor; ``measured`` the same decision
    read off the points where it falls inside the sweep (else null, ``measured_note`` says why; usage 1 with
    ``measured_lo``/``measured_hi`` from the general and domain points' noise,
    :func:`cpt_scaling.fit.measured.point_noise`) and
    ``consistent`` whether it agrees with ``[lo, hi]`` (:func:`cpt_scaling.fit.measured.consistent`)."""
    rows: list[dict[str, Any]] = []
    d_max = float(points["D"].max())
    dom, gen = result["domain_loss"], result["general_loss"]
    for size, base in sorted(result["base"].items(), key=lambda kv: kv[1]["N"]):
        n = float(base["N"])
        u1 = decisions.dcpt_max_domain_ratio(gen, N=n, D=d_max, base_general_loss=base["general_loss"],
                                             tolerance=study["general_tolerance"], domain_law=dom)
        rows.append(_with_measured(
            _row(1, size, "ratio", u1, "ratio", N=n, D=d_max, ratio=u1["ratio"], loss=u1["domain_loss"],
                 general_loss=u1["general_loss"], extrapolation=extrapolation(dom, n, d_max),
                 note=f"min domain loss s.t. general loss <= {u1['limit']:.4f}"),
            measured.measured_max_domain_ratio(points, N=n, D=d_max, limit=u1["limit"],
                                               noise=measured.point_noise(gen, u1["limit"]),
                                               domain_noise=measured.point_noise(dom, u1["domain_loss"]))))
        u2 = decisions.dcpt_ratio_for_limited_domain_data(dom, N=n, domain_tokens=domain_tokens)
        rows.append(_with_measured(
            _row(2, size, "ratio", u2, "ratio", N=n, D=u2["D"], D_lo=u2["D_lo"], D_hi=u2["D_hi"],
                 ratio=u2["ratio"], loss=u2["loss"], extrapolation=extrapolation(dom, n, u2["D"]),
                 note=f"{domain_tokens:.0f} domain tokens"),
            measured.measured_ratio_for_limited_domain_data(points, N=n, domain_tokens=domain_tokens)))
    largest = 6.0 * float(points["N"].max()) * d_max
    budgets = study["compute_budgets"] or [largest * f for f in (10.0, 100.0, 1000.0)]
    best_r = float(points.loc[points["target"] == "domain"].groupby("ratio")["loss"].mean().idxmin())
    for c in budgets:
        u3 = decisions.dcpt_compute_allocation(dom, compute=c, r=best_r)
        rows.append(_with_measured(
            _row(3, None, "N", u3, "N", N=u3["N"], D=u3["D"], D_lo=u3["D_lo"], D_hi=u3["D_hi"],
                 ratio=best_r, loss=u3["loss"], extrapolation=extrapolation(dom, u3["N"], u3["D"]),
                 note=f"compute {c:.3g} FLOPs" + (" (at search bound)" if u3["at_bound"] else "")
                 + (f"; {u3['note']}" if u3.get("note") else "")),
            measured.measured_compute_allocation(points, compute=c, ratio=best_r)))
    table = pd.DataFrame(rows)
    off = table["consistent"].eq(False)
    if off.any():
        log.warning("D-CPT usages: %d decision(s) contradicted by the measured points (measured value outside the "
                    "law's interval): %s", int(off.sum()), "; ".join(
                        f"usage {r.usage} size {r.size}: law {r.value:.4g} [{r.lo:.4g}, {r.hi:.4g}], measured "
                        f"{r.measured:.4g}" for r in table[off].itertuples()))
    limit = dom["diagnostics"].get("extrapolation_limit", 100.0)
    far = table["extrapolation"] > 10.0
    if far.any():
        log.warning("D-CPT usages: %d decision(s) extrapolate more than 10x beyond the sweep (limit for figures "
                    "%gx)", int(far.sum()), limit)
    return table


def select_general_form(sub: pd.DataFrame, fit: dict[str, Any], forms: tuple[str, ...],
                        where: str) -> tuple[str, dict[str, Any] | None]:
    """The general-loss form with the lowest held-out mean relative error on the largest-D rows (each candidate
    fitted to the others), as the split study selects; and the ``selection`` record (None with one form)."""
    if len(forms) == 1:
        return forms[0], None
    held = (sub["D"] == sub["D"].max()).to_numpy()
    scores: dict[str, float | None] = {}
    for form in forms:
        try:
            res = fit_law(form, sub, huber_delta=fit["huber_delta"], seed=fit["seed"], holdout=held,
                          coarse=fit.get("coarse_grid", False), where=f"{where}, largest D held out")
            scores[form] = None if res.heldout is None else res.heldout["mean_rel_error"]
        except InputError as exc:  # too few points left for this form's parameters
            log.info("%s: %s not selectable: %s", where, form, exc)
            scores[form] = None
    scored = {k: v for k, v in scores.items() if v is not None}
    best = min(scored, key=scored.__getitem__) if scored else forms[0]
    return best, {"from": list(forms), "chosen": best,
                  "criterion": "held-out mean relative error on the largest-D rows (fitted to the others); the "
                               "winner refitted on all rows",
                  "heldout_mean_rel_error": scores,
                  "note": "dcpt_forget is a new candidate (L3 plus forgetting growing with the other corpus's "
                          "tokens), selected by held-out error"}


def fit_dcpt_laws(points: pd.DataFrame, fit: dict[str, Any], domain: str,
                  general_forms: tuple[str, ...] = GENERAL_FORMS) -> dict[str, dict[str, Any]]:
    """The domain-loss L3 fit and the general-loss fit (the form of ``general_forms`` chosen by held-out error,
    its ``selection`` recorded) of one domain's points, each with a bootstrap over whole runs."""
    out: dict[str, dict[str, Any]] = {}
    for target in ("domain", "general"):
        rows = points[points["target"] == target]
        sub = rows[["N", "D", "r", "loss"]].reset_index(drop=True)
        where = f"D-CPT {target} loss of {domain}"
        form, chosen = ("dcpt", None) if target == "domain" else select_general_form(sub, fit, general_forms, where)
        log.info("fitting D-CPT %s to %d %s-loss points of %s", form, len(sub), target, domain)
        out[f"{target}_loss"] = fit_points(form, sub, fit, groups=run_groups(rows))
        if chosen is not None:
            out[f"{target}_loss"]["selection"] = chosen
        if sub["r"].nunique() >= 9:
            cv = ratio_cross_validation(sub, form, huber_delta=fit["huber_delta"])
            out[f"{target}_loss"]["ratio_cv"] = {k: v for k, v in cv.items() if k != "splits"}
    return out


def fit_dcpt_study(eval_tables: list[Path], domain: str, fit: dict[str, Any], study: dict[str, Any],
                   domain_tokens: float, law_out: Path, points_out: Path, usage_out: Path) -> dict[str, Any]:
    """Fit one domain's domain loss (L3) and general loss (L3 or an alternative, by held-out error); write the law
    JSON, its points and the usage table."""
    df = read_eval_tables(eval_tables)
    candidates = dcpt_points(df, domain)
    points = annealed_points(candidates, fit, f"D-CPT points of {domain}")
    result: dict[str, Any] = {"study": "dcpt", "domain": domain, "law": "dcpt", "base": base_losses(df, domain),
                              "point_selection": selection(candidates, points, fit)}
    result.update(fit_dcpt_laws(points, fit, domain))
    table = usages(result, points, study, domain_tokens)
    result["usages"] = records(table)
    result["diagnostics"] = summary_diagnostics(
        {"domain_loss": result["domain_loss"], "general_loss": result["general_loss"]},
        list(table["extrapolation"]),
        [f"{int((table['extrapolation'] > 10).sum())} usage decision(s) extrapolate beyond 10x the sweep"]
        if (table["extrapolation"] > 10).any() else [])
    note_unannealed(result, points, f"D-CPT {domain}")
    write_csv(points, points_out)
    write_csv(table, usage_out)
    write_json(law_out, result)
    return result
