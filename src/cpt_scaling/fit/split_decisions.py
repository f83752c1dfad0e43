"""Decisions read off a fitted split law ``L(N, D, D′)`` (the JSON of ``cpt-scaling fit split``).

Token budgets count training tokens; compute is ``6·N·tokens``. Each decision is computed for the fitted parameters
and every bootstrap resample at once (:func:`~cpt_scaling.fit.decisions.param_sets`); ``<key>_lo``/``<key>_hi`` are
the 95 % percentile intervals over the resamples, as in :mod:`cpt_scaling.fit.decisions`.

* :func:`split_optimal_fraction`: the specialisation share ``f* = K·D′/T`` that minimises a domain's loss when a
  budget of ``T`` tokens pays for one pretraining of ``D`` tokens and ``K`` specialisations of ``D′`` each
  (``D + K·D′ = T``); per domain, ``K = 1``.
* :func:`split_compute_multiplier`: ``T_std / T``, the tokens standard pretraining (``D′ = 0``; one model serves
  every domain) needs to reach the loss of that optimal split. With ``K = 1`` it charges the whole pretraining to
  one domain (the per-domain multiplier); with ``K`` domains split from one pretrained model (Seto et al.'s setting)
  the pretraining is shared, each domain assumed to follow the fitted law.
* The split point, the pretraining tokens after which to split, is ``D* = T·(1 − f*)`` (``D`` of both).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from cpt_scaling.fit.decisions import LawJson, Params, _eval, _with_interval, batched_argmin, param_sets
from cpt_scaling.laws import SPLIT_CANDIDATES, Law

#: A share this small counts as "do not split" (the argmin's grid resolution is about 1e-6 after its zooms).
NO_SPLIT = 1e-5


def optimal_fraction_rows(law: Law, p: Params, n: float, total: float, rows: int, k: int = 1
                          ) -> tuple[np.ndarray, np.ndarray]:
    """Optimal share ``f`` in ``[0, 1)`` per parameter row, and its loss (``f = 0``: standard pretraining), when
    ``total`` tokens pay for one pretraining and ``k`` specialisations."""
    hi = 1.0 - 1e-9
    return batched_argmin(lambda f: _eval(law, p, N=n, D=total * (1.0 - f), D_spec=total * f / k), 0.0, hi, rows)


def split_optimal_fraction(law_json: LawJson, *, N: float, total_tokens: float, k: int = 1) -> dict[str, Any]:
    """Specialisation share ``f* = K·D′/T`` minimising the split law's loss at a fixed token budget ``T``."""
    law, p, n_boot = param_sets(law_json, SPLIT_CANDIDATES)
    f, loss = optimal_fraction_rows(law, p, N, total_tokens, 1 + n_boot, k)
    out: dict[str, Any] = {"N": N, "total_tokens": total_tokens, "k": k}
    _with_interval(out, "fraction", f, n_boot)
    out.update(D=total_tokens * (1 - f[0]), D_spec=total_tokens * f[0] / k, loss=float(loss[0]))
    return out


def split_compute_multiplier(
    law_json: LawJson, *, N: float, total_tokens: float, k: int = 1, limit: float = 1e4
) -> dict[str, Any]:
    """Compute multiplier ``T_std / T`` of the optimal split (``K`` domains) over standard pretraining, same size.

    ``T_std``: the tokens (hence compute, ``6·N·T``) standard pretraining needs to reach the loss the optimal split
    reaches with ``T = total_tokens`` — "the multiplicative factor on the amount of data required for standard
    pretraining to match optimal split model training". 1 when not splitting is optimal; ``inf``
    (``beyond_limit``) when standard pretraining does not get there within ``limit`` × T. Also reports the optimal
    share (``fraction``) and the specialisation tokens per domain (``D_spec``).
    """
    law, p, n_boot = param_sets(law_json, SPLIT_CANDIDATES)
    rows = 1 + n_boot
    f, target = optimal_fraction_rows(law, p, N, total_tokens, rows, k)

    def gap(log_t: np.ndarray) -> np.ndarray:
        t = np.exp(log_t)[:, None]
        return _eval(law, p, N=N, D=t, D_spec=np.zeros_like(t))[:, 0] - target

    a = np.full(rows, math.log(total_tokens))
    b = a + math.log(limit)
    reached_at_start = gap(a) <= 0
    beyond = gap(b) > 0
    for _ in range(80):  # bisection on log T_std, every row at once
        mid = 0.5 * (a + b)
        up = gap(mid) > 0
        a, b = np.where(up, mid, a), np.where(up, b, mid)
    mult = np.exp(b) / total_tokens
    mult = np.where(reached_at_start, 1.0, np.where(beyond, np.inf, mult))
    out: dict[str, Any] = {"N": N, "total_tokens": total_tokens, "k": k, "limit": limit}
    _with_interval(out, "fraction", f, n_boot)
    out["D_spec"] = total_tokens * f[0] / k
    out["loss"] = float(target[0])
    out["beyond_limit"] = bool(beyond[0])
    finite = np.where(np.isinf(mult), limit, mult)  # "> limit" resamples count at the limit
    _with_interval(out, "multiplier", finite, n_boot)
    if out["multiplier_hi"] is not None and out["multiplier_hi"] >= limit:
        out["multiplier_hi"] = math.inf  # resamples beyond the limit: the interval is open above
    if beyond[0]:
        out["multiplier"] = math.inf
    return out
