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
run-to-run noise (``run_noise``, stated by the user), the resamples are then parametric: the fitted curve, a fresh
offset per run and the fitted residuals with random signs (:func:`parametric_losses`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import numpy as np

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

    def interval(self, level: float = 0.95) -> np.ndarray | None:
        """``(P, 2)`` percentile interval, or None when no resample succeeded."""
        ok = self.samples[np.isfinite(self.samples).all(axis=1)]
        if not len(ok):
            return None
        tail = 50.0 * (1.0 - level)
        return np.percentile(ok, [tail, 100.0 - tail], axis=0).T


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
) -> BootstrapResult:
    """Refit ``obj`` on ``resamples`` group resamples, each from ``starts`` starting points.

    With ``run_noise`` (the relative sd of a whole run's loss offset, stated by the user) and groups that cannot
    be drawn within every stratum (one run per model size: the size terms absorb each run's offset, so no
    resampling of those runs can show it), the resamples are parametric instead: :func:`parametric_losses`.
    """
    n = obj.log_y.size
    groups = np.arange(n) if groups is None else np.asarray(groups)
    weights, n_groups, stratified = group_weights(groups, resamples, seed, strata)
    parametric = run_noise is not None and not stratified
    if parametric:
        obj = replace(obj, log_y=parametric_losses(obj, theta, groups, resamples, run_noise, seed))
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
                     log_y=np.repeat(obj.log_y, k, axis=0) if parametric else obj.log_y)
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
    log.info("bootstrap%s: %d resamples of %d groups (%d points), %d starts each; %d failed, %d not converged",
             f" (parametric, run noise {run_noise:g})" if parametric else "", resamples, n_groups, n, k, failed,
             not_converged)
    return BootstrapResult(samples, resamples, failed, not_converged, n_groups, k, stratified, parametric)


def parametric_losses(obj: Objective, theta: np.ndarray, groups: np.ndarray, resamples: int, run_noise: float,
                      seed: int) -> np.ndarray:
    """``(resamples, n)`` simulated log-losses: the fit at ``theta``, plus one offset per run drawn from
    N(0, ``run_noise``²) (log scale), plus each point's fitted residual, scaled by sqrt(n / (n - parameters)) for
    the fit's shrinkage, with a random sign (within-run noise)."""
    fitted = np.log(np.maximum(obj.law.predict({**dict(zip(obj.law.params, obj.natural(theta[None, :])[0],
                                                               strict=True)), **obj.law.fixed}, obj.x), 1e-300))
    residual = obj.log_y - fitted
    n, n_par = residual.size, len(obj.law.params)
    residual = residual * np.sqrt(n / max(1, n - n_par))  # undo the fit's shrinkage of its residuals
    _, index = np.unique(np.asarray(groups).astype(str), return_inverse=True)
    rng = np.random.default_rng([seed, 2])
    offsets = rng.normal(0.0, run_noise, size=(resamples, index.max() + 1))[:, index]
    signs = rng.choice([-1.0, 1.0], size=(resamples, residual.size))
    return fitted + offsets + signs * residual
