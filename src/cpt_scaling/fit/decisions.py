"""Decisions read off fitted laws (each function takes the law JSON written by ``cpt-scaling fit``).

Compute is counted as ``C = 6·N·D`` FLOPs (N parameters, D tokens) throughout this module.

Every decision is computed for the fitted parameters and, when the law JSON carries ``bootstrap_samples``, for
each resampled parameter set too, all at once (the laws evaluate a batch of parameter sets in one call); the
decision's ``<key>_lo``/``<key>_hi`` are the 2.5th/97.5th percentiles over the resamples (widened to include the
point value where the percentile interval missed it), null without resamples. Where the fit also carries a
``profile`` (a profile-likelihood set of a size exponent, :mod:`cpt_scaling.fit.profile`: E at its floor), usages 2
and 3 and the Chinchilla optimum are evaluated along the profile's parameter sets too and their intervals widened
to cover those values (``interval_method``: the fit's ``bootstrap_info.interval``).

* D-CPT usage 1 — :func:`dcpt_max_domain_ratio`: the domain ratio minimising the domain loss subject to the
  general loss staying within ``(1 + T)`` of the base model's (Que et al. 2024).
* D-CPT usage 2 — :func:`dcpt_ratio_for_limited_domain_data`: the best ratio when the domain corpus is limited
  (all of it is used once, so ``D = D_domain / r``).
* D-CPT usage 3 — :func:`dcpt_compute_allocation`: the best ``(N, D)`` for a compute budget at fixed ratio.
* :func:`chinchilla_compute_optimal`: closed-form compute-optimal ``N`` and ``D`` of the Chinchilla form.
* The split law's decisions live in :mod:`cpt_scaling.fit.split_decisions`.
* :func:`sger_from_curves`: the seed's SGER per size from validation curves along training;
  :func:`equivalent_general_size`: the across-size comparison of two power laws.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from cpt_scaling.core.errors import InputError
from cpt_scaling.fit.bootstrap import interval as bootstrap_interval
from cpt_scaling.fit.law_json import law_params
from cpt_scaling.fit.profile import UNION
from cpt_scaling.laws import LAWS, Law

LawJson = Mapping[str, Any]
Params = dict[str, np.ndarray]
DCPT_NAMES = ("dcpt", "dcpt_l1", "dcpt_l2", "dcpt_l3", "dcpt_l4", "dcpt_l5", "dcpt_forget")
LEVEL = 0.95


def _law(law_json: LawJson, allowed: Sequence[str] | None = None) -> tuple[Law, dict[str, float]]:
    name = law_json.get("law")
    if name not in LAWS or (allowed is not None and name not in allowed):
        raise InputError(
            "law JSON", f"law {name!r} not usable here (expected one of {', '.join(allowed or LAWS)})"
        )
    _, law, params = law_params(dict(law_json), "law JSON")
    return law, params


def param_sets(law_json: LawJson, allowed: Sequence[str] | None = None) -> tuple[Law, Params, int]:
    """The law and a batch of parameter sets ``{name: (G, 1)}``: row 0 the fit, then each bootstrap resample;
    and the number of resample rows (0 without ``bootstrap_samples``)."""
    law, point = _law(law_json, allowed)
    names = (*law.params, *law.fixed)
    rows = [[point[k] for k in names]]
    boot = law_json.get("bootstrap_samples") or {}
    n_boot = 0
    if boot.get("values"):
        cols = list(boot["params"])
        values = np.asarray(boot["values"], dtype=float)
        sample_rows = np.empty((len(values), len(names)))
        for j, k in enumerate(names):
            sample_rows[:, j] = values[:, cols.index(k)] if k in cols else point[k]
        rows.extend(sample_rows.tolist())
        n_boot = len(values)
    arr = np.asarray(rows, dtype=float)
    return law, {k: arr[:, j : j + 1] for j, k in enumerate(names)}, n_boot


def with_profile(law_json: LawJson, allowed: Sequence[str]) -> tuple[Law, Params, int, int]:
    """:func:`param_sets` followed by the parameter sets along the fit's profiles (the law JSON's
    ``profile[*].values``): the law, the batch, the number of resample rows and of profile rows after them."""
    law, p, n_boot = param_sets(law_json, allowed)
    names = list(p)
    rows = []
    profiles = (law_json.get("profile") or []) if n_boot else []  # a profile widens a bootstrap's interval
    for prof in profiles:
        cols = list(prof["params"])
        for values in prof["values"]:
            rows.append([values[cols.index(k)] if k in cols else float(p[k][0, 0]) for k in names])
    if not rows:
        return law, p, n_boot, 0
    extra = np.asarray(rows, dtype=float)
    return law, {k: np.vstack([p[k], extra[:, j : j + 1]]) for j, k in enumerate(names)}, n_boot, len(rows)


def profile_widen(out: dict[str, Any], key: str, values: np.ndarray) -> None:
    """Widen ``<key>_lo``/``<key>_hi`` to cover the finite decision ``values`` along a fit's profile (the union
    of the percentile interval and the profile set, as the fit's parameter interval is)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if not v.size or out.get(f"{key}_lo") is None or out.get(f"{key}_hi") is None:
        return
    out[f"{key}_lo"] = float(min(out[f"{key}_lo"], v.min()))
    out[f"{key}_hi"] = float(max(out[f"{key}_hi"], v.max()))
    out["interval_method"] = UNION


