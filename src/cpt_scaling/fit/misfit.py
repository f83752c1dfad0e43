"""Is a fitted law consistent with its own points? Residuals summarised per cell of whole runs.

A *cell* is one setting of the law's inputs (e.g. a model size, ratio and token count ``(N, r, D)``): it holds the
point of every run measured there (one run, or replicate seeds). The test:

* residuals ``r̃``: the least-squares residuals of the law, linearised at the reported fit (the log residuals
  less their projection on the columns of the log-prediction Jacobian ``J``). The Huber fit's own residuals are
  not used for the test: on a few points it is nearly an L1 fit, which leaves some residuals near zero and others
  large, so their scale and maximum do not follow any simple null distribution (a normal Bonferroni threshold on
  them flagged 3 of 40 null sweeps, ``bench/bench_misfit.py``).
* ``σ``: the noise of one point's log loss, ``1.4826 · median|r̃| · sqrt(m/(m − P))`` over the ``m`` points not
  flagged (robust to missed cells up to half the points); a stated ``fit.run_noise`` is its floor.
* per cell ``g`` with ``n_g`` points: ``z_g = mean_g(r̃) · sqrt(n_g) / σ``; statistic ``T = max_g |z_g|``.
* threshold: the ``1 − α`` quantile of ``T`` (family-wise ``α = 0.05`` over the cells) under the null of
  independent normal point noise, by Monte Carlo through the same linearised fit, residual scale and cells. It
  accounts for the number of cells, each cell's leverage and the uncertainty of ``σ`` from few degrees of freedom.

A misfit is reported when ``T`` exceeds the threshold; the cells it names are then refined by refitting the
linearised residuals without the flagged cells until the flagged set is stable. Noise shared by a run's or a
trunk's points (correlated residuals) is not simulated: it lowers the family-wise rate rather than raising it
(0.02-0.03 at α = 0.05 with run offsets carrying 50-90 % of the variance of 4-6 checkpoints per run, linear
law, 300 seeds; about 0.03 for the WSD trunks of ``bench/bench_misfit.py``'s sweep, linearised).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

ALPHA = 0.05
#: Residual degrees of freedom below which σ cannot be estimated from the points (no test without a stated noise).
MIN_DOF = 3
#: Monte Carlo draws of the null statistic (the threshold's sampling error is about 0.01 at α = 0.05).
DRAWS = 2000
#: Draws x points per Monte Carlo chunk (memory bound).
_CHUNK = 2_000_000
_MAD = 1.4826  # sd of a normal per median absolute deviation


def _basis(jac: np.ndarray | None, m: int) -> np.ndarray:
    """An orthonormal basis ``(m, rank)`` of the columns of ``jac`` (empty without a Jacobian)."""
    if jac is None or jac.size == 0:
        return np.zeros((m, 0))
    u, s, _ = np.linalg.svd(np.nan_to_num(np.asarray(jac, float)), full_matrices=False)
    return u[:, s > s[0] * 1e-10] if s.size and s[0] > 0 else np.zeros((m, 0))


def _scale(res: np.ndarray, n_params: int) -> np.ndarray:
    """Robust noise scale of residual rows ``(..., m)``: ``1.4826 · median|r| · sqrt(m / (m − P))``."""
    m = res.shape[-1]
    return _MAD * np.median(np.abs(res), axis=-1) * math.sqrt(m / max(m - n_params, 1))


def _null_threshold(basis: np.ndarray, cell_id: np.ndarray, count: np.ndarray, n_params: int, alpha: float,
                    studentized: bool) -> float:
    """The ``1 − alpha`` quantile of ``max_g |z_g|`` for independent standard normal points through the linearised
    fit (``basis``); ``studentized``: each draw's σ estimated by :func:`_scale`, else known (1)."""
    m = len(cell_id)
    order = np.argsort(cell_id, kind="stable")
    starts = np.concatenate([[0], np.cumsum(count)[:-1]])
    rng = np.random.default_rng(0)
    stats = []
    step = max(1, _CHUNK // m)
    for start in range(0, DRAWS, step):
        e = rng.standard_normal((min(step, DRAWS - start), m))
        r = e - (e @ basis) @ basis.T
        means = np.add.reduceat(r[:, order], starts, axis=1) / count
        sigma = np.maximum(_scale(r, n_params), 1e-12)[:, None] if studentized else 1.0
        stats.append(np.max(np.abs(means) * np.sqrt(count) / sigma, axis=1))
    return float(np.quantile(np.concatenate(stats), 1.0 - alpha))


def misfit_test(
    cells: pd.DataFrame,
    y: np.ndarray,
    pred: np.ndarray,
    n_params: int,
    *,
    jac: np.ndarray | None = None,
    runs: np.ndarray | None = None,
    run_noise: float | None = None,
    alpha: float = ALPHA,
) -> dict[str, Any] | None:
    """The ``misfit`` diagnostic of a fit: ``{test, threshold, statistic, sigma, n_cells, groups: [...]}`` listing
    the cells whose ``|z|`` exceeds the calibrated threshold (each with its input columns, ``runs``, ``n_points``,
    ``mean_residual_nats`` (measured − law, loss units), ``mean_log_residual`` and ``z``); None when ``T`` does
    not exceed it or σ cannot be estimated (fewer than :data:`MIN_DOF` residual degrees of freedom and no
    ``run_noise``). ``cells`` holds the law's input columns of the fitted points (one row per point); ``jac`` the
    Jacobian ``(points, parameters)`` of the log prediction at the fit (None: no leverage, residuals as given)."""
    y, pred = np.asarray(y, float), np.asarray(pred, float)
    res = np.log(y) - np.log(pred)
    m = len(res)
    estimated = m - n_params >= MIN_DOF
    if not estimated and not run_noise:
        return None
    keys = [c for c in cells.columns if pd.api.types.is_numeric_dtype(cells[c])]
    cell_id = cells[keys].reset_index(drop=True).groupby(keys, sort=True).ngroup().to_numpy()
    n_cells = int(cell_id.max()) + 1
    count = np.bincount(cell_id, minlength=n_cells)
    jac = None if jac is None else np.asarray(jac, float)
    threshold = _null_threshold(_basis(jac, m), cell_id, count, n_params, alpha, estimated)
    flagged = np.zeros(n_cells, dtype=bool)
    for step in range(20):
        keep = ~flagged[cell_id]
        resid = res.copy()
        if jac is not None:  # less the linearised least-squares fit to the kept points, at every point
            resid -= jac @ np.linalg.lstsq(jac[keep], res[keep], rcond=1e-10)[0]
        sigma = float(_scale(resid[keep], n_params)) if estimated else 0.0
        sigma = max(sigma, float(run_noise or 0.0), 1e-12)
        mean = np.bincount(cell_id, weights=resid, minlength=n_cells) / count
        z = mean * np.sqrt(count) / sigma
        if step == 0:
            statistic = float(np.max(np.abs(z)))
            if statistic <= threshold:
                return None
        new = np.abs(z) > threshold
        if np.array_equal(new, flagged):
            break
        flagged = new
    if not flagged.any():
        return None
    first = pd.Series(np.arange(m)).groupby(cell_id).first().to_numpy()
    loss_gap = np.bincount(cell_id, weights=y - pred, minlength=n_cells) / count
    log_gap = np.bincount(cell_id, weights=res, minlength=n_cells) / count
    groups = []
    for g in np.flatnonzero(flagged)[np.argsort(-np.abs(z[flagged]))]:
        row = cells.iloc[int(first[g])]
        names = sorted({str(v) for v in runs[cell_id == g]}) if runs is not None else []
        groups.append({"group": ", ".join(names) or ", ".join(f"{k}={row[k]:g}" for k in keys),
                       **{k: float(row[k]) for k in keys}, "runs": names, "n_points": int(count[g]),
                       "mean_residual_nats": float(loss_gap[g]), "mean_log_residual": float(log_gap[g]),
                       "z": float(z[g])})
    sigma_words = (f"1.4826 x median absolute residual of the unflagged points x sqrt(m/(m - {n_params} parameters))"
                   + (f", at least fit.run_noise {run_noise:g}" if run_noise else "") if estimated
                   else f"fit.run_noise {run_noise:g}")
    return {"test": (f"max over {n_cells} cells of ({', '.join(keys)}) of |cell mean of the linearised "
                     f"least-squares log residual| x sqrt(n) / sigma, against its {1 - alpha:g} quantile under "
                     f"independent normal point noise ({DRAWS} Monte Carlo draws through the same fit; "
                     f"family-wise alpha {alpha:g}); sigma: {sigma_words}"),
            "threshold": threshold, "statistic": statistic, "sigma": sigma, "n_cells": n_cells, "groups": groups}


def misfit_warning(misfit: dict[str, Any], shown: int = 4) -> str:
    """One line naming the flagged cells and the size of each miss."""
    parts = [f"{g['group']} ({g['mean_residual_nats']:+.3g} nats, z {g['z']:+.1f})" for g in misfit["groups"][:shown]]
    more = len(misfit["groups"]) - shown
    return (f"the law misses {len(misfit['groups'])} of {misfit['n_cells']} cells of its own points beyond their "
            f"noise (|z| > {misfit['threshold']:.2f}, sigma {misfit['sigma']:.3g}): " + "; ".join(parts)
            + (f"; and {more} more" if more > 0 else ""))


def add_misfit(diagnostics: dict[str, Any], cells: pd.DataFrame, y: np.ndarray, pred: np.ndarray, n_params: int,
               *, jac: np.ndarray | None, runs: np.ndarray | None, run_noise: float | None, where: str) -> None:
    """Add ``diagnostics["misfit"]`` and a warning (also logged) where a fit misses cells of its own points
    (:func:`misfit_test`; ``jac``: the log prediction's Jacobian at the fit)."""
    misfit = misfit_test(cells, y, pred, n_params, jac=jac, runs=runs, run_noise=run_noise)
    if misfit is not None:
        diagnostics["misfit"] = misfit
        diagnostics.setdefault("warnings", []).append(misfit_warning(misfit))
        log.warning("%s fit: %s", where, diagnostics["warnings"][-1])
