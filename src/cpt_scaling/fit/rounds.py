"""`next` used in rounds, as a user (or a Snakemake loop) would: fit, propose runs within a per-round budget, train
them, refit; until the decision's interval reaches a target width, the proposer stops choosing runs, the
candidates run out, the total budget is spent, or the rounds run out. Training and fitting are callables, so the
same loop runs on simulated runs (``bench/bench_next_runs.py --rounds``, ``bench/bench_decide.py``) and on real
ones. With ``decay_fraction`` (WSD budgets) each round prices the candidates at their increment over the trunks
done so far (:func:`cpt_scaling.fit.candidates.price_increments`)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from cpt_scaling.fit.candidates import Candidate, price_increments, trunks_of
from cpt_scaling.fit.decision_spec import DecisionSpec, decision_interval
from cpt_scaling.fit.proposal import propose

log = logging.getLogger(__name__)

#: Why :func:`run_rounds` stopped: the target width reached; no run chosen although one was affordable (the
#: proposer found no affordable run informative on the decision: ``Proposal.stopped == "no_gain"``); no candidate
#: left; the round limit; the total budget left affords no candidate.
STATUSES = ("reached", "stalled", "exhausted", "max_rounds", "budget")

Points = Mapping[str, pd.DataFrame]
Laws = Mapping[str, Mapping[str, Any]]


@dataclass
class RoundsResult:
    """One row per fit (round 0 is the starting design's) and why the loop stopped."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    status: str = "max_rounds"

    def table(self) -> pd.DataFrame:
        """The rounds as a table: round, runs (the start's ``run`` ids plus the candidates chosen), gpu_hours
        (cumulative, the start's included), lo, hi, width, proposed (runs chosen after that fit), extensions (of
        them, WSD extensions), expected_width (the proposal's, after its runs), proposer_stop
        (``Proposal.stopped``)."""
        return pd.DataFrame(self.rows)


def run_rounds(points: Points, candidates: list[Candidate], spec: DecisionSpec, *, fit: Callable[[Points], Laws],
               train: Callable[[list[Candidate]], Points], budget_per_round: float, target_width: float,
               start_gpu_hours: float = 0.0, max_rounds: int = 50, simulations: int = 256, seed: int = 0,
               method: str = "bootstrap", total_budget: float | None = None,
               decay_fraction: float | None = None) -> RoundsResult:
    """Fit ``points`` (``fit``: points per target -> law JSON per target, with bootstrap samples), propose within
    ``budget_per_round`` GPU-hours (at least the cheapest candidate's price; at most what is left of
    ``total_budget``, which counts ``start_gpu_hours``) among the candidates not yet run, ``train`` the chosen
    runs (-> their points per target), append them and refit, until the interval's width is at most
    ``target_width`` (or another of :data:`STATUSES`). ``candidates`` are priced as separate runs;
    with ``decay_fraction`` each round reprices them at their WSD increment over the runs done (the start's
    distinct ``(N, D, r)`` and the chosen). Round ``k`` proposes with seed ``seed + k``."""
    pts = {k: v.reset_index(drop=True) for k, v in points.items()}
    left = list(candidates)
    hours = float(start_gpu_hours)
    out = RoundsResult()
    dom = pts.get("domain")
    runs = int(dom["run"].nunique()) if dom is not None and "run" in dom.columns else 0
    done = ([] if dom is None else
            [tuple(x) for x in dom[["N", "D", "r"]].drop_duplicates().to_numpy(float)])
    for k in range(max_rounds + 1):
        laws = fit(pts)
        lo, hi = decision_interval(laws, pts, spec)
        row = {"round": k, "runs": runs, "gpu_hours": hours, "lo": lo, "hi": hi, "width": hi - lo, "proposed": 0,
               "extensions": 0, "expected_width": float("nan"), "proposer_stop": None}
        out.rows.append(row)
        if hi - lo <= target_width:
            out.status = "reached"
            break
        if k == max_rounds:
            break
        priced = left if decay_fraction is None else price_increments(left, trunks_of(done), decay_fraction)
        if not priced:
            out.status = "exhausted"
            break
        # a round buys at least one run: the cheapest left, where it alone costs more than a round
        budget = max(budget_per_round, min(c.gpu_hours for c in priced))
        if total_budget is not None:
            budget = min(budget, total_budget - hours)
        affordable = [c for c in priced if c.gpu_hours <= budget]
        if not affordable:
            out.status = "budget"
            break
        prop = propose(laws, pts, affordable, spec, budget, simulations=simulations, seed=seed + k, method=method)
        row["proposer_stop"] = prop.stopped
        if prop.chosen.empty:
            out.status = "stalled"
            break
        names = set(prop.chosen["candidate"])
        chosen = [c for c in priced if c.name in names]
        row["proposed"], row["expected_width"] = len(chosen), float(prop.chosen["expected_width"].iloc[-1])
        row["extensions"] = sum(c.kind == "extension" for c in chosen)
        new = train(chosen)
        pts = {t: pd.concat([v, new[t]], ignore_index=True) if t in new else v for t, v in pts.items()}
        left = [c for c in left if c.name not in names]
        done += [(c.N, c.D, c.r) for c in chosen]
        hours += sum(c.gpu_hours for c in chosen)
        runs += len(chosen)
        log.info("rounds: round %d width %.4g, %d run(s) proposed, %d of them extensions (expected width %.4g)",
                 k, hi - lo, len(chosen), row["extensions"], row["expected_width"])
    return out
