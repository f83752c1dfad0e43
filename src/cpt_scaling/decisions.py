"""Decisions read off fitted laws (each function takes the law JSON written by ``cpt-scaling fit``).

Compute is counted as ``C = 6·N·D`` FLOPs (N parameters, D tokens) throughout this module.

* D-CPT usage 1 — :func:`dcpt_max_domain_ratio`: the largest domain ratio whose general-loss increase over the
  base model stays within a tolerance.
* D-CPT usage 2 — :func:`dcpt_ratio_for_limited_domain_data`: the best ratio when the domain corpus is limited
  (all of it is used once, so ``D = D_domain / r``).
* D-CPT usage 3 — :func:`dcpt_compute_allocation`: the best ``(N, D)`` for a compute budget at fixed ratio.
* :func:`chinchilla_compute_optimal`: closed-form compute-optimal ``N`` and ``D`` of the Chinchilla form.
* :func:`split_optimal_fraction`, :func:`split_compute_multiplier`: the split law's best specialisation share
  and its compute advantage over a reference split.
* :func:`sger`: specialist-vs-general compute ratio; :func:`optimal_model_size_per_compute`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.optimize import brentq, minimize_scalar

from cpt_scaling.errors import InputError
from cpt_scaling.laws import LAWS, Law

LawJson = Mapping[str, Any]
DCPT_NAMES = ("dcpt", "dcpt_l1", "dcpt_l2", "dcpt_l3", "dcpt_l4", "dcpt_l5")


def _law(law_json: LawJson, allowed: Sequence[str] | None = None) -> tuple[Law, dict[str, float]]:
    name = law_json.get("law")
    if name not in LAWS or (allowed is not None and name not in allowed):
        raise InputError(
            "law JSON", f"law {name!r} not usable here (expected one of {', '.join(allowed or LAWS)})"
        )
    params = {k: float(v) for k, v in law_json["params"].items()}
    return LAWS[name], params


def law_loss(law_json: LawJson, **columns: float | np.ndarray) -> np.ndarray:
    """Loss predicted by a fitted law at the given columns (scalars or arrays, broadcast together)."""
    law, params = _law(law_json)
    arrays = np.broadcast_arrays(*(np.asarray(columns[c], dtype=float) for c in law.columns))
    cols = {c: a.ravel() for c, a in zip(law.columns, arrays, strict=True)}
    return law.predict(params, cols).reshape(arrays[0].shape)


def _argmin_1d(fun: Any, lo: float, hi: float, n_grid: int = 2001) -> float:
    """Global minimiser of a scalar function on ``[lo, hi]``: dense grid, then bounded Brent refinement."""
    grid = np.linspace(lo, hi, n_grid)
    values = np.array([fun(v) for v in grid])
    i = int(np.nanargmin(values))
    a, b = grid[max(i - 1, 0)], grid[min(i + 1, n_grid - 1)]
    if b <= a:
        return float(grid[i])
    res = minimize_scalar(fun, bounds=(a, b), method="bounded", options={"xatol": 1e-12 * max(1.0, abs(b))})
    return float(res.x) if res.fun <= values[i] else float(grid[i])


def dcpt_max_domain_ratio(
    general_law: LawJson,
    *,
    N: float,
    D: float,
    base_general_loss: float,
    tolerance: float,
    relative: bool = True,
    n_grid: int = 1001,
) -> dict[str, Any]:
    """D-CPT usage 1: the largest domain ratio ``r_d`` whose general loss stays within the tolerance.

    ``general_law`` is a D-CPT law fitted to the *general* loss with ``r`` = general-corpus ratio, so it is
    evaluated at ``1 - r_d``. The constraint is ``L_g(N, D, 1 - r_d) <= base·(1 + tolerance)`` (``relative``)
    or ``<= base + tolerance``. The largest feasible grid ratio is refined to the exact crossing by Brent's
    method, so a monotone constraint returns its root to machine precision. ``ratio`` is None when even
    ``r_d = 0`` violates the constraint.
    """
    _law(general_law, DCPT_NAMES)
    limit = base_general_loss * (1.0 + tolerance) if relative else base_general_loss + tolerance

    def excess(r_d: float) -> float:
        return float(law_loss(general_law, N=N, D=D, r=1.0 - r_d)) - limit

    grid = np.linspace(0.0, 1.0, n_grid)
    values = np.array([excess(v) for v in grid])
    feasible = np.flatnonzero(values <= 0)
    out: dict[str, Any] = {
        "usage": 1,
        "N": N,
        "D": D,
        "limit": limit,
        "tolerance": tolerance,
        "relative": relative,
    }
    if feasible.size == 0:
        return {**out, "ratio": None, "general_loss": None, "note": "infeasible even at r_d = 0"}
    j = int(feasible[-1])
    ratio = 1.0 if j == n_grid - 1 else float(brentq(excess, grid[j], grid[j + 1], xtol=1e-15, rtol=1e-15))
    return {**out, "ratio": ratio, "general_loss": excess(ratio) + limit}


def dcpt_ratio_for_limited_domain_data(
    domain_law: LawJson, *, N: float, domain_tokens: float, r_min: float = 1e-3, r_max: float = 1.0
) -> dict[str, Any]:
    """D-CPT usage 2: the domain ratio minimising the domain loss when only ``domain_tokens`` exist.

    All domain tokens are used once, so a ratio ``r`` implies ``D = domain_tokens / r`` total tokens (smaller
    ratios mean more general tokens and more compute); the total is at most ``domain_tokens / r_min``.
    """
    _law(domain_law, DCPT_NAMES)

    def loss(r: float) -> float:
        return float(law_loss(domain_law, N=N, D=domain_tokens / r, r=r))

    r = _argmin_1d(loss, r_min, r_max)
    return {
        "usage": 2,
        "N": N,
        "domain_tokens": domain_tokens,
        "ratio": r,
        "D": domain_tokens / r,
        "loss": loss(r),
    }


def dcpt_compute_allocation(
    law_json: LawJson, *, compute: float, r: float, n_range: tuple[float, float] = (1e6, 1e13)
) -> dict[str, Any]:
    """D-CPT usage 3: ``N`` and ``D = C/(6N)`` minimising the loss at ratio ``r`` for compute ``C``."""
    _law(law_json, (*DCPT_NAMES, "chinchilla"))
    has_r = "r" in LAWS[law_json["law"]].columns

    def loss(log_n: float) -> float:
        n = math.exp(log_n)
        cols: dict[str, float] = {"N": n, "D": compute / (6.0 * n)}
        if has_r:
            cols["r"] = r
        return float(law_loss(law_json, **cols))

    log_n = _argmin_1d(loss, math.log(n_range[0]), math.log(n_range[1]))
    n = math.exp(log_n)
    return {
        "usage": 3,
        "compute": compute,
        "ratio": r,
        "N": n,
        "D": compute / (6.0 * n),
        "loss": loss(log_n),
        "at_bound": bool(np.isclose(log_n, np.log(n_range), atol=1e-3).any()),
    }


def chinchilla_compute_optimal(law_json: LawJson, compute: float) -> dict[str, float]:
    """Compute-optimal ``N*``, ``D*`` of ``E + A/N^α + B/D^β`` under ``C = 6ND`` (closed form).

    Minimising over N with ``D = C/(6N)`` gives ``N* = G·(C/6)^(β/(α+β))``, ``D* = G⁻¹·(C/6)^(α/(α+β))`` with
    ``G = (αA/(βB))^(1/(α+β))``.
    """
    _, p = _law(law_json, ("chinchilla",))
    a, b = p["alpha"], p["beta"]
    g = (a * p["A"] / (b * p["B"])) ** (1.0 / (a + b))
    n = g * (compute / 6.0) ** (b / (a + b))
    d = compute / (6.0 * n)
    return {
        "compute": compute,
        "N": n,
        "D": d,
        "tokens_per_param": d / n,
        "loss": float(law_loss(law_json, N=n, D=d)),
    }


def optimal_model_size_per_compute(
    law_json: LawJson, budgets: Sequence[float], *, r: float | None = None
) -> list[dict[str, Any]]:
    """Compute-optimal size per budget: closed form for Chinchilla, numeric for D-CPT at ratio ``r``."""
    if law_json.get("law") == "chinchilla":
        return [chinchilla_compute_optimal(law_json, c) for c in budgets]
    if r is None:
        raise InputError("law JSON", "a D-CPT law needs the ratio r for compute-optimal sizing")
    return [dcpt_compute_allocation(law_json, compute=c, r=r) for c in budgets]


def _split_loss(law_json: LawJson, n: float, total: float, frac: float) -> float:
    return float(law_loss(law_json, N=n, D=total * (1.0 - frac), D_spec=total * frac))


def split_optimal_fraction(law_json: LawJson, *, N: float, total_tokens: float) -> dict[str, float]:
    """Specialisation share ``f* = D′/(D + D′)`` minimising the split law's loss at a fixed token total."""
    _law(law_json, ("split_separable", "split_effective"))
    eps = 1e-9
    f = _argmin_1d(lambda v: _split_loss(law_json, N, total_tokens, v), eps, 1.0 - eps)
    return {
        "N": N,
        "total_tokens": total_tokens,
        "fraction": f,
        "D": total_tokens * (1 - f),
        "D_spec": total_tokens * f,
        "loss": _split_loss(law_json, N, total_tokens, f),
    }


