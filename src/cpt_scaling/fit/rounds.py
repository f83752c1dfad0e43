"""Rounds of fit -> interval -> stop rule -> propose, until the decision's interval reaches a target width.

:func:`next_round` is one round, given the fits of the runs so far: it is what the workflow's decision target
runs in each of its checkpoint rounds (:func:`cpt_scaling.studies.decide.round_record`) and what :func:`run_rounds`
loops over with callables for training and fitting, so the same loop runs on simulated runs
(``bench/bench_next_runs.py --rounds``, ``bench/bench_decide.py``) and on real ones. The caller prices the
candidates left at their increment over the runs done (the workflow from its plan's training keys, the library
loop with :func:`cpt_scaling.fit.candidates.price_increments`).

**The interval a round reports** (``interval_source``). The law's 95 % bootstrap interval is trusted only where
the law passes its own check. For usage 1 at an ``(N, D)`` the points measure at two or more ratios, the
constraint crossing is also read off the measured points (:func:`cpt_scaling.fit.measured.measured_max_domain_ratio`,
with its interval from the general and the domain points' noise):

* ``law``: no fit carries a ``misfit`` diagnostic and the measured crossing (where there is one) lies within the
  law's interval (:func:`cpt_scaling.fit.measured.consistent`).
* ``law, misfit to confirm``: a fit misfits its points in this round but did not in the round before, and the
  measured crossing (where there is one) agrees with the law: the interval is the law's, but it cannot stop the
  rounds as ``reached``; the proposer chooses the runs as usual and the next round's refit tests again. A misfit
  counts (the two cases below) once the same fit is flagged in two rounds in a row. The test flags more of the
  small designs a decision loop fits on the way than its 5 % level: under ``bench/bench_decide.py``'s L3 truth,
  L3 fits of its start plus 20 random grid branches (32 points) flagged 6 of 60 fits, one round in five with the
  two fits; with 40 branches, 1 of 60. A flag that counts costs a bracket at the decision's size and budget (0.13
  of the grid's GPU-hours there) and an interval joined to a two-point measured crossing until the flag clears.
* ``law+measured``: a fit misfits its own points, or the measured crossing contradicts the law: the interval is the
  union (hull) of the two. Neither alone is trusted: the law is rejected by its points (or by the measured
  crossing), and the measured interval carries the points' noise but not the error of interpolating between
  measured ratios; the union covers wherever either does. Where both checks fail (a misfit, and a measured
  crossing outside the law's interval) the rounds stop (``misfit``): more runs narrow the interval of a law that
  cannot express the points, not the distance between it and the measurement. One failed check alone does not
  stop them: each fails in about 5 % of the fits of a law that holds (more on small designs, above), and a loop
  refits every round, so a single flag recurs by chance over the rounds; the next round's refit tests again.
* ``law, unchecked misfit``: a fit misfits and the points measure no crossing (usage 1 at the decision's ``(N, D)``;
  usage 2 and 3 have no measured check in the rounds): the interval is the law's but cannot stop the rounds as
  ``reached``; for usage 1 the round buys the runs at the decision's ``(N, D)`` that bracket the law's interval
  (:func:`crossing_bracket`: the nearest candidate ratio at or below its ``lo`` and at or above its ``hi``, where
  no measured ratio brackets it already), so the next round measures the crossing in one step instead of one run
  per round; where they are bought and the crossing is still not measured, the proposer is offered only the
  candidates at ``(N, D)`` (while any is left).

**A round's GPU-hours** (:func:`round_budget`): at most the round's share, and no more than the rounds are expected
to need to reach the target width: a bootstrap interval's width falls about as ``1/sqrt(information)``, and the
information bought grows about with the GPU-hours, so reaching ``target`` from ``width`` after ``spent`` GPU-hours
takes about ``spent·((width/target)² − 1)`` more; a round buys at least the cheapest candidate left, and at least
the candidate the proposer ranks first (largest expected width reduction per GPU-hour) whatever its price: the
share caps how much a round buys, not which run, and the runs at a large decision's size and budget can cost more
than a round's share (in bench/bench_decide.py one trunk of the largest size costs 0.074 of the grid against 5 %
rounds), so a fixed share would never buy the most efficient runs; never more than the total budget leaves. A
bracketing round (above) spends what its runs cost instead.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from cpt_scaling.fit import measured
from cpt_scaling.fit.candidates import Candidate, price_increments, trunks_of
from cpt_scaling.fit.decision_spec import DecisionSpec, decision_interval
from cpt_scaling.fit.proposal import propose

log = logging.getLogger(__name__)

#: Why the rounds stopped: the target width reached; no run chosen although one was affordable (the proposer found
#: no affordable run informative on the decision: ``Proposal.stopped == "no_gain"``); no candidate left; the round
#: limit; the total budget left affords no candidate; the law misfits its points and the measured crossing
#: contradicts it (module docstring).
STATUSES = ("reached", "stalled", "exhausted", "max_rounds", "budget", "misfit")
#: Where a round's interval comes from (module docstring).
SOURCES = ("law", "law, misfit to confirm", "law+measured", "law, unchecked misfit")

Points = Mapping[str, pd.DataFrame]
Laws = Mapping[str, Mapping[str, Any]]


@dataclass
class Round:
    """One round's outcome: the reported interval and its source, the law's own interval, the fits that misfit
    (``misfit``) and those of them also flagged in the round before (``confirmed``: the misfits that count), the
    measured crossing (usage 1, or None), why the rounds stop (None: they go on with ``chosen``), who chose
    the runs (``proposer``, or ``bracket``: :func:`crossing_bracket`), and the proposal's expected width, its stop
    reason and the GPU-hours the round could spend."""

    lo: float
    hi: float
    law_lo: float
    law_hi: float
    interval_source: str
    misfit: list[str]
    measured: dict[str, Any] | None
    confirmed: list[str] = field(default_factory=list)
    status: str | None = None
    chosen: list[Candidate] = field(default_factory=list)
    chosen_by: str | None = None
    expected_width: float | None = None
    proposer_stop: str | None = None
    round_gpu_hours: float | None = None

    @property
    def width(self) -> float:
        return self.hi - self.lo

    def to_json(self) -> dict[str, Any]:
        """The round's interval fields (the decision JSON's per-round keys)."""
        return {"lo": self.lo, "hi": self.hi, "width": self.width, "interval_source": self.interval_source,
                "law_lo": self.law_lo, "law_hi": self.law_hi, "misfit": self.misfit,
                "misfit_confirmed": self.confirmed, "measured": self.measured}


def _at(values: pd.Series, x: float) -> np.ndarray:
    """Rows of ``values`` equal to ``x`` (to 1e-6 relative)."""
    return np.isclose(values.to_numpy(float), x, rtol=1e-6)


def measured_crossing(laws: Laws, pts: Points, spec: DecisionSpec) -> dict[str, Any] | None:
    """Usage 1's crossing read off the measured points at the decision's ``(N, D)``, with its interval from the
    general and the domain fit's point noise (:func:`cpt_scaling.fit.measured.point_noise`); None for another
    decision or where the points give no crossing there."""
    if spec.decision != "usage1" or "general" not in pts:
        return None
    table = pd.concat([pts["domain"].assign(target="domain", ratio=pts["domain"]["r"]),
                       pts["general"].assign(target="general", ratio=1.0 - pts["general"]["r"])], ignore_index=True)
    table = table[_at(table["N"], float(spec.N)) & _at(table["D"], float(spec.D))]
    limit = float(spec.base_general_loss) * (1.0 + spec.tolerance)
    level = float(table.loc[table["target"] == "domain", "loss"].mean()) if (table["target"] == "domain").any() else 0.0
    read = measured.measured_max_domain_ratio(table, N=float(spec.N), D=float(spec.D), limit=limit,
                                              noise=measured.point_noise(laws["general"], limit),
                                              domain_noise=measured.point_noise(laws["domain"], level))
    return read if read.get("measured") is not None else None


def checked_interval(laws: Laws, pts: Points, spec: DecisionSpec, where: str = "law JSON",
                     previous_misfit: Sequence[str] = ()) -> Round:
    """The round's interval: the law's, checked against its misfit diagnostics and the measured crossing, and the
    source it comes from (module docstring). ``previous_misfit``: the fits flagged in the round before (a misfit
    counts where the same fit is flagged again)."""
    law_lo, law_hi = decision_interval(laws, pts, spec, where=where)
    misfit = sorted(t for t, law in laws.items() if law.get("diagnostics", {}).get("misfit"))
    confirmed = [t for t in misfit if t in previous_misfit]
    read = measured_crossing(laws, pts, spec)
    lo, hi, source = law_lo, law_hi, "law"
    if read is not None:
        read = {**read, "consistent": measured.consistent(read, law_lo, law_hi)}
    if confirmed or (read is not None and not read["consistent"]):
        if read is not None:
            m_lo, m_hi = read.get("measured_lo", read["measured"]), read.get("measured_hi", read["measured"])
            lo, hi, source = min(law_lo, m_lo), max(law_hi, m_hi), "law+measured"
        else:
            source = "law, unchecked misfit"
    elif misfit:
        source = "law, misfit to confirm"
    return Round(lo, hi, law_lo, law_hi, source, misfit, read, confirmed)


def at_decision_point(left: Sequence[Candidate], spec: DecisionSpec) -> list[Candidate]:
    """The candidates at the decision's ``(N, D)`` (to 1e-6 relative)."""
    return [c for c in left if math.isclose(c.N, spec.N, rel_tol=1e-6) and math.isclose(c.D, spec.D, rel_tol=1e-6)]


