"""The noise a new run's observations will carry (log loss): a run offset ``u ~ N(0, σ_run²)`` shared by a run's
checkpoints plus ``e ~ N(0, σ_pt²)`` per checkpoint, estimated from the residuals of the fit on its points table
(between- and within-run variance with a ``run`` column; degrees of freedom corrected by ``n/(n − p)``); and the
Gaussian likelihood of one run's checkpoints under it."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

from cpt_scaling.core.errors import InputError
from cpt_scaling.laws import Law


def noise_scales(law: Law, point: Mapping[str, float], points: pd.DataFrame, where: str, *,
                 flip: bool = False) -> tuple[float, float]:
    """``(σ_run, σ_point)`` of the log-loss residuals of the point fit on ``points`` (see module docstring)."""
    for col in ("N", "D", "r", "loss"):
        if col not in points.columns:
            raise InputError(where, f"points need a {col!r} column")
    pts = points.dropna(subset=["N", "D", "r", "loss"])
    if len(pts) < 2:
        raise InputError(where, "fewer than two points to estimate the residual scale")
    cols = {c: pts[c].to_numpy(float) for c in law.columns}
    with np.errstate(divide="ignore", invalid="ignore"):
        res = np.log(pts["loss"].to_numpy(float)) - np.log(law.predict(point, cols))
    if not np.isfinite(res).all():
        raise InputError(where, "points give non-finite log residuals (loss <= 0 or a law value <= 0)")
    n, p = res.size, len(law.params)
    inflate = n / (n - p) if n > p + 1 else 2.0
    total = float(np.mean(res**2)) * inflate
    if "run" in pts.columns and pts["run"].nunique() >= 2 and pts["run"].nunique() < len(pts):
        g = pd.Series(res, index=pts.index).groupby(pts["run"].astype(str))
        within = float(sum(((v - v.mean()) ** 2).sum() for _, v in g) / max(n - g.ngroups, 1)) * inflate
        m = float(g.size().mean())
        between = max(float(g.mean().var(ddof=1)) - within / m, 0.0)
        sigma_pt = math.sqrt(max(within, 1e-12))
        sigma_run = math.sqrt(between)
    else:
        sigma_pt, sigma_run = math.sqrt(max(total, 1e-12)), 0.0
    return sigma_run, sigma_pt


def noise_cov(m: int, sigma_run: float, sigma_point: float) -> np.ndarray:
    """Covariance of one run's ``m`` log-loss observations: ``σ_pt²·I + σ_run²·11ᵀ``."""
    return sigma_point**2 * np.eye(m) + sigma_run**2 * np.ones((m, m))


def run_loglik(res: np.ndarray, sigma_run: float, sigma_point: float) -> np.ndarray:
    """Gaussian log-likelihood (up to a constant) of the residuals ``(..., m)`` of one run's ``m`` checkpoints
    under a shared run offset (sd ``sigma_run``) plus independent point noise (sd ``sigma_point``)."""
    m = res.shape[-1]
    s2, t2 = sigma_point**2, sigma_run**2
    shrink = t2 / (s2 + m * t2)
    quad = (np.sum(res**2, axis=-1) - shrink * np.sum(res, axis=-1) ** 2) / s2
    return -0.5 * quad