def split_compute_multiplier(
    law_json: LawJson, *, N: float, total_tokens: float, reference_fraction: float
) -> dict[str, float]:
    """Compute multiplier of the optimal split over a reference ("standard") split at the same model size.

    ``multiplier = T_ref / T``: the token total (hence compute, ``6·N·T``) a run spending the fixed share
    ``reference_fraction`` of its tokens on specialisation needs to match the loss the optimal split reaches
    with ``T = total_tokens``. Values above 1 mean the optimal split saves compute; ``inf`` when the reference
    split cannot reach that loss at any budget.
    """
    if not 0.0 < reference_fraction < 1.0:
        raise InputError("reference_fraction", f"must lie in (0, 1), got {reference_fraction}")
    best = split_optimal_fraction(law_json, N=N, total_tokens=total_tokens)
    target = best["loss"]

    def gap(log_t: float) -> float:
        return _split_loss(law_json, N, math.exp(log_t), reference_fraction) - target

    lo = math.log(total_tokens)
    if gap(lo) <= 0:
        return {**best, "reference_fraction": reference_fraction, "multiplier": 1.0}
    hi = lo
    for _ in range(200):
        hi += 1.0
        if gap(hi) <= 0:
            t_ref = math.exp(brentq(gap, hi - 1.0, hi, xtol=1e-13))
            return {**best, "reference_fraction": reference_fraction, "multiplier": t_ref / total_tokens}
    return {**best, "reference_fraction": reference_fraction, "multiplier": math.inf}


