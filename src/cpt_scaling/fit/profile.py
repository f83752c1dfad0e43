"""Profile-likelihood (test-inversion) interval of a size exponent for a fit whose additive constant E sits at zero.

Why. Where the points pull E to its floor (three sizes, each carrying its base model's offset, absorbed by the three
size terms E, A, α), every bootstrap resample keeps E at the floor: the resamples cannot move in the direction
E > 0, along which α rises, and the percentile interval of α (and of the decisions that follow α) misses the
truth far more often than 5 % (bench/bench_coverage.py, bench/RESULTS.md: 0.77 coverage on such fits, 1.00 where E
is identified). A bootstrap is known to fail at a parameter's boundary; a likelihood-ratio test inverted over α
refits E (and the rest) at each α, so it follows the E > 0 direction the resamples cannot reach.

Method. The log-loss residuals ``r(θ)`` are modelled as the noise the bootstrap simulates
(:mod:`cpt_scaling.fit.noise`): one offset per model size (sd ``base``), one per run (``run``), one per point
(``point``), Gaussian, so ``r ~ N(0, V)`` with ``V = base²·S Sᵀ + run²·R Rᵀ + point²·I`` (``S``, ``R``: size and
run indicators). The sds are the fit's own: stated (``fit.base_noise``/``fit.run_noise``), else estimated from the
residuals' variance components, else 0. The profile of the Gaussian objective ``q(θ) = r(θ)ᵀ V⁻¹ r(θ)`` over the
exponent (every other parameter refitted, within its bounds, at each value on a log grid walked outwards from the
minimum) rises by ``q_min(α₀) − q_min`` — by Wilks's theorem, asymptotically χ²(1) at the true α₀. The 95 % set
is where the rise stays below the χ²(1) 0.95 quantile (3.84), its ends interpolated between grid points. Where an
offset sd in ``V`` is estimated (few runs per size, no stated noise), the threshold is the F(1, ν) quantile instead,
ν the fewest degrees of freedom of an estimated sd (as a t interval widens a normal one; F(1, ν) → χ²(1) as ν
grows); a point noise estimated as zero leaves ``V`` singular within a run, and no profile is computed. The
Huber objective the fit minimises has no such calibration under offsets shared by whole runs and sizes; the
Gaussian likelihood of the same noise model does, and a test inversion is valid whichever point estimate is
reported. The fit then reports the union of the percentile interval and this set (``bootstrap_info.interval``),
and keeps the refitted parameter sets along the accepted profile so that decisions read off the law widen their
intervals to cover them (:func:`cpt_scaling.fit.decisions.profile_widen`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.linalg import cholesky, solve_triangular
from scipy.optimize import least_squares
from scipy.stats import chi2
from scipy.stats import f as f_dist

from cpt_scaling.fit.noise import Design, design, variance_components
from cpt_scaling.fit.optimize import Objective, bounds_theta

log = logging.getLogger(__name__)

#: Step of the profile grid in the optimiser's coordinate (the log of a positive parameter: about 5 % per step)
#: and the most steps walked each way.
STEP = 0.05
MAX_STEPS = 80
#: Interval name recorded where a fit reports the union (``bootstrap_info.interval``).
UNION = "percentile ∪ profile"


@dataclass
class Profile:
    """A profile interval: the parameter, its ends, whether an end is the parameter's bound, the threshold and its
    denominator degrees of freedom (None: χ²), the noise sds of ``V``, and the refitted parameter sets (natural
    space, ``(K, P)``) whose rise is below it."""

    param: str
    interval: tuple[float, float]
    open_ends: tuple[bool, bool]
    threshold: float
    threshold_df: float | None
    noise: dict[str, float]
    params: tuple[str, ...]
    values: np.ndarray

    def record(self) -> dict[str, Any]:
        """The law JSON's ``profile`` entry."""
        return {"param": self.param, "interval": [float(v) for v in self.interval],
                "end_is_bound": list(self.open_ends), "level": 0.95, "threshold": self.threshold,
                "threshold_df": self.threshold_df,
                "objective": "Gaussian log-likelihood of the log-loss residuals with one offset per size, per run "
                             "and per point (sds below); χ²(1) threshold on twice its rise (F(1, threshold_df) "
                             "where an offset sd is estimated)",
                "noise": self.noise, "params": list(self.params),
                "values": [[float(f"{v:.9g}") for v in row] for row in self.values]}


