"""What the runs of a sweep share: variance components of a fit's residuals, and the resamples that include them.

A point's log-loss is modelled as the law plus three independent offsets (log scale): one per model size, shared
by every run that starts from that size's base model (and by a WSD trunk's branches, which carry one run label);
one per run (seed, data order); one per point (checkpoint). Their standard deviations are ``base``, ``run`` and
``point``.

:func:`variance_components` estimates them by the method of moments from the fit's residuals ``e``: three
quadratic forms ``Q = |L e|²`` (within-run deviations; run means about their size's mean; size means), whose
expectations under the linearised fit (``e ≈ (I − H) ε``, ``H`` the hat matrix of the law's Jacobian in log
space) are ``Σ_c σ_c² tr(L (I − H) V_c (I − H)ᵀ Lᵀ)``; each σ² comes with Satterthwaite degrees of freedom.
A component is *identifiable* when its form keeps degrees of freedom after the fit: a law with size terms
(E, A, α) absorbs the offsets of three sizes completely, so the base offset needs more sizes than the law has
size parameters (here: at least :data:`MIN_DF` degrees of freedom), and the run offset needs two runs of a size.

:func:`hierarchical_losses` simulates log-losses: the fit, plus one offset per size ~ N(0, σ_base²), one per run
~ N(0, σ_run²), and the within-run residuals with random signs (scaled to the estimated point sd: their raw scale
also holds the run offsets that leak into them); a run of one point has no within-run residual to flip, so its
point term is drawn ~ N(0, σ_point²) instead (else a design mixing multi-checkpoint runs with single-point WSD
branches would resample the single points without their point noise, and a law that passes through them would
look exact there).
An estimated σ² is drawn afresh per resample from its scaled-inverse-χ² distribution (``σ̂²·ν/χ²_ν``), so a noise
measured from few runs widens the intervals as a t distribution widens a mean's.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from cpt_scaling.fit.optimize import Objective

#: Degrees of freedom below which a variance component counts as not identified by the sweep.
MIN_DF = 2.0


@dataclass
class Components:
    """Estimated standard deviations (log scale) with their degrees of freedom, ``nan`` where not identified; the
    fewest runs of any size; and the within-run residuals scaled to the point sd (the point noise a simulation
    flips the signs of)."""

    point: float
    run: float
    run_df: float
    base: float
    base_df: float
    runs_per_size: int
    within: np.ndarray


@dataclass
class Design:
    """The run labels, the run of every point, the size of every run, and the fitted log-losses, residuals and
    Jacobian (log loss by optimiser coordinate) at the optimum."""

    runs: np.ndarray
    run_of_point: np.ndarray
    size_of_run: np.ndarray
    fitted: np.ndarray
    residual: np.ndarray
    jacobian: np.ndarray


def design(obj: Objective, theta: np.ndarray, groups: np.ndarray, strata: np.ndarray | None) -> Design:
    """Index the runs (``groups``) and sizes (``strata``, constant within a run; None: one size) of a fit."""
    runs, run = np.unique(np.asarray(groups).astype(str), return_inverse=True)
    first = np.zeros(run.max() + 1, dtype=int)
    first[run[::-1]] = np.arange(run.size)[::-1]
    size = np.zeros(run.size, dtype=int) if strata is None else np.unique(np.asarray(strata),
                                                                           return_inverse=True)[1]
    nat = obj.natural(theta[None, :])
    p = {name: nat[:, j : j + 1] for j, name in enumerate(obj.law.params)}
    p.update(obj.fixed)
    pred, grads = obj.law.evaluate(p, obj.x)
    pred = np.maximum(pred[0], 1e-300)
    jac = np.stack([grads[name][0] / pred * (nat[0, j] if obj.is_log[j] else 1.0)
                    for j, name in enumerate(obj.law.params)], axis=1)
    fitted = np.log(pred)
    return Design(runs, run, size[first], fitted, obj.log_y - fitted, jac)


def _averaging(index: np.ndarray) -> np.ndarray:
    """``(groups, members)`` matrix whose rows average the members of each group."""
    m = np.zeros((index.max() + 1, index.size))
    m[index, np.arange(index.size)] = 1.0
    return m / m.sum(axis=1, keepdims=True)


def variance_components(d: Design) -> Components:
    """Method-of-moments estimates of the point, run and base (size) standard deviations of a fit's residuals,
    each with its degrees of freedom; a component whose form keeps too few degrees of freedom is ``nan``
    (the point component is then 0: single-checkpoint runs carry their point noise in the run offset)."""
    n = d.residual.size
    u, s, _ = np.linalg.svd(d.jacobian, full_matrices=False)
    u = u[:, s > 1e-8 * s.max()] if s.size and s.max() > 0 else u[:, :0]
    resid = np.eye(n) - u @ u.T  # residuals of the linearised fit: e ≈ (I − H) ε
    run_mean = _averaging(d.run_of_point)  # (runs, n)
    run_ind = (run_mean > 0).T.astype(float)  # (n, runs)
    size_ind = run_ind @ (_averaging(d.size_of_run) > 0).T.astype(float)  # (n, sizes)
    raw = [np.eye(n) - run_ind @ run_mean,  # within-run deviations
           (np.eye(run_mean.shape[0]) - _within_size_mean(d.size_of_run)) @ run_mean,  # run means about size means
           _averaging(d.size_of_run) @ run_mean]  # size means
    factors = [None, run_ind, size_ind]  # V = F Fᵀ per component (None: identity)
    coef = np.zeros((3, 3))
    dfs = np.zeros(3)
    for i, form in enumerate(raw):
        f = form @ resid
        for c, fac in enumerate(factors):
            coef[i, c], df = _moments(f if fac is None else f @ fac)
            if i == c:
                dfs[i] = df
    # the residuals projected off the Jacobian are the linearised least-squares residuals, for which the moment
    # coefficients above are exact (the Huber optimum's own residuals are nearly L1's: their squares run high)
    projected = resid @ d.residual
    q = [float(np.sum((form @ projected) ** 2)) for form in raw]
    # the fit mixes the components (a run's offset, projected off the Jacobian, leaks into its within-run
    # deviations): solve the moment equations of the identified components together, none negative
    known = [c for c in range(3) if coef[c, c] > 1e-12 and dfs[c] >= (1.0 if c < 2 else MIN_DF)]
    var = np.array([0.0, np.nan, np.nan])
    while known:
        sol = np.linalg.lstsq(coef[np.ix_(known, known)], np.asarray(q)[known], rcond=None)[0]
        if sol.min() >= 0:
            var[known] = sol
            break
        var[known[int(np.argmin(sol))]] = 0.0
        known.remove(known[int(np.argmin(sol))])
    runs_per_size = int(np.bincount(d.size_of_run).min())
    # the deviations to flip keep their pattern but take the jointly estimated point variance: their own mean
    # square also holds what leaked from the run offsets (1.9x the point variance on bench_coverage's few design)
    dev = raw[0] @ projected
    norm = float(np.sum(dev**2))
    within = dev * (np.sqrt(var[0] * n / norm) if norm > 1e-300 else 0.0)
    return Components(float(np.sqrt(var[0])), float(np.sqrt(var[1])), float(dfs[1]), float(np.sqrt(var[2])),
                      float(dfs[2]), runs_per_size, within)


def _moments(g: np.ndarray) -> tuple[float, float]:
    """For ``|G z|²`` with ``z ~ N(0, I)``: its expectation ``tr(G Gᵀ)`` and Satterthwaite degrees of freedom
    ``tr(G Gᵀ)² / tr((G Gᵀ)²)``."""
    k = g @ g.T if g.shape[0] <= g.shape[1] else g.T @ g
    tr = float(np.trace(k))
    tr2 = float(np.sum(k * k))
    return tr, (tr * tr / tr2 if tr2 > 1e-300 else 0.0)


def _within_size_mean(size_of_run: np.ndarray) -> np.ndarray:
    """``(runs, runs)`` matrix that replaces each run's value by the mean over the runs of its size."""
    same = (size_of_run[:, None] == size_of_run[None, :]).astype(float)
    return same / same.sum(axis=1, keepdims=True)