def sger(
    general_law: LawJson,
    specialist_law: LawJson,
    *,
    N_specialist: float,
    tokens_general: float = 1.0,
    tokens_specialist: float = 1.0,
) -> dict[str, Any]:
    """Specialist-vs-general compute ratio (SGER) from two ``powerlaw`` fits of best domain perplexity vs N.

    Definition used here: ``SGER = C_general / C_specialist`` where ``C_specialist = 6·N_s·tokens_specialist``
    is the specialist's training compute and ``C_general = 6·N_g*·tokens_general`` the compute of the general
    model size ``N_g*`` whose predicted best domain perplexity equals the specialist's, ``k_g·N_g*^p_g =
    k_s·N_s^p_s``. SGER > 1: reaching the specialist's domain perplexity with a general model costs more.
    Count in ``tokens_specialist`` whatever the comparison should charge the specialist (e.g. its general
    pretraining plus specialisation tokens). ``extrapolated`` flags ``N_g*`` outside the general fit's sizes.
    """
    _, pg = _law(general_law, ("powerlaw",))
    _, ps = _law(specialist_law, ("powerlaw",))
    target = ps["k"] * N_specialist ** ps["p"]
    if pg["p"] == 0:
        raise InputError("general law", "power-law exponent is 0; perplexity does not change with size")
    n_general = (target / pg["k"]) ** (1.0 / pg["p"])
    sizes = [pt["N"] for pt in general_law.get("points_used", []) if "N" in pt]
    extrapolated = bool(sizes) and not (min(sizes) <= n_general <= max(sizes))
    ratio = (n_general * tokens_general) / (N_specialist * tokens_specialist)
    return {
        "N_specialist": N_specialist,
        "specialist_perplexity": target,
        "N_general_equivalent": n_general,
        "sger": ratio,
        "extrapolated": extrapolated,
    }
