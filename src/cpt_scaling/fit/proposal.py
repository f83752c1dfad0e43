"""Which runs to do next: candidate runs ranked by the expected shrinkage of a decision's 95 % interval per GPU-hour.

Method (no refits per candidate). The bootstrap resamples of the fitted law (``bootstrap_samples`` of the law JSON,
:func:`cpt_scaling.fit.decisions.param_sets`) are treated as samples of its parameters. For a set ``S`` of candidate
runs, ``J`` simulations each take one ensemble member as the truth, draw the observations S's runs would give
(every checkpoint of every run: ``N``, ``D_k``, ``r``) from it plus noise at the fit's residual scale (a run offset
shared by the run's checkpoints plus point noise, :mod:`cpt_scaling.fit.design_noise`), and reweight the *other*
members by the likelihood of those observations (importance weights; the truth is left out so it cannot vouch for
itself). The simulations use common random numbers, so all candidates are compared on the same draws.

Expected width. The simulated width ratio of ``S`` is ``ρ(S) = sqrt(mean_j Var_w(S),j(v) / mean_j Var_∅,j(v))``:
the decision's variance over the members under simulation ``j``'s weights after the runs of ``S``, against its
variance under the same simulation's weights before any new run (truth left out), both by the same estimator. A
likelihood reweighting cannot raise the expected variance (law of total variance: it falls by the variance of the
mean), so ``ρ`` is capped at 1 (a simulated ratio above 1 is simulation noise) and no run is scored as widening the
interval; `next` stops only when no affordable run is expected to narrow it. The estimator used before compared
mean weighted *percentile* widths, which have no such property, and in rounds it scored every remaining run as
widening while the interval was still wider than the full grid's (issue 23; ``tests/test_next_runs.py`` keeps one
such case). (The same identity written as ``1 − mean_j (m_w − m_∅)² / Var_∅`` was tried: with collapsed weights
its shift term overshoots and gave ``ρ = 0`` in 3 of 12 bench seeds.) The expected
width is ``current width · ρ(S)^κ``, where the current width is the ensemble's 95 % percentile interval and ``κ``
(:data:`CALIBRATION`) is calibrated on ``bench/bench_next_runs.py`` so that the refit's width matches the
expectation in the median (the reweighted ensemble is more confident than the refit, which re-estimates the
parameters the new runs leave free). The expected interval keeps the current interval's split about the median.
Runs are chosen greedily: the affordable candidate with the largest (width reduction)/(GPU-hours), until the budget
is spent or no candidate is expected to narrow the interval. Where the caller can price a candidate over the runs
picked before it (``reprice``: a decision round on WSD trunks, where a second budget of a trunk picked in the same
round costs only its increment over the first), the candidates left are priced anew after each pick.

Never stuck. The simulated ratio of a weakly informative run is its true ratio plus Monte-Carlo noise, and with
collapsed weights (late rounds, many points) that noise can exceed the gain, so every candidate scores ``ρ ≥ 1``
(capped: no gain) although adding an informative run never raises the expected variance. When that happens with an
affordable candidate left, the greedy step falls back to the linearised (``linear``) ratio of the *increment*,
``ρ_lin(S ∪ {c}) / ρ_lin(S)``: a Gaussian conditional variance, which cannot rise when observations are added and
equals 1 only when the candidate's predicted losses do not co-vary with the decision over the ensemble. The run
so chosen is marked ``estimator = "linear (fallback)"``. The proposal stops (:attr:`Proposal.stopped`, printed
as :data:`STOP_TEXT` says) when every candidate is chosen (``candidates``), the budget left affords none
(``budget``), or the best increment's relative variance reduction is at most :data:`NIL_GAIN` (``no_gain``: nothing
affordable carries information on the decision).

Estimators (``method``): ``bootstrap`` (default) mimics the refit's bootstrap over whole runs: in each of ``draws``
resamples per simulation a new run enters with a Poisson(1) multiplicity (absent in about 37 % of them), the
log-likelihoods are scaled by it, and the variance is taken over the mixture of the resamples' weights.
``posterior`` counts each run once (a Bayesian update of the ensemble). ``linear`` replaces the reweighting by the
linear-Gaussian (ensemble Kalman) variance update, ``Var(v) − C_vx (C_xx + R)⁻¹ C_xv``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from cpt_scaling.core.errors import InputError
from cpt_scaling.fit.candidates import Candidate
from cpt_scaling.fit.decision_spec import DecisionSpec, check_decision, decision_values, targets_from
from cpt_scaling.fit.design_noise import noise_cov, run_loglik
from cpt_scaling.fit.ensemble_weights import LEVEL, importance_weights, linear_variance_ratio, weighted_variance

log = logging.getLogger(__name__)

#: Estimators of the expected width (see the module docstring); ``bootstrap`` is the default.
METHODS = ("bootstrap", "posterior", "linear")
#: κ: expected width = current width x (simulated width ratio)^κ (module docstring).
CALIBRATION = 0.5
#: A relative variance reduction (linearised) at most this is no information on the decision (``stopped = no_gain``).
NIL_GAIN = 1e-9
#: Why the greedy choice stopped (printed): every candidate chosen; the budget left affords none; none informative.
STOP_TEXT = {"candidates": "stopped: every candidate is chosen",
             "budget": "stopped: no affordable candidate left (the budget left, {left:.4g} GPU-hours, pays for none)",
             "no_gain": "stopped: no affordable candidate carries information on the decision (linearised variance "
                        "ratio 1: its predicted losses do not co-vary with the decision over the resamples)"}
#: Where :data:`CALIBRATION` comes from (printed by ``cpt-scaling next``).
CALIBRATED_ON = ("calibrated on bench/bench_next_runs.py (L3 truth, usage 2, 100 resamples): kappa 0.49 made the "
                 "median refit width / expected width 1 on seeds 0-15; on seeds 100-111 it is 1.07 at kappa 0.5")

CHOSEN_COLUMNS = ["order", "candidate", "size", "N", "D", "r", "checkpoints", "flops", "flops_method", "gpu_hours",
                  "cumulative_gpu_hours", "current_lo", "current_hi", "current_width", "expected_lo", "expected_hi",
                  "expected_width", "width_reduction", "reduction_per_gpu_hour", "median_ess", "estimator", "kind",
                  "extends"]


@dataclass
class Proposal:
    """Outcome of :func:`propose`: per-candidate first-step scores, the chosen runs in order, and context."""

    ranking: pd.DataFrame
    chosen: pd.DataFrame
    current_width: float
    current_interval: tuple[float, float]
    current_median: float
    members: int
    simulations: int
    budget: float
    spent: float
    sigma: dict[str, tuple[float, float]]
    decision: str
    description: str
    method: str
    calibration: float
    stopped: str = "candidates"
    picked: list[Candidate] = field(default_factory=list)  # the chosen runs, each at its price when picked

    def expected_interval(self, width: float) -> tuple[float, float]:
        """The interval of ``width`` that splits about the ensemble's median as the current interval does."""
        lo, hi = self.current_interval
        s = width / (hi - lo) if hi > lo else 1.0
        mid = self.current_median
        return mid - (mid - lo) * s, mid + (hi - mid) * s

    def to_json(self) -> dict[str, Any]:
        """Plain JSON: the decision, the current interval, the calibration and the chosen runs."""
        lo, hi = self.current_interval
        return {"decision": self.decision, "description": self.description, "method": self.method,
                "calibration": {"kappa": self.calibration, "source": CALIBRATED_ON},
                "current": {"lo": lo, "hi": hi, "width": hi - lo, "median": self.current_median},
                "members": self.members, "simulations": self.simulations, "budget_gpu_hours": self.budget,
                "spent_gpu_hours": self.spent, "stopped": self.stopped,
                "noise": {k: {"sd_run": a, "sd_point": b} for k, (a, b) in self.sigma.items()},
                "chosen": json_rows(self.chosen)}