def _eval(law: Law, p: Params, **cols: Any) -> np.ndarray:
    """Loss of every parameter row at columns that broadcast against ``(G, m)``."""
    pred, _ = law.evaluate(p, {c: np.asarray(cols[c], dtype=float) for c in law.columns})
    return pred


def interval(point: float | None, samples: np.ndarray, level: float = LEVEL) -> tuple[float | None, float | None]:
    """The fits' bootstrap interval (:func:`cpt_scaling.fit.bootstrap.interval`) of the finite ``samples``, widened
    to contain ``point``; ``(None, None)`` if none."""
    s = np.asarray(samples, dtype=float)
    s = s[np.isfinite(s)]
    if not s.size or point is None or not math.isfinite(point):
        return None, None
    lo, hi = bootstrap_interval(s, level)
    return float(min(lo, point)), float(max(hi, point))


def _with_interval(out: dict[str, Any], key: str, values: np.ndarray, n_boot: int) -> None:
    """``out[key]`` from ``values[0]``; ``<key>_lo``/``<key>_hi`` the interval of the ``n_boot`` resamples after it,
    widened to cover the rows after those (a fit's profile, :func:`with_profile`; :func:`profile_widen`)."""
    point = values[0]
    out[key] = None if not math.isfinite(point) else float(point)
    resamples = values[1 : 1 + n_boot]
    lo, hi = interval(out[key], resamples) if n_boot else (None, None)
    out[f"{key}_lo"], out[f"{key}_hi"] = lo, hi
    if n_boot:
        out[f"{key}_resamples_failed"] = int((~np.isfinite(resamples)).sum())
    profile_widen(out, key, values[1 + n_boot :])


def law_loss(law_json: LawJson, **columns: float | np.ndarray) -> np.ndarray:
    """Loss predicted by a fitted law at the given columns (scalars or arrays, broadcast together)."""
    law, params = _law(law_json)
    arrays = np.broadcast_arrays(*(np.asarray(columns[c], dtype=float) for c in law.columns))
    cols = {c: a.ravel() for c, a in zip(law.columns, arrays, strict=True)}
    return law.predict(params, cols).reshape(arrays[0].shape)


def batched_argmin(
    fun: Callable[[np.ndarray], np.ndarray], lo: float, hi: float, rows: int, *, n_grid: int = 801, levels: int = 4
) -> tuple[np.ndarray, np.ndarray]:
    """Per-row global minimiser of ``fun(x) -> (rows, m)`` on ``[lo, hi]`` (x of shape ``(rows, m)``; inf marks
    infeasible points): a dense grid, then ``levels - 1`` zooms into the bracket of each row's best grid point.
    Returns the minimiser and the minimum per row (nan where every point is infeasible)."""
    a = np.full((rows, 1), float(lo))
    b = np.full((rows, 1), float(hi))
    t = np.linspace(0.0, 1.0, n_grid)[None, :]
    best_x = np.full(rows, np.nan)
    best_f = np.full(rows, np.inf)
    for _ in range(levels):
        x = a + (b - a) * t
        f = np.asarray(fun(x), dtype=float)
        f = np.where(np.isfinite(f), f, np.inf)
        i = np.argmin(f, axis=1)
        r = np.arange(rows)
        fi = f[r, i]
        better = fi <= best_f
        best_x = np.where(better & np.isfinite(fi), x[r, i], best_x)
        best_f = np.where(better, fi, best_f)
        a = x[r, np.maximum(i - 1, 0)][:, None]
        b = x[r, np.minimum(i + 1, n_grid - 1)][:, None]
    best_f = np.where(np.isfinite(best_f), best_f, np.nan)
    return best_x, best_f