def noise_covariance(d: Design, base: float, run: float, point: float) -> np.ndarray:
    """``V = base²·S Sᵀ + run²·R Rᵀ + point²·I`` over the points of ``d`` (log scale)."""
    run_of = d.run_of_point
    size_of = d.size_of_run[run_of]
    same_run = (run_of[:, None] == run_of[None, :]).astype(float)
    same_size = (size_of[:, None] == size_of[None, :]).astype(float)
    return base**2 * same_size + run**2 * same_run + point**2 * np.eye(run_of.size)


def fit_noise(d: Design, base_noise: float | None, run_noise: float | None) -> tuple[dict[str, float], float | None]:
    """The sds of ``V``: stated, else estimated from the fit's variance components, else 0; and the fewest degrees
    of freedom of an estimated offset sd (base or run) that enters ``V`` (None: all stated or absent)."""
    comp = variance_components(d)
    dfs: list[float] = []

    def pick(stated: float | None, estimate: float, df: float) -> float:
        if stated is not None:
            return float(stated)
        if not np.isfinite(estimate):
            return 0.0
        if estimate > 0:
            dfs.append(float(df))
        return float(estimate)
    noise = {"base": pick(base_noise, comp.base, comp.base_df), "run": pick(run_noise, comp.run, comp.run_df),
             "point": float(comp.point)}
    return noise, (min(dfs) if dfs else None)