def crossing_bracket(left: Sequence[Candidate], pts: Points, spec: DecisionSpec, lo: float,
                     hi: float) -> list[Candidate]:
    """Usage 1's candidates at the decision's ``(N, D)`` that let the points measure a crossing the law puts in
    ``[lo, hi]``: on each side the nearest candidate ratio (at or below ``lo``, at or above ``hi``), unless a
    ratio measured there already lies between it and the interval."""
    at = at_decision_point(left, spec)
    gen = pts.get("general")
    done = ([] if gen is None else
            list(1.0 - gen["r"].to_numpy(float)[_at(gen["N"], float(spec.N)) & _at(gen["D"], float(spec.D))]))
    chosen = []
    below = [c for c in at if c.r <= lo + 1e-9]
    if below:
        near = max(below, key=lambda c: c.r)
        if not any(near.r - 1e-9 <= m <= lo + 1e-9 for m in done):
            chosen.append(near)
    above = [c for c in at if c.r >= hi - 1e-9]
    if above:
        near = min(above, key=lambda c: c.r)
        if not any(hi - 1e-9 <= m <= near.r + 1e-9 for m in done):
            chosen.append(near)
    return chosen


def round_budget(per_round: float, spent: float, width: float, target: float) -> float:
    """GPU-hours a round may spend: ``per_round``, at most what reaching ``target`` is expected to take from
    ``width`` after ``spent`` GPU-hours (module docstring)."""
    if target <= 0 or spent <= 0 or not math.isfinite(width):
        return per_round
    return min(per_round, spent * max((width / target) ** 2 - 1.0, 0.0))