def dcpt_max_domain_ratio(
    general_law: LawJson,
    *,
    N: float,
    D: float,
    base_general_loss: float,
    tolerance: float,
    domain_law: LawJson | None = None,
    relative: bool = True,
) -> dict[str, Any]:
    """D-CPT usage 1: ``argmin_r L_d(N, D, r)`` subject to ``L_g(N, D, 1 - r) <= (1 + T)·L_g(base)``.

    ``general_law`` is a D-CPT law fitted to the *general* loss with ``r`` = general-corpus ratio, so it is
    evaluated at ``1 - r``; ``domain_law`` the law of the domain loss. The limit is ``base·(1 + tolerance)``
    (``relative``) or ``base + tolerance``. Without ``domain_law`` the domain loss is taken to fall with ``r``
    (the objective is ``-r``: the largest feasible ratio). ``ratio`` is None when even ``r = 0`` violates the
    constraint. Resamples of the two laws are paired by index (the same run resamples).
    """
    gl, gp, g_boot = param_sets(general_law, DCPT_NAMES)
    limit = base_general_loss * (1.0 + tolerance) if relative else base_general_loss + tolerance
    if domain_law is not None:
        dl, dp, d_boot = param_sets(domain_law, DCPT_NAMES)
        n_boot = min(g_boot, d_boot)
    else:
        dl, dp, n_boot = None, None, g_boot
    rows = 1 + n_boot
    gp = {k: v[:rows] for k, v in gp.items()}
    dp = None if dp is None else {k: v[:rows] for k, v in dp.items()}

    def objective(r: np.ndarray) -> np.ndarray:
        general = _eval(gl, gp, N=N, D=D, r=1.0 - r)
        value = -r if dl is None else _eval(dl, dp, N=N, D=D, r=r)
        return np.where(general <= limit, value, np.inf)

    ratio, _ = batched_argmin(objective, 0.0, 1.0, rows)
    out: dict[str, Any] = {"usage": 1, "N": N, "D": D, "limit": limit, "tolerance": tolerance,
                           "relative": relative}
    _with_interval(out, "ratio", ratio, n_boot)
    if out["ratio"] is None:
        return {**out, "general_loss": None, "domain_loss": None, "note": "infeasible even at r_d = 0"}
    one = {k: v[:1] for k, v in gp.items()}
    out["general_loss"] = float(_eval(gl, one, N=N, D=D, r=np.array([[1.0 - out["ratio"]]]))[0, 0])
    out["domain_loss"] = (None if dl is None else
                          float(_eval(dl, {k: v[:1] for k, v in dp.items()}, N=N, D=D,
                                      r=np.array([[out["ratio"]]]))[0, 0]))
    return out


def dcpt_ratio_for_limited_domain_data(
    domain_law: LawJson, *, N: float, domain_tokens: float, r_min: float = 1e-3, r_max: float = 1.0
) -> dict[str, Any]:
    """D-CPT usage 2: the domain ratio minimising the domain loss when only ``domain_tokens`` exist.

    All domain tokens are used once, so a ratio ``r`` implies ``D = domain_tokens / r`` total tokens (smaller
    ratios mean more general tokens and more compute); the total is at most ``domain_tokens / r_min``.
    """
    law, p, n_boot, n_prof = with_profile(domain_law, DCPT_NAMES)
    ratio, loss = batched_argmin(lambda r: _eval(law, p, N=N, D=domain_tokens / r, r=r), r_min, r_max,
                                 1 + n_boot + n_prof)
    out: dict[str, Any] = {"usage": 2, "N": N, "domain_tokens": domain_tokens}
    _with_interval(out, "ratio", ratio, n_boot)
    _with_interval(out, "D", domain_tokens / ratio, n_boot)
    out["loss"] = float(loss[0])
    return out


