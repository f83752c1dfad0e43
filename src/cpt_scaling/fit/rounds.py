"""`next` used in rounds, as a user (or a Snakemake loop) would: fit, propose runs within a per-round budget, train
them, refit; until the decision's interval reaches a target width, the proposer stops choosing runs, the
candidates run out, or the rounds do. Training and fitting are callables, so the same loop runs on simulated runs
(``bench/bench_next_runs.py --rounds``) and on real ones."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from cpt_scaling.fit.candidates import Candidate
from cpt_scaling.fit.decision_spec import DecisionSpec, decision_interval
from cpt_scaling.fit.proposal import propose

log = logging.getLogger(__name__)

#: Why :func:`run_rounds` stopped: the target width reached; no run chosen although one was affordable; no
#: affordable candidate left; the round limit.
STATUSES = ("reached", "stalled", "exhausted", "max_rounds")

Points = Mapping[str, pd.DataFrame]
Laws = Mapping[str, Mapping[str, Any]]


@dataclass
class RoundsResult:
    """One row per fit (round 0 is the starting design's) and why the loop stopped."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    status: str = "max_rounds"

    def table(self) -> pd.DataFrame:
        """The rounds as a table: round, runs, gpu_hours (cumulative, the start's included), lo, hi, width,
        proposed (runs chosen after that fit), expected_width (the proposal's, after its runs)."""
        return pd.DataFrame(self.rows)


def run_rounds(points: Points, candidates: list[Candidate], spec: DecisionSpec, *, fit: Callable[[Points], Laws],
               train: Callable[[list[Candidate]], Points], budget_per_round: float, target_width: float,
               start_gpu_hours: float = 0.0, max_rounds: int = 50, simulations: int = 256, seed: int = 0,
               method: str = "bootstrap") -> RoundsResult:
    """Fit ``points`` (``fit``: points per target -> law JSON per target, with bootstrap samples), propose within
    ``budget_per_round`` GPU-hours among the candidates not yet run, ``train`` the chosen runs (-> their points per
    target), append them and refit, until the interval's width is at most ``target_width`` (or another of
    :data:`STATUSES`). Round ``k`` proposes with seed ``seed + k``."""
    pts = {k: v.reset_index(drop=True) for k, v in points.items()}
    left = list(candidates)
    hours = float(start_gpu_hours)
    out = RoundsResult()
    runs = int(sum(v["run"].nunique() for k, v in pts.items() if k == "domain" and "run" in v.columns))
    for k in range(max_rounds + 1):
        laws = fit(pts)
        lo, hi = decision_interval(laws, pts, spec)
        row = {"round": k, "runs": runs, "gpu_hours": hours, "lo": lo, "hi": hi, "width": hi - lo, "proposed": 0,
               "expected_width": float("nan")}
        out.rows.append(row)
        if hi - lo <= target_width:
            out.status = "reached"
            break
        if k == max_rounds:
            break
        affordable = [c for c in left if c.gpu_hours <= budget_per_round]
        if not affordable:
            out.status = "exhausted"
            break
        prop = propose(laws, pts, affordable, spec, budget_per_round, simulations=simulations, seed=seed + k,
                       method=method)
        if prop.chosen.empty:
            out.status = "stalled"
            break
        names = set(prop.chosen["candidate"])
        chosen = [c for c in left if c.name in names]
        row["proposed"], row["expected_width"] = len(chosen), float(prop.chosen["expected_width"].iloc[-1])
        new = train(chosen)
        pts = {t: pd.concat([v, new[t]], ignore_index=True) if t in new else v for t, v in pts.items()}
        left = [c for c in left if c.name not in names]
        hours += sum(c.gpu_hours for c in chosen)
        runs += len(chosen)
        log.info("rounds: round %d width %.4g, %d run(s) proposed (expected width %.4g)", k, hi - lo, len(chosen),
                 row["expected_width"])
    return out