def profile_interval(obj: Objective, theta: np.ndarray, param: str, groups: np.ndarray, strata: np.ndarray | None,
                     *, base_noise: float | None = None, run_noise: float | None = None,
                     level: float = 0.95) -> Profile | None:
    """The ``level`` profile-likelihood set of ``param`` (module docstring), walked from the fit ``theta`` (the
    optimiser's coordinates); None where the noise model is degenerate or the Gaussian refit fails."""
    j = list(obj.law.params).index(param)
    d = design(obj, theta, groups, strata)
    noise, df = fit_noise(d, base_noise, run_noise)
    if noise["point"] <= 0.0:  # the points' own noise estimated as none: V would be singular within a run
        return None
    cov = noise_covariance(d, **noise)
    cov += 1e-12 * np.eye(cov.shape[0]) * max(1e-300, float(np.trace(cov)) / cov.shape[0])
    try:
        white = solve_triangular(cholesky(cov, lower=True), np.eye(cov.shape[0]), lower=True)
    except np.linalg.LinAlgError:
        return None
    lo, hi = bounds_theta(obj)
    free = np.arange(theta.size) != j

    def solve(start: np.ndarray) -> tuple[np.ndarray, float]:
        """Minimise ``q`` over the free parameters with ``param`` held at ``start[j]``; the parameters and ``q``."""
        fixed = start[j]

        def full(x: np.ndarray) -> np.ndarray:
            t = np.empty(theta.size)
            t[free], t[j] = x, fixed
            return t

        def fun(x: np.ndarray) -> np.ndarray:
            return white @ obj.residuals(full(x))[0]

        def jac(x: np.ndarray) -> np.ndarray:
            return white @ obj.residuals(full(x))[1][:, free]
        x0 = np.clip(start[free], lo[free] + 1e-9, hi[free] - 1e-9)
        try:
            sol = least_squares(fun, x0, jac=jac, bounds=(lo[free], hi[free]), method="trf", x_scale="jac",
                                max_nfev=200)
        except (ValueError, np.linalg.LinAlgError):  # non-finite residuals: no value there
            return start, np.inf
        return full(sol.x), 2.0 * float(sol.cost)

    best, q_best = solve(np.clip(theta, lo, hi))
    if not np.isfinite(q_best):
        return None
    threshold = float(chi2.ppf(level, 1) if df is None else f_dist.ppf(level, 1, df))
    grid: list[tuple[float, np.ndarray, float]] = [(best[j], best, q_best)]
    ends = [False, False]
    for side, sign in enumerate((-1.0, 1.0)):
        current = best
        for _ in range(MAX_STEPS):
            t = current[j] + sign * STEP
            if t < lo[j] or t > hi[j]:
                ends[side] = True
                break
            start = current.copy()
            start[j] = t
            current, q = solve(start)
            grid.append((t, current, q))
            if q - min(g[2] for g in grid) > threshold:
                break
        else:
            ends[side] = True
    grid.sort(key=lambda g: g[0])
    ts = np.array([g[0] for g in grid])
    q_min = min(g[2] for g in grid)
    rise = np.array([g[2] for g in grid]) - q_min
    thetas = np.array([g[1] for g in grid])
    inside = np.flatnonzero(rise <= threshold)
    a, b = int(inside.min()), int(inside.max())
    sets = [thetas[a : b + 1]]
    ends_t = [ts[a], ts[b]]
    for k, (inner, outer) in enumerate(((a, a - 1), (b, b + 1))):
        if 0 <= outer < ts.size:  # interpolate the crossing, and the refitted parameters with it
            w = (threshold - rise[inner]) / (rise[outer] - rise[inner])
            ends_t[k] = ts[inner] + w * (ts[outer] - ts[inner])
            sets.append(thetas[inner] + w * (thetas[outer] - thetas[inner]))
    cand = np.vstack(sets)  # every stored set lies in the region: the interpolated ends are checked
    res, _ = obj.residual_rows(cand, np.zeros(len(cand), dtype=int))
    keep = np.sum((res @ white.T) ** 2, axis=1) - q_min <= threshold * (1.0 + 1e-6)
    values = obj.natural(cand[keep & np.isfinite(res).all(axis=1)])
    interval = (float(np.exp(ends_t[0])), float(np.exp(ends_t[1]))) if obj.is_log[j] else (ends_t[0], ends_t[1])
    log.info("profile interval of %s: [%.4g, %.4g] (%d grid points, %d parameter sets in the region; noise base "
             "%.3g, run %.3g, point %.3g)", param, *interval, ts.size, len(values), noise["base"], noise["run"],
             noise["point"])
    return Profile(param, interval, (ends[0], ends[1]), threshold, df,
                   {k: float(f"{v:.6g}") for k, v in noise.items()}, tuple(obj.law.params), values)



def unite_profiles(obj: Objective, theta: np.ndarray, params: list[str], ci: dict[str, list[float] | None],
                   info: dict[str, Any], groups: np.ndarray, strata: np.ndarray | None, *,
                   run_noise: float | None, base_noise: float | None) -> list[dict[str, Any]]:
    """Unite the percentile interval in ``ci`` of each log-space parameter of ``params`` with its profile set
    (in place; ``info["interval"]`` becomes :data:`UNION`, ``info["profiled"]`` names them); the profiles'
    law-JSON records."""
    out = []
    for name in params:
        j = list(obj.law.params).index(name)
        interval = ci.get(name)
        if interval is None or not obj.is_log[j]:
            continue
        prof = profile_interval(obj, theta, name, groups, strata, base_noise=base_noise, run_noise=run_noise)
        if prof is None:
            continue
        ci[name] = [min(interval[0], prof.interval[0]), max(interval[1], prof.interval[1])]
        info["interval"] = UNION
        info.setdefault("profiled", []).append(name)
        out.append(prof.record())
    return out