def next_round(laws: Laws, pts: Points, spec: DecisionSpec, left: Sequence[Candidate], *, k: int, spent: float,
               target_width: float, round_gpu_hours: float, total_budget: float | None = None,
               max_rounds: int = 50, simulations: int = 256, seed: int = 0, method: str = "bootstrap",
               where: str = "law JSON", previous_misfit: Sequence[str] = (),
               reprice: Callable[[list[Candidate]], list[Candidate]] | None = None) -> Round:
    """Round ``k``: the checked interval of the fits ``laws`` of the points ``pts`` (:func:`checked_interval`; a
    misfit counts where ``previous_misfit``, the fits flagged in round ``k - 1``, holds the same fit), the stop
    rule, and else the runs the proposer chooses (seed ``seed + k``) among the candidates ``left``
    (priced at their increment) within :func:`round_budget` (at least the cheapest candidate left and the one the
    proposer ranks first; at most what is left of ``total_budget`` after ``spent``). ``reprice`` (given runs picked
    in this round, the others at their increment over the runs done and those) lets the proposer price a second
    budget of a trunk it picked in the same round at its increment; the chosen runs carry their price when
    picked, so their sum is what the round costs."""
    out = checked_interval(laws, pts, spec, where=where, previous_misfit=previous_misfit)
    unchecked = out.interval_source == "law, unchecked misfit"
    if out.width <= target_width and out.interval_source in ("law", "law+measured"):
        out.status = "reached"
    elif out.confirmed and out.measured is not None and not out.measured["consistent"]:
        out.status = "misfit"
    elif k >= max_rounds:
        out.status = "max_rounds"
    elif not left:
        out.status = "exhausted"
    if out.status is not None:
        return out
    offered = list(left)
    if unchecked and spec.decision == "usage1":  # measure the crossing: the runs at the decision's (N, D), if any
        bracket = crossing_bracket(left, pts, spec, out.law_lo, out.law_hi)
        cost = sum(c.gpu_hours for c in bracket)
        if bracket and (total_budget is None or cost <= total_budget - spent):
            out.chosen, out.chosen_by, out.round_gpu_hours = bracket, "bracket", cost
            return out
        offered = at_decision_point(left, spec) or offered
    if total_budget is not None:
        offered = [c for c in offered if c.gpu_hours <= total_budget - spent]
    if not offered:
        out.status = "budget"
        return out
    budget = max(round_budget(round_gpu_hours, spent, out.width, target_width), min(c.gpu_hours for c in offered))
    if total_budget is not None:
        budget = min(budget, total_budget - spent)
    # the share caps how much a round buys, not which run: the first-ranked run is bought whatever its price
    prop = propose(laws, pts, offered, spec, budget, simulations=simulations, seed=seed + k, method=method,
                   where=where, buy_first_ranked=True, reprice=reprice)
    out.round_gpu_hours = prop.budget
    out.proposer_stop = prop.stopped
    if prop.chosen.empty:
        out.status = "stalled"
        return out
    out.chosen, out.chosen_by = list(prop.picked), "proposer"
    out.expected_width = float(prop.chosen["expected_width"].iloc[-1])
    return out