def dcpt_compute_allocation(
    law_json: LawJson, *, compute: float, r: float, n_range: tuple[float, float] = (1e2, 1e14)
) -> dict[str, Any]:
    """D-CPT usage 3: ``N`` and ``D = C/(6N)`` minimising the loss at ratio ``r`` for compute ``C``."""
    law, p, n_boot, n_prof = with_profile(law_json, (*DCPT_NAMES, "chinchilla"))
    has_r = "r" in law.columns

    def loss(log_n: np.ndarray) -> np.ndarray:
        n = np.exp(log_n)
        cols: dict[str, Any] = {"N": n, "D": compute / (6.0 * n)}
        if has_r:
            cols["r"] = r
        return _eval(law, p, **cols)

    log_n, best = batched_argmin(loss, math.log(n_range[0]), math.log(n_range[1]), 1 + n_boot + n_prof)
    n = np.exp(log_n)
    out: dict[str, Any] = {"usage": 3, "compute": compute, "ratio": r}
    _with_interval(out, "N", n, n_boot)
    _with_interval(out, "D", compute / (6.0 * n), n_boot)
    out["loss"] = float(best[0])
    at_bound = np.isclose(log_n[: 1 + n_boot, None], np.log(n_range)[None, :], atol=1e-3).any(axis=1)
    out["at_bound"] = bool(at_bound[0])
    out["search_range_N"] = [float(n_range[0]), float(n_range[1])]
    if n_boot:  # an interval end that is a search bound is a bound, not an estimate: say so
        out["resamples_at_search_bound"] = int(at_bound[1:].sum())
        for end in ("N_lo", "N_hi"):
            value = out.get(end)
            out[f"{end}_is_search_bound"] = value is not None and bool(
                np.isclose(np.log(value), np.log(n_range), atol=1e-3).any())
        if out["N_lo_is_search_bound"] or out["N_hi_is_search_bound"]:
            out["note"] = (f"{out['resamples_at_search_bound']} of {n_boot} resamples put the optimum at the search "
                           f"bound N in [{n_range[0]:.3g}, {n_range[1]:.3g}]: the interval's end there is that bound, "
                           "not an estimate (the fitted points do not identify the optimum on that side)")
    return out


def chinchilla_compute_optimal(law_json: LawJson, compute: float) -> dict[str, Any]:
    """Compute-optimal ``N*``, ``D*`` of ``E + A/N^α + B/D^β`` under ``C = 6ND`` (closed form).

    Minimising over N with ``D = C/(6N)`` gives ``N* = G·(C/6)^(β/(α+β))``, ``D* = G⁻¹·(C/6)^(α/(α+β))`` with
    ``G = (αA/(βB))^(1/(α+β))``.
    """
    _, p, n_boot, _ = with_profile(law_json, ("chinchilla",))
    a, b = p["alpha"][:, 0], p["beta"][:, 0]
    g = (a * p["A"][:, 0] / (b * p["B"][:, 0])) ** (1.0 / (a + b))
    n = g * (compute / 6.0) ** (b / (a + b))
    d = compute / (6.0 * n)
    out: dict[str, Any] = {"compute": compute}
    _with_interval(out, "N", n, n_boot)
    _with_interval(out, "D", d, n_boot)
    out["tokens_per_param"] = out["D"] / out["N"]
    out["loss"] = float(law_loss(law_json, N=out["N"], D=out["D"]))
    return out


def optimal_model_size_per_compute(
    law_json: LawJson, budgets: Sequence[float], *, r: float | None = None
) -> list[dict[str, Any]]:
    """Compute-optimal size per budget: closed form for Chinchilla, numeric for D-CPT at ratio ``r``."""
    if law_json.get("law") == "chinchilla":
        return [chinchilla_compute_optimal(law_json, c) for c in budgets]
    if r is None:
        raise InputError("law JSON", "a D-CPT law needs the ratio r for compute-optimal sizing")
    return [dcpt_compute_allocation(law_json, compute=c, r=r) for c in budgets]