def json_rows(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows of ``df`` as plain JSON values (numpy scalars converted, NaN as None)."""
    out = []
    for row in df.to_dict(orient="records"):
        out.append({k: (None if isinstance(v, float) and math.isnan(v) else v.item() if hasattr(v, "item") else v)
                    for k, v in row.items()})
    return out


def propose(laws: Mapping[str, Mapping[str, Any]], points: Mapping[str, pd.DataFrame], candidates: list[Candidate],
            spec: DecisionSpec, budget: float, *, simulations: int = 256, seed: int = 0,
            method: str = "bootstrap", draws: int = 8, calibration: float = CALIBRATION,
            where: str = "law JSON", buy_first_ranked: bool = False,
            reprice: Callable[[list[Candidate]], list[Candidate]] | None = None) -> Proposal:
    """Rank ``candidates`` and choose a set within ``budget`` GPU-hours (see the module docstring).

    ``laws`` maps ``"domain"`` (and for usage 1 ``"general"``) to law JSONs with bootstrap samples; ``points`` the
    same keys to the points they were fitted on (``N, D, r, loss``, optional ``run``; the general points with the
    general ratio in ``r``, as the D-CPT study writes them). ``method`` is one of :data:`METHODS`; ``draws`` the
    simulated resamples per simulation of the ``bootstrap`` estimator; ``calibration`` the exponent κ.
    ``buy_first_ranked``: where the first-ranked candidate (largest expected reduction per GPU-hour) costs more than
    ``budget``, the budget rises to its price (a decision round: :func:`cpt_scaling.fit.rounds.next_round`).
    ``reprice``: given the runs picked so far, the candidates not picked at their price over the runs done and
    those (called after each pick; module docstring).
    """
    check_decision(spec.decision)
    if not math.isfinite(budget) or budget <= 0:
        raise InputError("--budget", f"must be a positive number of GPU-hours, got {budget}")
    if simulations < 2:
        raise InputError("--simulations", f"must be >= 2, got {simulations}")
    if method not in METHODS:
        raise InputError("--method", f"unknown method {method!r} (one of {', '.join(METHODS)})")
    B = max(int(draws), 1) if method == "bootstrap" else 1
    targets, G = targets_from(laws, points, where)
    values = decision_values(spec, targets)
    keep = np.isfinite(values)
    if keep.sum() < 20:
        raise InputError(where, f"the decision is undefined for {int((~keep).sum())} of {G} resamples; fewer than "
                                "20 remain")
    if not keep.all():
        log.warning("next: the decision is undefined for %d of %d resamples; they are left out", int((~keep).sum()), G)
        for t in targets.values():
            t.params = {k: v[keep] for k, v in t.params.items()}
        values = values[keep]
        G = int(keep.sum())
    rng = np.random.default_rng(seed)
    J = simulations
    truth = rng.choice(G, size=J, replace=J > G)
    base = np.ones((J, G))
    base[np.arange(J), truth] = 0.0  # leave the simulated truth out of the ensemble that judges it
    loglik, design, mult = {}, {}, {}
    for c in candidates:
        # how often the run enters each of B bootstrap resamples (Poisson(1), the large-sample limit of drawing n
        # runs from n); the plain posterior counts it once
        mult[c.name] = rng.poisson(1.0, (J, B)).astype(float) if method == "bootstrap" else np.ones((J, B))
        ll = np.zeros((J, G))
        tok = c.tokens()
        for t in targets.values():
            pred = t.predict(np.full(tok.size, c.N), tok, np.full(tok.size, c.r))  # (G, m)
            if not np.isfinite(pred).all():
                pred = np.where(np.isfinite(pred), pred, np.nanmax(np.where(np.isfinite(pred), pred, -np.inf)))
            noise = rng.normal(0.0, t.sigma_run, (J, 1)) + rng.normal(0.0, t.sigma_point, (J, tok.size))
            obs = pred[truth] + noise  # (J, m)
            ll += run_loglik(obs[:, None, :] - pred[None, :, :], t.sigma_run, t.sigma_point)
            design.setdefault(c.name, []).append((pred, noise_cov(tok.size, t.sigma_run, t.sigma_point)))
        loglik[c.name] = ll

    tail = 50.0 * (1.0 - LEVEL)
    lo0, hi0 = (float(x) for x in np.percentile(values, [tail, 100.0 - tail]))
    med0 = float(np.median(values))
    width0 = hi0 - lo0
    prior_var = float(np.var(values, ddof=1))
    w_base = importance_weights(np.zeros((J, G)), base)
    var_base = float(np.mean(weighted_variance(values, w_base)))
    base_rep = np.repeat(base, B, axis=0)

    def linear_ratio(names: list[str]) -> float:
        """Linearised width ratio ρ_lin of the runs ``names`` (ensemble Kalman variance update)."""
        if not names:
            return 1.0
        blocks = [b for n in names for b in design[n]]
        x = np.hstack([pred for pred, _ in blocks])
        cov = np.zeros((x.shape[1], x.shape[1]))
        at = 0
        for _, c in blocks:
            cov[at : at + c.shape[0], at : at + c.shape[0]] = c
            at += c.shape[0]
        return math.sqrt(linear_variance_ratio(values, x, cov, prior_var))

    def ratio(acc: np.ndarray, names: list[str]) -> tuple[float, float]:
        """Simulated width ratio ρ and median ESS of the picked runs (log-likelihoods summed in ``acc``)."""
        if method == "linear":
            return linear_ratio(names), float("nan")
        w = importance_weights(acc.reshape(J * B, G), base_rep).reshape(J, B, G).mean(axis=1)
        var = float(np.mean(weighted_variance(values, w)))
        ess = 1.0 / np.sum(w**2, axis=1)
        return (min(math.sqrt(var / var_base), 1.0) if var_base > 0 else 1.0), float(np.median(ess))

    def with_run(acc: np.ndarray, name: str) -> np.ndarray:
        return acc + mult[name][:, :, None] * loglik[name][:, None, :]

    def expected(rho: float) -> float:
        return width0 * rho**calibration

    acc0 = np.zeros((J, B, G))
    _, ess0 = ratio(acc0, [])
    rank_rows = []
    for c in candidates:
        rho, ess = ratio(with_run(acc0, c.name), [c.name])
        w = expected(rho)
        rank_rows.append({"candidate": c.name, "N": c.N, "D": c.D, "r": c.r, "checkpoints": c.checkpoints,
                          "gpu_hours": c.gpu_hours, "expected_width": w, "width_reduction": width0 - w,
                          "reduction_per_gpu_hour": (width0 - w) / c.gpu_hours, "affordable": c.gpu_hours <= budget,
                          "median_ess": ess, "kind": c.kind, "extends": c.extends})
    ranking = pd.DataFrame(rank_rows).sort_values("reduction_per_gpu_hour", ascending=False, kind="stable")
    top = ranking.iloc[0] if len(ranking) else None
    if buy_first_ranked and top is not None and top["gpu_hours"] > budget and top["reduction_per_gpu_hour"] > 0:
        budget = float(top["gpu_hours"])
        ranking["affordable"] = ranking["gpu_hours"] <= budget
    chosen_rows: list[dict[str, Any]] = []
    remaining, width_now, picked, acc = float(budget), width0, [], acc0
    left = {c.name: c for c in candidates}
    prop = Proposal(ranking=ranking.reset_index(drop=True), chosen=pd.DataFrame(columns=CHOSEN_COLUMNS),
                    current_width=width0, current_interval=(lo0, hi0), current_median=med0, members=G,
                    simulations=J, budget=float(budget), spent=0.0,
                    sigma={k: (t.sigma_run, t.sigma_point) for k, t in targets.items()}, decision=spec.decision,
                    description=spec.describe(), method=method, calibration=float(calibration))
    fallback = method == "linear"  # the linearised increment scores the runs (module docstring: never stuck)
    while left:
        affordable = [c for c in left.values() if c.gpu_hours <= remaining]
        if not affordable:
            prop.stopped = "budget"
            break
        best = None
        if not fallback:
            for c in affordable:
                trial = with_run(acc, c.name)
                rho, ess = ratio(trial, [*picked, c.name])
                w = expected(rho)
                # a reduction within rounding of nil is none (a run the members predict alike moves no weight)
                score = (width_now - w) / c.gpu_hours if width_now - w > NIL_GAIN * width_now else 0.0
                if best is None or score > best[0]:
                    best = (score, c, w, ess, trial)
            if best[0] <= 0 and method != "linear":
                fallback = True
                log.info("next: the simulated estimator sees no gain in any of %d affordable run(s); scoring by "
                         "the linearised variance ratio of each increment", len(affordable))
        if fallback:
            best = None
            rho_now = linear_ratio(picked)
            for c in affordable:
                gain = linear_ratio([*picked, c.name]) / rho_now if rho_now > 0 else 1.0
                if 1.0 - gain**2 <= NIL_GAIN:
                    continue
                w = width_now * gain**calibration
                score = (width_now - w) / c.gpu_hours
                if best is None or score > best[0]:
                    best = (score, c, w, float("nan"), acc)
            if best is None:
                prop.stopped = "no_gain"
                break
        score, c, w, ess, acc = best
        picked.append(c.name)
        remaining -= c.gpu_hours
        e_lo, e_hi = prop.expected_interval(w)
        chosen_rows.append({"order": len(chosen_rows) + 1, "candidate": c.name, "size": c.extra.get("size"),
                            "N": c.N, "D": c.D, "r": c.r, "checkpoints": c.checkpoints, "flops": c.flops,
                            "flops_method": c.flops_method, "gpu_hours": c.gpu_hours,
                            "cumulative_gpu_hours": budget - remaining, "current_lo": lo0, "current_hi": hi0,
                            "current_width": width0, "expected_lo": e_lo, "expected_hi": e_hi, "expected_width": w,
                            "width_reduction": width_now - w, "reduction_per_gpu_hour": score, "median_ess": ess,
                            "estimator": "linear (fallback)" if fallback and method != "linear" else method,
                            "kind": c.kind, "extends": c.extends})
        width_now = w
        del left[c.name]
        prop.picked.append(c)
        if reprice is not None:
            left = {x.name: x for x in reprice(list(prop.picked)) if x.name in left}
    prop.chosen = pd.DataFrame(chosen_rows, columns=CHOSEN_COLUMNS)
    prop.spent = float(budget - remaining)
    if chosen_rows and chosen_rows[-1]["median_ess"] < 10:
        log.warning("next: median effective ensemble size after the chosen runs is %.1f (< 10): the expected widths "
                    "are rough; a law JSON with more bootstrap resamples sharpens them",
                    chosen_rows[-1]["median_ess"])
    log.info("next: %d members, %d simulations, current width %.4g (ESS %.0f), chosen %d run(s)",
             G, J, width0, ess0, len(chosen_rows))
    return prop


def format_table(prop: Proposal, max_rows: int = 15) -> str:
    """The printed report: context, the calibration, the chosen runs, and the top of the ranking."""
    lo, hi = prop.current_interval
    lines = [f"decision: {prop.description}",
             f"current 95% interval [{lo:.4g}, {hi:.4g}] (width {hi - lo:.4g}) from {prop.members} bootstrap "
             f"resamples; {prop.simulations} simulations, estimator {prop.method}",
             f"calibration: expected width = current width x (simulated width ratio)^{prop.calibration:g}; "
             f"{CALIBRATED_ON}",
             "noise (log loss): " + ", ".join(f"{k} sd_run {a:.3g} sd_point {b:.3g}"
                                              for k, (a, b) in prop.sigma.items()),
             f"budget {prop.budget:.4g} GPU-hours, chosen runs cost {prop.spent:.4g}", ""]
    if not prop.chosen.empty:
        lines.append(f"{'#':>2}  {'candidate':<28} {'kind':<9} {'N':>10} {'D':>10} {'r':>5} {'GPU-h':>10} "
                     f"{'expected interval':>21} {'width':>9} {'shrink/GPU-h':>12}  estimator")
        for row in prop.chosen.itertuples():
            iv = f"[{row.expected_lo:.4g}, {row.expected_hi:.4g}]"
            lines.append(f"{row.order:>2}  {row.candidate:<28} {row.kind:<9} {row.N:>10.4g} {row.D:>10.4g} "
                         f"{row.r:>5.3g} {row.gpu_hours:>10.4g} {iv:>21} {row.expected_width:>9.4g} "
                         f"{row.reduction_per_gpu_hour:>12.4g}  {row.estimator}")
        extensions = prop.chosen[prop.chosen["kind"] == "extension"]
        for row in extensions.itertuples():
            lines.append(f"    {row.candidate} extends the WSD trunk {row.extends}: priced at its increment")
    lines.append(STOP_TEXT[prop.stopped].format(left=prop.budget - prop.spent))
    lines += ["", f"ranking of single candidates (top {min(max_rows, len(prop.ranking))} of {len(prop.ranking)}):"]
    for row in prop.ranking.head(max_rows).itertuples():
        lines.append(f"    {row.candidate:<28} {row.kind:<9} GPU-h {row.gpu_hours:>10.4g}  "
                     f"width {row.expected_width:>9.4g}  "
                     f"shrink/GPU-h {row.reduction_per_gpu_hour:>10.4g}"
                     + ("" if row.affordable else "  (over budget)"))
    return "\n".join(lines)
