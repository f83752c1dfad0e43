"""Bootstrap over whole runs: percentile intervals of law parameters, and the resampled parameter sets.

Checkpoints of one training run share its noise (one seed, one data order), so resampling them independently
understates the uncertainty. Each resample here draws *groups* (runs; a column such as ``run``) with replacement;
every point of a drawn group enters with the group's multiplicity as its weight. Draws are stratified by model size
where every size has two runs or more (the sizes are the design, the runs within a size the random part), so no
resample loses a size. Each resample is refitted from several starts (the full-data optimum, the other distinct
optima the multistart found, and random perturbations of the optimum) and keeps its best; all resamples × starts
are minimised together by the batched L-BFGS. Intervals are percentiles of each parameter over the resamples that
gave a finite objective (natural space); the others are counted as failed. The same ``seed`` and the same group
labels give the same draws, so two laws fitted to the same runs (domain and general loss) get paired resamples.

Where some size has a single run (Chinchilla's pretraining runs, one per size), the size terms absorb each run's
offset and no resampling of runs can show it (bench/bench_coverage.py: 0.34 coverage of alpha). Given the
run-to-run noise (``run_noise``, stated by the user), the resamples are parametric: the fitted curve, a fresh
offset per run and the within-run residuals with random signs (:func:`~cpt_scaling.fit.noise.hierarchical_losses`).

All runs of one size start from the same base model (a WSD trunk's branches carry one run label), so they share
its loss offset, which no resampling of runs within a size can show. :func:`noise_plan` chooses per fit how the
resamples include what the runs share (:mod:`cpt_scaling.fit.noise`): ``runs`` (whole-run resampling, as above),
``runs_and_base`` (runs resampled within every size plus a fresh offset per size) or ``hierarchical`` (parametric:
the fit, an offset per size, an offset per run, sign-flipped within-run residuals). A stated run noise is
simulated (the design stays fixed: resampling runs can drop a size's extreme ratios, which fattens the tails of
the resampled exponents; bench_coverage's shared design, 5 runs per size: L3 β covered 100 of 100 seeds
resampled, 99 of 100 simulated, on other seeds). Without it, every size with :data:`MIN_RUNS_RESAMPLED` runs
or more: runs are resampled; fewer (a bootstrap of two runs has half the variance of their mean): the run noise
estimated from the runs is simulated. The base offset's sd is stated (``base_noise``), else estimated from the
spread of the size terms where enough sizes identify it, else unknown (the fit then warns that its intervals
ignore it).

Intervals: :func:`interval` computes the percentile, basic (reflected percentile) and bias-corrected (BC)
intervals from the same resamples; fits report :data:`INTERVAL` (recorded as ``bootstrap_info.interval``).
It is the percentile interval because the other two covered worse on synthetic sweeps with known truth
(bench/bench_coverage.py, bench/RESULTS.md): there the resamples' median lies on the truth's side of the point
estimate in about two cases of three (the resampled estimates are pulled toward what the design identifies), so
reflecting them (basic) or shifting the percentiles away from them (BC) moves the interval away from the truth.
Where the fit puts E at its floor, the resamples keep it there and the percentile interval of the size exponent is
too narrow; the fit then reports its union with a profile-likelihood set (:mod:`cpt_scaling.fit.profile`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from scipy.special import ndtr, ndtri

from cpt_scaling.fit.noise import design, draw_variances, hierarchical_losses, variance_components
from cpt_scaling.fit.optimize import Objective, batched_gauss_newton, batched_lbfgs, bounds_theta

log = logging.getLogger(__name__)


@dataclass
class BootstrapResult:
    """Resampled parameters (natural space, ``(resamples, P)``, NaN rows for failed resamples, so that the rows
    of two laws fitted to the same runs stay paired) and how many resamples failed or hit their cap."""

    samples: np.ndarray
    resamples: int
    failed: int
    not_converged: int
    n_groups: int
    starts: int
    stratified: bool = False
    parametric: bool = False
    noise: dict[str, Any] = field(default_factory=dict)

    def interval(self, level: float = 0.95) -> np.ndarray | None:
        """``(P, 2)`` :data:`INTERVAL` interval over the resamples that succeeded, or None when none did."""
        ok = self.samples[np.isfinite(self.samples).all(axis=1)]
        if not len(ok):
            return None
        return interval(ok, level)


#: Interval methods of :func:`interval`.
INTERVAL_METHODS = ("percentile", "basic", "bc")
#: The method fits report (see the module docstring for why).
INTERVAL = "percentile"


def interval(samples: np.ndarray, level: float = 0.95, *, method: str = INTERVAL,
             point: np.ndarray | float | None = None) -> np.ndarray:
    """``(P, 2)`` two-sided bootstrap interval per column of ``samples`` ``(R, P)`` (or ``(2,)`` for ``(R,)``);
    non-finite values are dropped per column.

    ``percentile``: the ``(1 ± level)/2`` quantiles of the resamples. ``basic``: those quantiles reflected about
    the ``point`` estimate, ``2·point − q``: right when the resamples spread about the point as the point spreads
    about the truth (pass log values to reflect on a log scale). ``bc`` (Efron's bias-corrected percentile):
    quantiles at ``Φ(2·z₀ ± z)``, ``z₀ = Φ⁻¹(share of resamples below the point)`` (ties count half, the share
    kept within ``[1/(R+1), R/(R+1)]``): exact when some monotone transform makes the estimate normal with a
    constant bias. ``basic`` and ``bc`` need ``point`` (one value per column).
    """
    if method not in INTERVAL_METHODS:
        raise ValueError(f"unknown interval method {method!r} (one of {', '.join(INTERVAL_METHODS)})")
    s = np.asarray(samples, dtype=float)
    flat = s.ndim == 1
    s = s[:, None] if flat else s
    est = None if point is None else np.broadcast_to(np.asarray(point, dtype=float), (s.shape[1],))
    if method != "percentile" and est is None:
        raise ValueError(f"the {method} interval needs the point estimate")
    tails = np.array([0.5 - 0.5 * level, 0.5 + 0.5 * level])
    out = np.full((s.shape[1], 2), np.nan)
    for j in range(s.shape[1]):
        col = s[np.isfinite(s[:, j]), j]
        if not col.size:
            continue
        probs = tails
        if method == "bc":
            assert est is not None
            share = (np.sum(col < est[j]) + 0.5 * np.sum(col == est[j])) / col.size
            z0 = ndtri(np.clip(share, 1.0 / (col.size + 1), col.size / (col.size + 1.0)))
            probs = ndtr(2.0 * z0 + ndtri(tails))
        q = np.quantile(col, probs)
        if method == "basic":
            assert est is not None
            q = 2.0 * est[j] - q[::-1]
        out[j] = q
    return out[0] if flat else out


def group_weights(groups: np.ndarray, resamples: int, seed: int, strata: np.ndarray | None = None
                  ) -> tuple[np.ndarray, int, bool]:
    """``(resamples, n)`` weights: each point's group multiplicity in each resample; the number of groups; and
    whether the draw was stratified.

    With ``strata`` (one value per point, constant within a group, e.g. the model size), groups are drawn within
    each stratum, so every resample keeps the design's strata (every size) and only the runs within them vary;
    this needs at least two groups in every stratum, else the draw falls back to all groups at once.
    """
    labels, index = np.unique(np.asarray(groups).astype(str), return_inverse=True)
    rng = np.random.default_rng(seed)
    if strata is not None:
        first = np.zeros(labels.size, dtype=int)
        first[index[::-1]] = np.arange(index.size)[::-1]
        group_stratum = np.asarray(strata)[first]
        values, members = np.unique(group_stratum, return_inverse=True)
        sizes = np.bincount(members)
        if values.size > 1 and sizes.min() >= 2:
            counts = np.zeros((resamples, labels.size), dtype=int)
            for k in range(values.size):
                idx = np.flatnonzero(members == k)
                counts[:, idx] = rng.multinomial(idx.size, np.full(idx.size, 1.0 / idx.size), size=resamples)
            return counts[:, index].astype(float), int(labels.size), True
    counts = rng.multinomial(labels.size, np.full(labels.size, 1.0 / labels.size), size=resamples)
    return counts[:, index].astype(float), int(labels.size), False


def bootstrap_fit(
    obj: Objective,
    theta: np.ndarray,
    resamples: int,
    *,
    groups: np.ndarray | None = None,
    strata: np.ndarray | None = None,
    candidates: np.ndarray | None = None,
    starts: int = 4,
    seed: int = 0,
    max_iter: int = 200,
    ftol: float = 1e-9,
    screen_iters: int = 25,
    run_noise: float | None = None,
    base_noise: float | None = None,
) -> BootstrapResult:
    """Refit ``obj`` on ``resamples`` group resamples, each from ``starts`` starting points.

    With ``run_noise`` (the relative sd of a whole run's loss offset, stated by the user), or groups too few to
    resample within every stratum (one run per model size: the size terms absorb each run's offset, so no
    resampling of those runs can show it), the resamples are parametric instead.
    ``base_noise``: the stated relative sd of the offset shared by all runs of a size (one base model); how the
    resamples include it and the run noise is chosen by :func:`noise_plan` and recorded in ``noise``.
    """
    n = obj.log_y.size
    groups = np.arange(n) if groups is None else np.asarray(groups)
    weights, n_groups, stratified = group_weights(groups, resamples, seed, strata)
    plan = noise_plan(obj, theta, groups, strata, resamples, seed, stratified=stratified, run_noise=run_noise,
                      base_noise=base_noise)
    parametric = plan.method == "hierarchical"
    obj = replace(obj, log_y=plan.log_y)
    if parametric:
        weights = np.ones_like(weights)
    lo, hi = bounds_theta(obj)
    pool = [theta] + [c for c in (candidates if candidates is not None else [])
                      if np.max(np.abs(c - theta)) > 1e-3]
    rng = np.random.default_rng(seed + 1)
    while len(pool) < starts:
        pool.append(np.clip(theta + rng.normal(0.0, 0.5, theta.size), lo, hi))
    start = np.array(pool[:starts])
    k = len(start)
    # every start runs a few iterations; each resample's most promising one continues to convergence
    screen = replace(obj, weights=np.repeat(weights, k, axis=0),
                     log_y=np.repeat(obj.log_y, k, axis=0) if obj.log_y.ndim == 2 else obj.log_y)
    thetas, f, _ = batched_lbfgs(screen, np.tile(start, (resamples, 1)), lo, hi, max_iter=screen_iters, ftol=ftol)
    f = np.where(np.isfinite(f), f, np.inf).reshape(resamples, k)
    first = thetas[np.arange(resamples) * k + np.argmin(f, axis=1)]
    refit = replace(obj, weights=weights)
    thetas, f, _ = batched_lbfgs(refit, first, lo, hi, max_iter=max_iter, ftol=ftol)
    thetas, f, done = batched_gauss_newton(refit, thetas, lo, hi, max_iter=50)
    ok = np.isfinite(f)
    not_converged = int((~done & ok).sum())
    samples = obj.natural(thetas)
    samples[~ok] = np.nan
    failed = int((~ok).sum())
    log.info("bootstrap (%s): %d resamples of %d groups (%d points), %d starts each; %d failed, %d not converged",
             plan.method, resamples, n_groups, n, k, failed, not_converged)
    return BootstrapResult(samples, resamples, failed, not_converged, n_groups, k, stratified, parametric,
                           plan.record())


#: Fewest runs in every size for which resampling the runs within each size shows their spread (where no run
#: noise is stated); with fewer the run noise estimated from the runs (with its degrees of freedom) is simulated.
MIN_RUNS_RESAMPLED = 4


@dataclass
class NoisePlan:
    """How one fit's resamples include the noise its runs share: the method, the (per-resample) log-losses, and
    each noise component's sd (log scale), source (``stated``, ``estimated``, ``resampled``, ``confounded`` or
    None: unknown) and degrees of freedom (None for a stated sd)."""

    method: str
    log_y: np.ndarray
    base: tuple[float | None, str | None, float | None]
    run: tuple[float | None, str | None, float | None]
    point: float | None

    def record(self) -> dict[str, Any]:
        """The plan's ``bootstrap_info`` keys."""
        def num(v: float | None) -> float | None:
            return None if v is None else float(f"{v:.6g}")
        return {"resampling": self.method, "base_noise": num(self.base[0]), "base_noise_source": self.base[1],
                "base_noise_df": num(self.base[2]), "run_noise": num(self.run[0]), "run_noise_source": self.run[1],
                "run_noise_df": num(self.run[2]), "point_noise": num(self.point)}


def noise_plan(obj: Objective, theta: np.ndarray, groups: np.ndarray, strata: np.ndarray | None, resamples: int,
               seed: int, *, stratified: bool, run_noise: float | None, base_noise: float | None) -> NoisePlan:
    """Choose the resampling of one fit (see the module docstring) and simulate its log-losses where needed."""
    d = design(obj, theta, groups, strata)
    comp = variance_components(d)
    base: tuple[float | None, str | None, float | None] = (None, None, None)
    if base_noise is not None:
        base = (base_noise, "stated", None)
    elif np.isfinite(comp.base):
        base = (comp.base, "estimated", comp.base_df)
    run: tuple[float | None, str | None, float | None] = (None, None, None)
    if run_noise is not None:
        run = (run_noise, "stated", None)
    elif stratified and comp.runs_per_size >= MIN_RUNS_RESAMPLED:
        run = (None, "resampled", None)
    elif comp.runs_per_size >= 2 and np.isfinite(comp.run):
        run = (comp.run, "estimated", comp.run_df)
    elif comp.runs_per_size == 1 and base[1] == "estimated":
        run = (0.0, "confounded", None)  # one run per size: the size terms' spread holds both offsets
    base_sd = base[0] or 0.0
    if run[1] in (None, "resampled"):
        method, log_y = "runs", obj.log_y
        if base_sd > 0:
            rng = np.random.default_rng([seed, 4])
            offsets = rng.standard_normal((resamples, int(d.size_of_run.max()) + 1)) * np.sqrt(
                draw_variances(rng, base_sd, base[2], resamples))
            method, log_y = "runs_and_base", obj.log_y + offsets[:, d.size_of_run][:, d.run_of_point]
        return NoisePlan(method, log_y, base, run, None)
    assert run[0] is not None
    log_y = hierarchical_losses(d, comp.within, resamples, base=(base_sd, base[2]),
                                run=(run[0], run[2]), seed=seed, point=comp.point)
    return NoisePlan("hierarchical", log_y, base, run, comp.point)