def sger_from_curves(
    specialist: tuple[np.ndarray, np.ndarray],
    general: tuple[np.ndarray, np.ndarray],
    *,
    general_start_loss: float | None = None,
    limit: float = 100.0,
) -> dict[str, Any]:
    """SGER of one size from validation curves ``(compute, loss)`` along training (Malaquias Junior et al.).

    ``C_specialist`` is the compute at which the specialist reaches its lowest validation loss (perplexity),
    ``C_general`` the compute at which the general model of the same size first reaches that loss: linear in log
    compute between the checkpoints that bracket it (between its start, ``general_start_loss`` at compute 0, and
    its first checkpoint, linear in compute). If the general model never gets there in the sweep, a power law
    ``loss = a·C^b`` fitted to its last three checkpoints is extrapolated (``status`` "extrapolated") up to
    ``limit`` × its largest compute; beyond, ``status`` is "> limit", ``sger`` is None and ``sger_lo`` the bound.
    ``sger_lo``/``sger_hi``: the checkpoints that bracket the crossing (the curve's resolution), ``inf`` above an
    extrapolation. Each model's compute to its own minimum is reported too.
    """
    cs, ls = (np.asarray(v, dtype=float) for v in specialist)
    cg, lg = (np.asarray(v, dtype=float) for v in general)
    order = np.argsort(cg)
    cg, lg = cg[order], lg[order]
    i = int(np.argmin(ls))
    c_spec, target = float(cs[i]), float(ls[i])
    out: dict[str, Any] = {"C_specialist": c_spec, "specialist_best_loss": target,
                           "C_general_own_min": float(cg[int(np.argmin(lg))]), "general_best_loss": float(lg.min()),
                           "limit": limit}
    hit = np.flatnonzero(lg <= target)
    if hit.size:
        j = int(hit[0])
        if j == 0:
            start = general_start_loss
            c = cg[0] * (start - target) / (start - lg[0]) if start is not None and start > target else cg[0]
            lo_c, hi_c = 0.0, cg[0]
        else:
            x0, x1 = math.log(cg[j - 1]), math.log(cg[j])
            frac = (lg[j - 1] - target) / (lg[j - 1] - lg[j])
            c = math.exp(x0 + frac * (x1 - x0))
            lo_c, hi_c = cg[j - 1], cg[j]
        status = "interpolated"
    else:
        tail = slice(max(0, cg.size - 3), cg.size)
        slope = np.polyfit(np.log(cg[tail]), np.log(lg[tail]), 1) if cg[tail].size >= 2 else (0.0, 0.0)
        log_c = (math.log(target) - slope[1]) / slope[0] if slope[0] < 0 else math.inf
        lo_c, hi_c = float(cg[-1]), math.inf
        status = "extrapolated" if log_c <= math.log(limit * cg[-1]) else "> limit"
        c = math.exp(log_c) if status == "extrapolated" else math.inf
    out["C_general"] = None if status == "> limit" else float(c)
    out["status"] = status
    if status == "> limit":
        out.update(sger=None, sger_lo=limit * float(cg[-1]) / c_spec, sger_hi=math.inf)
    else:
        out.update(sger=float(c) / c_spec, sger_lo=min(lo_c / c_spec, c / c_spec), sger_hi=max(hi_c / c_spec,
                                                                                               c / c_spec))
    return out


def equivalent_general_size(
    general_law: LawJson,
    specialist_law: LawJson,
    *,
    N_specialist: float,
    tokens_general: float = 1.0,
    tokens_specialist: float = 1.0,
) -> dict[str, Any]:
    """The general model size whose power-law best domain perplexity equals the specialist's (across sizes).

    From two ``powerlaw`` fits ppl = k·N^p: ``N_g*`` solves ``k_g·N_g*^p_g = k_s·N_s^p_s``;
    ``compute_ratio_across_sizes = (N_g*·tokens_general)/(N_s·tokens_specialist)``. This is *not* the seed's SGER
    (see :func:`sger_from_curves`); it extrapolates in size wherever ``N_g*`` leaves the general fit's sizes
    (``extrapolated``). Resamples of the two fits are paired by index.
    """
    _, pg, bg = param_sets(general_law, ("powerlaw",))
    _, ps, bs = param_sets(specialist_law, ("powerlaw",))
    rows = 1 + min(bg, bs)
    kg, pgx = pg["k"][:rows, 0], pg["p"][:rows, 0]
    ks, psx = ps["k"][:rows, 0], ps["p"][:rows, 0]
    if pgx[0] == 0:
        raise InputError("general law", "power-law exponent is 0; perplexity does not change with size")
    target = ks * N_specialist**psx
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        n_general = (target / kg) ** (1.0 / pgx)
    sizes = [pt["N"] for pt in general_law.get("points_used", []) if "N" in pt]
    out: dict[str, Any] = {"N_specialist": N_specialist, "specialist_perplexity": float(target[0])}
    _with_interval(out, "N_general_equivalent", n_general, rows - 1)
    _with_interval(out, "compute_ratio_across_sizes",
                   n_general * tokens_general / (N_specialist * tokens_specialist), rows - 1)
    ng = out["N_general_equivalent"]
    out["extrapolated"] = bool(sizes) and (ng is None or not (min(sizes) <= ng <= max(sizes)))
    return out
