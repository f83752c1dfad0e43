"""The decision target's rounds (rules/decide.smk; README: Ask for a decision).

Round ``k`` fits the D-CPT law to the runs so far (the starting design, then every run the rounds before it
chose) and runs :func:`cpt_scaling.fit.rounds.next_round` on it (the one round the library loop and
``bench/bench_decide.py`` run too): the decision's 95 % interval, checked against the fits' misfit diagnostics
and the measured crossing (``interval_source``), then either a stop (the reasons in :data:`STOPS`) or the
proposer's next runs (seed ``seed + k``) within the round's GPU-hours, each candidate priced at its increment:
the training jobs it needs that no run so far has needed (a larger budget of a WSD trunk that exists costs its
new segment and decay branch, not a new run). The plan's training keys price it here, not the formula of
:func:`cpt_scaling.fit.candidates.price_increments` that the library loop uses on simulated runs: the keys carry
what the formula cannot (a base model's pretraining a run needs, the shape-exact FLOPs of each segment); the
two agree on WSD trunks (tests/test_proposal_rounds.py, test_curve_tokens_are_what_the_plan_trains).
One round is one record (:func:`round_record`); the decision JSON (:func:`decision_doc`) gathers them. The
decision is read at one point for every round: the one round 0 resolved (``spec``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cpt_scaling.evaluate.tables import read_eval_tables
from cpt_scaling.fit.candidates import Candidate
from cpt_scaling.fit.decision_spec import DecisionSpec, decision_spec, decision_values, targets_from
from cpt_scaling.fit.rounds import next_round
from cpt_scaling.studies.common import annealed_points, fit_points, run_groups
from cpt_scaling.studies.dcpt import base_losses, dcpt_points

log = logging.getLogger(__name__)

#: Why the rounds stopped, in words (the decision JSON's ``stopped``).
STOPS = {
    "reached": "the interval is no wider than decide.target_width",
    "max_rounds": "decide.max_rounds rounds of runs are done",
    "budget": "no candidate's increment fits in the GPU-hours left (decide.budget_gpu_hours)",
    "exhausted": "every candidate run is done",
    "stalled": "the proposer expects no affordable run to narrow the interval",
    "misfit": "the law misfits its own points (in two rounds in a row) and the measured crossing contradicts it: "
              "the interval joins the law's and the measured crossing's (interval_source law+measured); more runs "
              "of this law would not make the decision precise",
}


def fit_round(tables: Sequence[Path], domain: str, fit: Mapping[str, Any], need_general: bool
              ) -> tuple[dict[str, dict[str, Any]], dict[str, pd.DataFrame], dict[str, Any]]:
    """The D-CPT law (L3) of the domain loss, and of the general loss when ``need_general``, fitted with a bootstrap
    over whole runs to the points of the evaluation ``tables``; their points per target; the base models' losses."""
    df = read_eval_tables(list(tables))
    points = annealed_points(dcpt_points(df, domain), dict(fit), f"decision points of {domain}")
    laws: dict[str, dict[str, Any]] = {}
    pts: dict[str, pd.DataFrame] = {}
    for target in ("domain", "general") if need_general else ("domain",):
        rows = points[points["target"] == target].reset_index(drop=True)
        laws[target] = fit_points("dcpt", rows[["N", "D", "r", "loss"]], dict(fit), holdout=False,
                                  groups=run_groups(rows))
        pts[target] = rows[["N", "D", "r", "loss", "run"]]
    return laws, pts, base_losses(df, domain)


def resolve_spec(job: Mapping[str, Any], pts: Mapping[str, pd.DataFrame], base: Mapping[str, Any],
                 domain_tokens: float) -> DecisionSpec:
    """The decision's point from ``decide:`` (round 0), its defaults from the candidates and the first fit."""
    s = job["settings"]
    cands = job["candidates"].values()
    n = next(c["N"] for c in cands if c["size"] == s["size"])
    d_max = max(c["D"] for c in cands)
    n_max = max(c["N"] for c in cands)
    return decision_spec(
        s["decision"], pts["domain"], study=job["dcpt"], base=base, N=n,
        D=s["tokens"] if s["tokens"] is not None else d_max,
        domain_tokens=s["tokens"] if s["tokens"] is not None else domain_tokens,
        compute=s["compute"] if s["compute"] is not None else 10.0 * 6.0 * n_max * d_max,
        ratio=s["ratio"], where="decide")


def spent(job: Mapping[str, Any], runs: Sequence[str]) -> tuple[float, set[str]]:
    """GPU-hours of the training jobs ``runs`` need (each once, summed in key order: equal runs, equal bytes), and
    those jobs' keys."""
    done = {k for name in runs for k in job["candidates"][name]["needs"]}
    return sum(job["gpu_hours"][k] for k in sorted(done)), done


