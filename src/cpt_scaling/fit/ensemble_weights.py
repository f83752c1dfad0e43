"""Reweighting a bootstrap ensemble by simulated observations: importance weights, weighted percentile
intervals and weighted variances, and the linear-Gaussian (ensemble Kalman) variance update."""

from __future__ import annotations

import numpy as np

#: Level of the decision intervals.
LEVEL = 0.95


def importance_weights(loglik: np.ndarray, base: np.ndarray | None = None) -> np.ndarray:
    """Normalised weights per row of ``loglik`` ``(J, G)``: ``base · exp(loglik)`` / sum (stable; -inf = 0)."""
    ll = np.asarray(loglik, dtype=float)
    if base is not None:
        with np.errstate(divide="ignore"):
            ll = ll + np.log(np.asarray(base, dtype=float))
    top = np.max(ll, axis=1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    w = np.exp(ll - top)
    total = w.sum(axis=1, keepdims=True)
    return w / np.where(total > 0, total, 1.0)


def weighted_interval(values: np.ndarray, weights: np.ndarray, level: float = LEVEL) -> np.ndarray:
    """Weighted percentile interval ``(J, 2)`` of ``values`` ``(G,)`` under each row of ``weights`` ``(J, G)``
    (linear interpolation between the mid-points of each value's weight, as for unweighted percentiles)."""
    order = np.argsort(values)
    v = np.asarray(values, dtype=float)[order]
    w = np.asarray(weights, dtype=float)[:, order]
    cw = np.cumsum(w, axis=1) - 0.5 * w
    out = np.empty((w.shape[0], 2))
    for j, q in enumerate((0.5 * (1.0 - level), 1.0 - 0.5 * (1.0 - level))):
        hi = np.clip((cw < q).sum(axis=1), 1, v.size - 1)
        lo = hi - 1
        c_lo = np.take_along_axis(cw, lo[:, None], 1)[:, 0]
        c_hi = np.take_along_axis(cw, hi[:, None], 1)[:, 0]
        frac = np.clip((q - c_lo) / np.where(c_hi > c_lo, c_hi - c_lo, 1.0), 0.0, 1.0)
        out[:, j] = v[lo] + frac * (v[hi] - v[lo])
    return out


def linear_variance_ratio(values: np.ndarray, x: np.ndarray, cov: np.ndarray, prior_var: float | None = None
                          ) -> float:
    """Posterior/prior variance of the decision after observing ``x`` (members x observations) with noise
    ``cov``, in the linear-Gaussian approximation of the ensemble (ensemble Kalman update):
    ``Var(v) - C_vx (C_xx + R)^-1 C_xv``, all moments from the members."""
    v = values - values.mean()
    xc = x - x.mean(axis=0)
    g = values.size - 1
    prior = float(v @ v / g) if prior_var is None else prior_var
    c_xv = xc.T @ v / g
    c_xx = xc.T @ xc / g
    post = prior - float(c_xv @ np.linalg.solve(c_xx + cov, c_xv))
    return max(post, 0.0) / prior if prior > 0 else 1.0


def weighted_variance(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Variance ``(J,)`` of ``values`` ``(G,)`` under each row of normalised ``weights`` ``(J, G)``."""
    v = np.asarray(values, dtype=float)
    mean = weights @ v
    return np.maximum(weights @ v**2 - mean**2, 0.0)
