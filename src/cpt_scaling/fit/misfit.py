"""Is a fitted law consistent with its own points? Residuals summarised per cell of whole runs.

A *cell* is one setting of the law's inputs (e.g. a model size, ratio and token count ``(N, r, D)``): it holds the
point of every run measured there (one run, or replicate seeds). The test, per cell ``g`` with ``n_g`` points::

    z_g = mean_g(log L − log L̂) · sqrt(n_g) / σ

``σ`` is the noise of one point's log loss (point noise plus the run's offset, which every point of a run shares),
estimated from the fit's own residuals over the cells not flagged: ``sqrt(π/2)·mean|res|`` (the normal scale of
the mean absolute residual, less swayed by a few missed cells than the root mean square), times ``sqrt(m/(m − P))``
for the ``P`` fitted parameters, iterated until the flagged set is stable; a stated ``fit.run_noise`` is its floor.
A cell is flagged when ``|z_g|`` exceeds the two-sided Bonferroni threshold ``Φ⁻¹(1 − α/(2G))`` over the ``G``
cells (family-wise α = 0.05; a Student-t quantile for σ's ``n − P`` degrees of freedom cut detection from 0.975
to 0.675 for a false-alarm rate of 0.050 instead of 0.075: ``bench/bench_misfit.py``, bench/RESULTS.md).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import norm

log = logging.getLogger(__name__)

ALPHA = 0.05
#: Residual degrees of freedom below which σ cannot be estimated from the points (no test without a stated noise).
MIN_DOF = 3


def misfit_test(
    cells: pd.DataFrame,
    y: np.ndarray,
    pred: np.ndarray,
    n_params: int,
    *,
    runs: np.ndarray | None = None,
    run_noise: float | None = None,
    alpha: float = ALPHA,
) -> dict[str, Any] | None:
    """The ``misfit`` diagnostic of a fit: ``{test, threshold, sigma, n_cells, groups: [...]}`` listing the cells
    whose mean log residual exceeds the Bonferroni threshold (each with its input columns, ``runs``,
    ``n_points``, ``mean_residual_nats`` (measured − law, loss units), ``mean_log_residual`` and ``z``); None when
    no cell is flagged or σ cannot be estimated (fewer than :data:`MIN_DOF` residual degrees of freedom and no
    ``run_noise``). ``cells`` holds the law's input columns of the fitted points (one row per point)."""
    y, pred = np.asarray(y, float), np.asarray(pred, float)
    res = np.log(y) - np.log(pred)
    dof = len(res) - n_params
    if dof < MIN_DOF and not run_noise:
        return None
    keys = [c for c in cells.columns if pd.api.types.is_numeric_dtype(cells[c])]
    cell_id = cells[keys].reset_index(drop=True).groupby(keys, sort=True).ngroup().to_numpy()
    n_cells = int(cell_id.max()) + 1
    count = np.bincount(cell_id, minlength=n_cells)
    mean = np.bincount(cell_id, weights=res, minlength=n_cells) / count
    threshold = float(norm.ppf(1.0 - alpha / (2.0 * n_cells)))
    flagged = np.zeros(n_cells, dtype=bool)
    sigma = float("nan")
    for _ in range(20):
        keep = ~flagged[cell_id]
        free = max(int(keep.sum()) - n_params, 1)
        mean_abs = float(np.mean(np.abs(res[keep]))) if keep.any() else 0.0
        sigma = math.sqrt(math.pi / 2.0) * mean_abs * math.sqrt(int(keep.sum()) / free) if dof >= MIN_DOF else 0.0
        sigma = max(sigma, float(run_noise or 0.0), 1e-12)
        z = mean * np.sqrt(count) / sigma
        new = np.abs(z) > threshold
        if np.array_equal(new, flagged):
            break
        flagged = new
    if not flagged.any():
        return None
    first = pd.Series(np.arange(len(cell_id))).groupby(cell_id).first().to_numpy()
    loss_gap = np.bincount(cell_id, weights=y - pred, minlength=n_cells) / count
    groups = []
    for g in np.flatnonzero(flagged)[np.argsort(-np.abs(z[flagged]))]:
        row = cells.iloc[int(first[g])]
        names = sorted({str(v) for v in runs[cell_id == g]}) if runs is not None else []
        groups.append({"group": ", ".join(names) or ", ".join(f"{k}={row[k]:g}" for k in keys),
                       **{k: float(row[k]) for k in keys}, "runs": names, "n_points": int(count[g]),
                       "mean_residual_nats": float(loss_gap[g]), "mean_log_residual": float(mean[g]),
                       "z": float(z[g])})
    return {"test": (f"cell mean log residual * sqrt(n) / sigma against the two-sided Bonferroni normal "
                     f"threshold over "
                     f"{n_cells} cells of ({', '.join(keys)}) at family-wise alpha {alpha:g}; sigma: sqrt(pi/2) x mean "
                     f"absolute log residual of the unflagged points x sqrt(m/(m - {n_params} parameters))"
                     + (f", at least fit.run_noise {run_noise:g}" if run_noise else "")),
            "threshold": threshold, "sigma": sigma, "n_cells": n_cells, "groups": groups}


def misfit_warning(misfit: dict[str, Any], shown: int = 4) -> str:
    """One line naming the flagged cells and the size of each miss."""
    parts = [f"{g['group']} ({g['mean_residual_nats']:+.3g} nats, z {g['z']:+.1f})" for g in misfit["groups"][:shown]]
    more = len(misfit["groups"]) - shown
    return (f"the law misses {len(misfit['groups'])} of {misfit['n_cells']} cells of its own points beyond their "
            f"noise (|z| > {misfit['threshold']:.2f}, sigma {misfit['sigma']:.3g}): " + "; ".join(parts)
            + (f"; and {more} more" if more > 0 else ""))


def add_misfit(diagnostics: dict[str, Any], cells: pd.DataFrame, y: np.ndarray, pred: np.ndarray, n_params: int,
               *, runs: np.ndarray | None, run_noise: float | None, where: str) -> None:
    """Add ``diagnostics["misfit"]`` and a warning (also logged) where a fit misses cells of its own points."""
    misfit = misfit_test(cells, y, pred, n_params, runs=runs, run_noise=run_noise)
    if misfit is not None:
        diagnostics["misfit"] = misfit
        diagnostics.setdefault("warnings", []).append(misfit_warning(misfit))
        log.warning("%s fit: %s", where, diagnostics["warnings"][-1])
