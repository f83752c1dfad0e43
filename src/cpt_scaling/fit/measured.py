"""The D-CPT decisions read off the measured points themselves, where they fall inside the sweep.

Pure functions on a D-CPT points table (columns ``target`` ("domain"/"general"), ``N``, ``D``, ``ratio`` (the
domain ratio), ``loss``; replicate runs of a cell are averaged). Each returns ``{"measured": value or None,
"measured_note": how it was read, or why not}``; a decision outside the measured range is None with the reason.

* usage 1 — :func:`measured_max_domain_ratio`: the measured general and domain losses at one ``(N, D)``,
  interpolated along the ratio (PCHIP); the ratio minimising the domain loss where the general loss is within
  the limit, with ``measured_lo``/``measured_hi`` from the points' noise: the general loss's noise moves the
  crossing, and the domain loss's noise makes every feasible ratio whose domain loss lies within it of the best
  a possible best (a point read where the domain loss alone chose an interior ratio is no certainty).
* usage 2 — :func:`measured_ratio_for_limited_domain_data`: each ratio's domain-loss curve (over D, linear in
  log D) read at ``D = domain_tokens / r``; the best ratio, refined by a parabola through it and its neighbours.
* usage 3 — :func:`measured_compute_allocation`: each size's curve at ratio ``r`` read at ``D = C / (6N)``; the
  best size, refined by a parabola in log N.

:func:`consistent` compares a measured value (and its interval, where it has one) with the law's interval.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from scipy.interpolate import PchipInterpolator

#: Points of the dense ratio grid of usage 1 (a resolution of 1/2000 of the measured ratio range).
RATIO_GRID = 2001


def _none(note: str) -> dict[str, Any]:
    return {"measured": None, "measured_note": note}


def _mean_loss(points: pd.DataFrame, target: str, by: list[str], **where: float) -> pd.Series:
    """Mean measured loss of ``target`` per ``by`` over the rows matching ``where`` (column == value)."""
    rows = points[points["target"] == target]
    for col, value in where.items():
        rows = rows[np.isclose(rows[col].to_numpy(float), value, rtol=1e-9)]
    return rows.groupby(by)["loss"].mean().sort_index()


def _curve_at(curve: pd.Series, d: float) -> float | None:
    """A loss-vs-D curve read at ``d`` (linear in log D); None outside its measured D range or with one D."""
    x = np.log(curve.index.to_numpy(float))
    if len(x) < 2 or not (x[0] - 1e-9 <= math.log(d) <= x[-1] + 1e-9):
        return None
    return float(np.interp(math.log(d), x, curve.to_numpy(float)))


def _vertex(x: np.ndarray, y: np.ndarray, i: int) -> float:
    """``x[i]`` (the best of ``y``) refined by the vertex of the parabola through it and its two neighbours."""
    a, b, _ = np.polyfit(x[i - 1 : i + 2], y[i - 1 : i + 2], 2)
    if a <= 0:
        return float(x[i])
    return float(np.clip(-b / (2.0 * a), x[i - 1], x[i + 1]))


def _interp(x: np.ndarray, series: pd.Series) -> np.ndarray:
    """A measured series (index: ratio) at ``x``: shape-preserving cubic (PCHIP) through three or more points,
    which follows a convex curve better than straight chords; linear through two."""
    if len(series) >= 3:
        return PchipInterpolator(series.index.to_numpy(float), series.to_numpy(float))(x)
    return np.interp(x, series.index.to_numpy(float), series.to_numpy(float))


def _feasible(general: np.ndarray, domain: np.ndarray | None, limit: float) -> np.ndarray:
    """Where the general loss is within ``limit`` (and the domain loss, if given, is measured)."""
    feasible = general <= limit
    return feasible & np.isfinite(domain) if domain is not None else feasible


def _constrained_best(grid: np.ndarray, general: np.ndarray, domain: np.ndarray | None, limit: float) -> float | None:
    """The ratio of ``grid`` minimising ``domain`` (or the largest, without it) where ``general <= limit``."""
    feasible = _feasible(general, domain, limit)
    if not feasible.any():
        return None
    if domain is None:
        return float(grid[feasible].max())
    value = np.where(feasible, domain, np.inf)
    return float(grid[::-1][int(np.argmin(value[::-1]))])  # ties: the largest ratio


def _crossing_interval(gen: pd.Series, r: float, limit: float, noise: float, binding: bool) -> tuple[float, float]:
    """``r ± 1.96·se`` where ``r`` is where the interpolated general loss crosses the limit: ``se = noise ·
    sqrt((1 − t)² + t²) / |slope|``, the two bracketing measured points' independent noise carried to the crossing
    (``t`` its place between them, ``slope`` the interpolant's there); ``(r, r)`` where the constraint does not
    bind (the domain loss alone chose ``r``)."""
    x = gen.index.to_numpy(float)
    j = int(np.clip(np.searchsorted(x, r), 1, len(x) - 1))
    a, b = x[j - 1], x[j]
    h = 1e-4 * (b - a)
    slope = float((_interp(np.array([r + h]), gen)[0] - _interp(np.array([r - h]), gen)[0]) / (2 * h))
    at_limit = abs(float(_interp(np.array([r]), gen)[0]) - limit) <= abs(slope) * 2.0 * (x[-1] - x[0]) / RATIO_GRID
    if not binding or not at_limit or slope <= 0:
        return r, r
    t = (r - a) / (b - a)
    half = 1.96 * noise * math.sqrt((1 - t) ** 2 + t**2) / slope
    return max(r - half, float(x[0])), min(r + half, float(x[-1]))


def measured_max_domain_ratio(points: pd.DataFrame, *, N: float, D: float, limit: float,
                              noise: float = 0.0, domain_noise: float = 0.0) -> dict[str, Any]:
    """Usage 1 from the points: the domain ratio minimising the measured domain loss at ``(N, D)`` subject to the
    measured general loss ``<= limit`` (both interpolated along the ratio between measured ratios, :func:`_interp`).
    ``noise`` and ``domain_noise`` (one measured general and domain loss's sd, loss units) give
    ``measured_lo``/``measured_hi``: the hull of the feasible ratios whose domain loss is within
    ``1.96·√2·domain_noise`` of the best (any of them may be the best: two points' noise) and, where those reach
    the largest feasible ratio and the constraint binds there, the crossing's interval (:func:`_crossing_interval`).
    """
    gen = _mean_loss(points, "general", ["ratio"], N=N, D=D)
    dom = _mean_loss(points, "domain", ["ratio"], N=N, D=D)
    if len(gen) < 2:
        return _none(f"fewer than two measured ratios of the general loss at N={N:g}, D={D:g}")
    grid = np.linspace(float(gen.index.min()), float(gen.index.max()), RATIO_GRID)
    general = _interp(grid, gen)
    domain = None
    if len(dom) >= 2:
        inside = (grid >= dom.index.min()) & (grid <= dom.index.max())
        domain = np.where(inside, _interp(np.clip(grid, dom.index.min(), dom.index.max()), dom), np.inf)
    r = _constrained_best(grid, general, domain, limit)
    if r is None:
        return _none(f"general loss above the limit {limit:.4g} at every measured ratio with a domain loss")
    lo, hi = float(grid[0]), float(grid[-1])
    if (r == hi and hi < 1.0) or (r == lo and lo > 0.0):
        return _none(f"best measured ratio {r:g} at the edge of the measured ratios [{lo:g}, {hi:g}]")
    crossing = "constraint crossing" if (general > limit).any() else "no crossing: every measured ratio is within it"
    out: dict[str, Any] = {"measured": r, "measured_note": f"interpolated along r at measured N={N:g}, D={D:g} "
                                                           f"({crossing})"}
    if noise > 0 or domain_noise > 0:
        feasible = _feasible(general, domain, limit)
        near = grid == r  # the best, and every feasible ratio within two domain points' noise of it
        if domain is not None:
            near |= feasible & (domain <= np.min(domain[feasible]) + 1.96 * math.sqrt(2.0) * domain_noise)
        edge = float(grid[feasible].max())
        spans = [(float(grid[near].min()), float(grid[near].max()))]
        if noise > 0 and near[grid == edge].any():
            spans.append(_crossing_interval(gen, edge, limit, noise,
                                            binding=edge < grid[-1] and bool((general > limit).any())))
        out["measured_lo"], out["measured_hi"] = min(a for a, _ in spans), max(b for _, b in spans)
    return out


def measured_ratio_for_limited_domain_data(points: pd.DataFrame, *, N: float, domain_tokens: float) -> dict[str, Any]:
    """Usage 2 from the points: each measured ratio's domain loss read off its curve at ``D = domain_tokens / r``;
    the best ratio (parabola-refined); None where it falls at the edge of the ratios whose curve reaches that D
    (unless that edge is ``r = 1``)."""
    curves = _mean_loss(points, "domain", ["ratio", "D"], N=N)
    reached = {}
    for ratio, curve in curves.groupby(level="ratio"):
        if ratio > 0:
            loss = _curve_at(curve.droplevel("ratio"), domain_tokens / float(ratio))
            if loss is not None:
                reached[float(ratio)] = loss
    if len(reached) < 2:
        return _none(f"fewer than two measured ratios whose curve reaches D = {domain_tokens:g}/r at N={N:g}")
    x, y = np.array(sorted(reached)), np.array([reached[k] for k in sorted(reached)])
    i = int(np.argmin(y))
    if i == len(x) - 1 and x[i] >= 1.0:
        return {"measured": 1.0, "measured_note": "best at r = 1 (the decision's bound)"}
    if i in (0, len(x) - 1):
        return _none(f"best measured ratio {x[i]:g} at the edge of the ratios whose curve reaches D = "
                     f"{domain_tokens:g}/r")
    return {"measured": _vertex(x, y, i), "measured_note": f"curves read at D = {domain_tokens:g}/r at N={N:g}, "
                                                           "parabola through the best ratio and its neighbours"}


def measured_compute_allocation(points: pd.DataFrame, *, compute: float, ratio: float) -> dict[str, Any]:
    """Usage 3 from the points: each measured size's domain-loss curve at ``ratio`` read at ``D = C/(6N)``; the best
    size (parabola-refined in log N); None where it is the smallest or largest size whose curve reaches that D."""
    curves = _mean_loss(points, "domain", ["N", "D"], ratio=ratio)
    reached = {}
    for n, curve in curves.groupby(level="N"):
        loss = _curve_at(curve.droplevel("N"), compute / (6.0 * float(n)))
        if loss is not None:
            reached[float(n)] = loss
    if len(reached) < 3:
        return _none(f"fewer than three measured sizes whose curve reaches D = C/(6N) at C={compute:.3g}")
    x, y = np.log(np.array(sorted(reached))), np.array([reached[k] for k in sorted(reached)])
    i = int(np.argmin(y))
    if i in (0, len(x) - 1):
        return _none(f"best measured size {math.exp(x[i]):.4g} at the edge of the sizes reaching C={compute:.3g}")
    return {"measured": math.exp(_vertex(x, y, i)),
            "measured_note": "curves read at D = C/(6N), parabola in log N through the best size and its neighbours"}


def point_noise(fit: dict[str, Any], loss: float) -> float:
    """A measured point's noise in loss units near ``loss``: the misfit test's sigma (log loss, robust to the cells
    it flags) where the fit has a ``misfit`` diagnostic, else the fit's RMSE."""
    misfit = fit.get("diagnostics", {}).get("misfit")
    return float(misfit["sigma"]) * loss if misfit else float(fit["rmse"])


def consistent(measured: dict[str, Any], lo: float | None, hi: float | None) -> bool | None:
    """Whether a measured decision agrees with the law's interval ``[lo, hi]``: its own interval
    ``[measured_lo, measured_hi]`` (where it has one) overlaps it, else the value lies inside it; None without a
    measured value or a law interval."""
    value = measured.get("measured")
    if value is None or lo is None or hi is None:
        return None
    m_lo, m_hi = measured.get("measured_lo", value), measured.get("measured_hi", value)
    return bool(m_lo <= hi + 1e-9 and m_hi >= lo - 1e-9)