def increments(job: Mapping[str, Any], runs: Sequence[str]) -> list[Candidate]:
    """The candidates not run yet, each priced at its increment over ``runs``."""
    _, done = spent(job, runs)
    out = []
    for name, c in job["candidates"].items():
        if name in runs:
            continue
        price = sum(job["gpu_hours"][k] for k in c["needs"] if k not in done)
        out.append(Candidate(name, c["N"], c["D"], c["r"], int(c["checkpoints"]), float("nan"), price,
                             "increment: training jobs not done yet", {"size": c["size"]}))
    return out


def round_record(job: Mapping[str, Any], k: int, previous: Mapping[str, Any] | None, domain_tokens: float,
                 tables: Sequence[Path]) -> dict[str, Any]:
    """Round ``k``: the fit of the runs so far, then :func:`cpt_scaling.fit.rounds.next_round` (its checked
    interval, the stop rule, the next runs), the same function the library loop and ``bench/bench_decide.py``
    run."""
    s = job["settings"]
    runs = list(job["start"]) if previous is None else [*previous["runs"], *previous["next"]]
    laws, pts, base = fit_round(tables, s["domain"], job["fit"], s["decision"] == "usage1")
    spec = resolve_spec(job, pts, base, domain_tokens) if previous is None else DecisionSpec(**previous["spec"])
    hours, _ = spent(job, runs)
    def reprice(picked: list[Candidate]) -> list[Candidate]:  # the candidates left, over the runs done and picked
        return increments(job, [*runs, *(c.name for c in picked)])

    step = next_round(laws, pts, spec, reprice([]), k=k, spent=hours, target_width=s["target_width"],
                      round_gpu_hours=float(job["round_gpu_hours"]), total_budget=float(job["budget_gpu_hours"]),
                      max_rounds=int(s["max_rounds"]), simulations=int(s["simulations"]), seed=int(s["seed"]),
                      method=s["method"], where=f"decision round {k}",
                      previous_misfit=previous["misfit"] if previous else (),
                      reprice=reprice)
    targets, _ = targets_from(laws, pts, f"decision round {k}")
    values = decision_values(spec, targets)
    value = float(np.median(values[np.isfinite(values)]))
    interval = step.to_json()
    rec: dict[str, Any] = {
        "round": k, "runs": runs, "gpu_hours": hours, "value": value, **interval,
        "spec": asdict(spec), "description": spec.describe(), "next": [c.name for c in step.chosen],
        "next_gpu_hours": float(sum(c.gpu_hours for c in step.chosen)), "chosen_by": step.chosen_by,
        "expected_width": step.expected_width, "round_gpu_hours": step.round_gpu_hours, "status": step.status,
        "history": [*(previous["history"] if previous else []),
                    {"round": k, "runs": len(runs), "gpu_hours": hours, "value": value, **interval}]}
    log.info("decision round %d: %s [%.4g, %.4g] (width %.4g, %s) from %d runs, %.4g GPU-hours; %s", k,
             spec.describe(), step.lo, step.hi, step.width, step.interval_source, len(runs), hours,
             f"next: {', '.join(rec['next'])}" if rec["next"] else f"stop: {STOPS[rec['status']]}")
    return rec


def decision_doc(job: Mapping[str, Any], rounds: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The decision JSON: the last round's value and interval (``interval_source``: whence the interval,
    :data:`cpt_scaling.fit.rounds.SOURCES`; the law's own ``law_lo``/``law_hi``, the fits that ``misfit``, the
    ``measured`` crossing), why the rounds stopped, the runs used, the
    GPU-hours spent (and the full grid's, the budget) and the history of the interval per round."""
    last = rounds[-1]
    s = job["settings"]
    return {"decision": s["decision"], "domain": s["domain"], "description": last["description"],
            "spec": last["spec"], "value": last["value"], "lo": last["lo"], "hi": last["hi"],
            "width": last["width"], "interval_source": last["interval_source"], "law_lo": last["law_lo"],
            "law_hi": last["law_hi"], "misfit": last["misfit"], "misfit_confirmed": last["misfit_confirmed"],
            "measured": last["measured"],
            "target_width": s["target_width"], "status": last["status"],
            "stopped": STOPS[last["status"]], "rounds": len(rounds) - 1, "runs": last["runs"],
            "runs_used": len(last["runs"]), "gpu_hours": last["gpu_hours"],
            "budget_gpu_hours": job["budget_gpu_hours"], "round_gpu_hours": job["round_gpu_hours"],
            "grid_gpu_hours": job["grid_gpu_hours"], "grid_runs": job["grid_runs"],
            "history": [{**h, "proposed": r["next"], "chosen_by": r.get("chosen_by"),
                         "expected_width": r["expected_width"]}
                        for h, r in zip(last["history"], rounds, strict=True)]}