@dataclass
class RoundsResult:
    """One row per fit (round 0 is the starting design's) and why the loop stopped."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    status: str = "max_rounds"

    def table(self) -> pd.DataFrame:
        """The rounds as a table: round, runs (the start's ``run`` ids plus the candidates chosen), gpu_hours
        (cumulative, the start's included), lo, hi, width, interval_source, law_lo, law_hi, misfit (the fits
        that misfit, comma-joined), misfit_confirmed (of them, those flagged in the round before too), measured
        (usage 1's measured crossing or nan), proposed (runs chosen after that fit), chosen_by (``proposer`` or
        ``bracket``), extensions (of them, WSD extensions), expected_width (the proposal's, after its runs),
        proposer_stop (``Proposal.stopped``), round_gpu_hours (what the round could spend)."""
        return pd.DataFrame(self.rows)


def repricer(pool: Sequence[Candidate], done: Sequence[tuple[float, float, float]], decay_fraction: float
             ) -> Callable[[list[Candidate]], list[Candidate]]:
    """For a round's proposer: given the runs picked so far, the candidates of ``pool`` (priced as separate runs)
    not picked, at their WSD increment over the runs ``done`` and the picked."""
    pool, done = list(pool), list(done)

    def reprice(picked: list[Candidate]) -> list[Candidate]:
        names = {c.name for c in picked}
        return price_increments([c for c in pool if c.name not in names],
                                trunks_of(done + [(c.N, c.D, c.r) for c in picked]), decay_fraction)
    return reprice


def run_rounds(points: Points, candidates: list[Candidate], spec: DecisionSpec, *, fit: Callable[[Points], Laws],
               train: Callable[[list[Candidate]], Points], budget_per_round: float, target_width: float,
               start_gpu_hours: float = 0.0, max_rounds: int = 50, simulations: int = 256, seed: int = 0,
               method: str = "bootstrap", total_budget: float | None = None,
               decay_fraction: float | None = None) -> RoundsResult:
    """Fit ``points`` (``fit``: points per target -> law JSON per target, with bootstrap samples), run
    :func:`next_round` on the candidates not yet run (``budget_per_round`` GPU-hours a round; ``total_budget``
    counts ``start_gpu_hours``), ``train`` the chosen runs (-> their points per target), append them and refit,
    until a round stops (:data:`STATUSES`). ``candidates`` are priced as separate runs; with ``decay_fraction``
    each round reprices them at their WSD increment over the runs done (the start's distinct ``(N, D, r)`` and the
    chosen)."""
    pts = {k: v.reset_index(drop=True) for k, v in points.items()}
    left = list(candidates)
    hours = float(start_gpu_hours)
    out = RoundsResult()
    dom = pts.get("domain")
    runs = int(dom["run"].nunique()) if dom is not None and "run" in dom.columns else 0
    done = ([] if dom is None else
            [tuple(x) for x in dom[["N", "D", "r"]].drop_duplicates().to_numpy(float)])
    flagged: list[str] = []  # the fits the round before flagged
    for k in range(max_rounds + 1):
        reprice = None if decay_fraction is None else repricer(left, done, decay_fraction)
        priced = left if reprice is None else reprice([])
        step = next_round(fit(pts), pts, spec, priced, k=k, spent=hours, target_width=target_width,
                          round_gpu_hours=budget_per_round, total_budget=total_budget, max_rounds=max_rounds,
                          simulations=simulations, seed=seed, method=method,
                          previous_misfit=flagged, reprice=reprice)
        chosen, flagged = step.chosen, step.misfit
        out.rows.append({
            "round": k, "runs": runs, "gpu_hours": hours, "lo": step.lo, "hi": step.hi, "width": step.width,
            "interval_source": step.interval_source, "law_lo": step.law_lo, "law_hi": step.law_hi,
            "misfit": ",".join(step.misfit), "misfit_confirmed": ",".join(step.confirmed),
            "measured": step.measured["measured"] if step.measured else math.nan,
            "proposed": len(chosen), "chosen_by": step.chosen_by,
            "extensions": sum(c.kind == "extension" for c in chosen),
            "expected_width": step.expected_width if step.expected_width is not None else math.nan,
            "proposer_stop": step.proposer_stop, "round_gpu_hours": step.round_gpu_hours})
        if step.status is not None:
            out.status = step.status
            break
        new = train(chosen)
        pts = {t: pd.concat([v, new[t]], ignore_index=True) if t in new else v for t, v in pts.items()}
        names = {c.name for c in chosen}
        left = [c for c in left if c.name not in names]
        done += [(c.N, c.D, c.r) for c in chosen]
        hours += sum(c.gpu_hours for c in chosen)
        runs += len(chosen)
        log.info("rounds: round %d width %.4g (%s), %d run(s) proposed, %d of them extensions (expected width "
                 "%.4g)", k, step.width, step.interval_source, len(chosen), out.rows[-1]["extensions"],
                 out.rows[-1]["expected_width"])
    return out