def draw_variances(rng: np.random.Generator, sd: float, df: float | None, resamples: int) -> np.ndarray:
    """``(resamples, 1)`` variances: ``sd²`` when stated (``df`` None), else drawn from ``sd²·df/χ²_df``."""
    if df is None or sd == 0.0:
        return np.full((resamples, 1), sd * sd)
    return np.full((resamples, 1), sd * sd) * df / rng.chisquare(df, size=(resamples, 1))


def hierarchical_losses(d: Design, within: np.ndarray, resamples: int, *, base: tuple[float, float | None],
                        run: tuple[float, float | None], seed: int, point: float = 0.0) -> np.ndarray:
    """``(resamples, n)`` simulated log-losses: the fit, one offset per size and one per run (``(sd, df)``: df None
    for a stated sd, else each resample's variance is drawn from the estimate's sampling distribution), and the
    point terms ``within`` (:attr:`Components.within`) with random signs; the points of single-point runs draw
    theirs ~ N(0, ``point``²). The same ``seed`` and sizes give the same size offsets (two laws fitted to runs of the
    same base models stay paired); the run offsets also depend on the run labels (different runs, independent
    offsets)."""
    rng = np.random.default_rng([seed, 3])
    n_runs, n_sizes = d.size_of_run.size, int(d.size_of_run.max()) + 1
    size_offsets = rng.standard_normal((resamples, n_sizes)) * np.sqrt(draw_variances(rng, *base, resamples))
    rng = np.random.default_rng([seed, 4, zlib.crc32("\n".join(d.runs).encode())])
    run_offsets = rng.standard_normal((resamples, n_runs)) * np.sqrt(draw_variances(rng, *run, resamples))
    signs = rng.choice([-1.0, 1.0], size=(resamples, d.residual.size))
    offsets = size_offsets[:, d.size_of_run] + run_offsets
    single = np.bincount(d.run_of_point, minlength=n_runs)[d.run_of_point] == 1
    points = np.where(single, rng.standard_normal((resamples, d.residual.size)) * point, signs * within)
    return d.fitted + offsets[:, d.run_of_point] + points
