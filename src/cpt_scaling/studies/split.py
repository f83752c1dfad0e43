"""Split study: loss of size N after D pretraining and D' specialisation tokens, L(N, D, D').

Points are the domain test loss of the branches (every pretraining checkpoint D, each specialised for D' tokens at
the study's domain ratio) and of the unsplit runs (the pretraining checkpoints themselves, D' = 0): the annealed
ones (WSD branch ends, a cosine run's last checkpoint), intermediate checkpoints too with ``fit.intermediate_points``
(flagged ``annealed`` false). ``fit_law("split")`` fits the candidate forms, both finite at D' = 0, and keeps
the one with the lower held-out error (the paper's exact form is not public; see :mod:`cpt_scaling.laws.split`), with a
bootstrap over whole runs. Decisions, each with ``_lo``/``_hi`` from the resamples
(:mod:`cpt_scaling.fit.split_decisions`): per size and token budget, the optimal specialisation share and the compute
multiplier over standard pretraining, per domain (one pretraining, one specialisation) and for K domains split from
one pretrained model (``studies.split.k_domains``); the split point ``D* = T·(1 − f*)``, the pretraining tokens after
which to split. ``extrapolation`` is how far a decision lies beyond the fitted points in N, compute or D′ (the
last also its own column, ``extrapolation_spec``). :func:`split_findings` checks the splitting paper's two findings
against the fit.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cpt_scaling.core.atomic import write_json
from cpt_scaling.core.errors import InputError
from cpt_scaling.evaluate.tables import read_eval_tables
from cpt_scaling.fit.decisions import interval, param_sets
from cpt_scaling.fit.fitting import extrapolation_factor, fit_law
from cpt_scaling.fit.split_decisions import (
    NO_SPLIT,
    optimal_fraction_rows,
    split_compute_multiplier,
)
from cpt_scaling.laws import SPLIT_CANDIDATES
from cpt_scaling.laws.split import SIZE_DEPENDENT
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


def spec_extrapolation(levels: np.ndarray, d_spec: float) -> float:
    """How far a specialisation budget lies outside the fitted nonzero D′ levels, on a log scale: ``D′/max`` above
    them, ``min/D′`` below them (between 0 and the smallest level the law only interpolates its form), 1 inside or
    for "do not split" (D′ = 0)."""
    if d_spec <= 0 or not len(levels):
        return 1.0
    return float(max(d_spec / levels.max(), levels.min() / d_spec, 1.0))


def _spec_levels(points: pd.DataFrame) -> np.ndarray:
    return np.unique(points.loc[points["D_spec"] > 0, "D_spec"].to_numpy(dtype=float))


def _split_point_ci(total: float, m: dict[str, Any]) -> dict[str, float | None]:
    """The interval of the split point ``T·(1 − f*)`` from that of ``f*``."""
    lo, hi = m["fraction_lo"], m["fraction_hi"]
    return {"split_point_lo": None if hi is None else total * (1 - hi),
            "split_point_hi": None if lo is None else total * (1 - lo)}


def split_decisions(law: dict[str, Any], points: pd.DataFrame, k_domains: int = 1) -> pd.DataFrame:
    """Per size and token budget T: the optimal specialisation share and the compute multiplier over standard
    pretraining per domain (``optimal_spec_fraction``, ``multiplier``; D′ = f·T) and for ``k_domains`` domains split
    from one pretraining (``_k`` columns; D′ = f·T/K per domain), with intervals and extrapolation factors."""
    totals = points["D"] + points["D_spec"]
    fit_range = law["diagnostics"]["fit_range"]
    levels = _spec_levels(points)
    rows = []
    for n in sorted(points["N"].unique()):
        for total in np.geomspace(float(totals.min()), float(totals.max()) * 100.0, 16):
            one = split_compute_multiplier(law, N=float(n), total_tokens=float(total))
            many = split_compute_multiplier(law, N=float(n), total_tokens=float(total), k=k_domains)
            spec = max([spec_extrapolation(levels, m["D_spec"]) for m in (one, many) if m["fraction"] > NO_SPLIT],
                       default=1.0)
            size_compute = float(extrapolation_factor(fit_range, float(n), float(total)))
            rows.append({"N": int(n), "total_tokens": float(total), "compute": 6.0 * float(n) * float(total),
                         "optimal_spec_fraction": one["fraction"], "optimal_spec_fraction_lo": one["fraction_lo"],
                         "optimal_spec_fraction_hi": one["fraction_hi"], "D_spec": one["D_spec"],
                         "split_point": total - one["D_spec"], **_split_point_ci(total, one),
                         "loss": one["loss"], "reference": "standard pretraining (D' = 0)",
                         "multiplier": one["multiplier"], "multiplier_lo": one["multiplier_lo"],
                         "multiplier_hi": one["multiplier_hi"], "beyond_limit": one["beyond_limit"],
                         "k_domains": k_domains, "optimal_spec_fraction_k": many["fraction"],
                         "optimal_spec_fraction_k_lo": many["fraction_lo"],
                         "optimal_spec_fraction_k_hi": many["fraction_hi"], "D_spec_k": many["D_spec"],
                         "multiplier_k": many["multiplier"], "multiplier_k_lo": many["multiplier_lo"],
                         "multiplier_k_hi": many["multiplier_hi"], "beyond_limit_k": many["beyond_limit"],
                         "extrapolation_spec": spec, "extrapolation": max(size_compute, spec)})
    return pd.DataFrame(rows)


#: The splitting paper's findings checked by :func:`split_findings`.
SPLIT_FINDINGS = ("split_optimal_share_falls_with_budget", "split_point_rises_with_size")


def _verdict(lo: float | None, hi: float | None, null: float) -> str:
    """``reproduced`` when the interval lies on the finding's side of ``null`` (above it), ``contradicted`` when
    on the other, else ``not resolved`` (also without an interval)."""
    if lo is None or hi is None:
        return "not resolved"
    return "reproduced" if lo > null else "contradicted" if hi < null else "not resolved"


def _with_ci(point: float, values: np.ndarray) -> tuple[float, float | None, float | None]:
    lo, hi = interval(point, values[1:]) if len(values) > 1 else (None, None)
    return point, lo, hi


def _fmt(value: float, lo: float | None, hi: float | None, spec: str = ".3g") -> str:
    ci = "" if lo is None else f" [{lo:{spec}}, {hi:{spec}}]"
    return f"{value:{spec}}{ci}"


def split_findings(law: dict[str, Any], domain: str) -> list[dict[str, Any]]:
    """The splitting paper's two findings on one domain's fitted split law, each a row ``domain``, ``finding``,
    ``verdict`` (reproduced / not resolved / contradicted: from the 95 % interval over the paired bootstrap resamples;
    not resolved without resamples) and ``evidence`` (numbers and intervals):

    - ``split_optimal_share_falls_with_budget``: at the largest size, the optimal share f* at the largest fitted
      budget D + D′ minus that at the smallest is below 0;
    - ``split_point_rises_with_size``: at the largest fitted budget, the split point D* = T·(1 − f*) (pretraining
      tokens before splitting) of the largest size over that of the smallest is above 1 (under a form additive in N
      it is 1 in every resample: not resolved, and the evidence says why).
    """
    points = pd.DataFrame(law["points_used"])
    fitted, p, n_boot = param_sets(law, SPLIT_CANDIDATES)
    rows = 1 + n_boot
    totals = points["D"] + points["D_spec"]
    t_small, t_large = float(totals.min()), float(totals.max())
    n_small, n_large = float(points["N"].min()), float(points["N"].max())
    f_small, _ = optimal_fraction_rows(fitted, p, n_large, t_small, rows)
    f_large, _ = optimal_fraction_rows(fitted, p, n_large, t_large, rows)
    change = _with_ci(float(f_large[0] - f_small[0]), f_large - f_small)
    lo, hi = (None, None) if change[1] is None else (-change[2], -change[1])
    share = {"domain": domain, "finding": SPLIT_FINDINGS[0], "verdict": _verdict(lo, hi, 0.0),
             "evidence": f"N={n_large:.3g}: f*={_fmt(*_with_ci(float(f_small[0]), f_small))} at {t_small:.3g} tokens, "
                         f"{_fmt(*_with_ci(float(f_large[0]), f_large))} at {t_large:.3g}; change "
                         f"{_fmt(*change)}"}
    f_small_n, _ = optimal_fraction_rows(fitted, p, n_small, t_large, rows)
    d_small, d_large = t_large * (1 - f_small_n), t_large * (1 - f_large)  # the split points D* = T·(1 − f*)
    ratio = _with_ci(float(d_large[0] / d_small[0]), d_large / d_small)
    evidence = (f"at {t_large:.3g} tokens: split point D* {_fmt(*_with_ci(float(d_small[0]), d_small))} tokens at "
                f"N={n_small:.3g}, {_fmt(*_with_ci(float(d_large[0]), d_large))} at N={n_large:.3g}; ratio "
                f"{_fmt(*ratio)}")
    if law["law"] not in SIZE_DEPENDENT:
        evidence += f" (the chosen form {law['law']} is additive in N: its split point is the same at every size)"
    point = {"domain": domain, "finding": SPLIT_FINDINGS[1], "verdict": _verdict(ratio[1], ratio[2], 1.0),
             "evidence": evidence}
    if n_boot == 0:
        for row in (share, point):
            row["evidence"] += " (no bootstrap resamples: no interval)"
    return [share, point]


def read_split_findings(tables: Path, domain: str) -> list[dict[str, Any]]:
    """The rows :func:`fit_split_study` wrote to ``<tables>/split_findings_<domain>.csv`` (for the seed-findings
    table: ``domain``, ``finding``, ``verdict``, ``evidence``)."""
    path = Path(tables) / f"split_findings_{domain}.csv"
    if not path.is_file():
        raise InputError(str(path), "split findings not found (run the split study's fit first)")
    return records(pd.read_csv(path))


def fit_split_study(eval_tables: list[Path], domain: str, study: dict[str, Any], fit: dict[str, Any],
                    law_out: Path, points_out: Path, decisions_out: Path,
                    findings_out: Path | None = None) -> dict[str, Any]:
    """Fit the split law for one domain; write the law JSON (with :func:`split_findings` as ``findings``), its
    points, the decision table and, given ``findings_out``, the findings as a table."""
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
    k_domains = int(study.get("k_domains") or 1)
    table = split_decisions(law, points, k_domains)
    law["diagnostics"]["max_decision_extrapolation"] = float(table["extrapolation"].max())
    law["diagnostics"]["spec_levels"] = [float(v) for v in _spec_levels(points)]
    result = {"study": "split", "domain": domain, **law, "k_domains": k_domains, "decisions": records(table),
              "point_selection": selection(candidates, points, fit)}
    result["findings"] = split_findings(result, domain)
    note_unannealed(result, points, f"split {domain}")
    write_csv(points, points_out)
    write_csv(table, decisions_out)
    if findings_out is not None:
        write_csv(pd.DataFrame(result["findings"]), findings_out)
    write_json(law_out, result)
    return result
