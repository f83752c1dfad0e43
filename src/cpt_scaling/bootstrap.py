"""Bootstrap confidence intervals of fitted law parameters.

Each resample draws the fitting points with replacement (multinomial counts as per-point weights) and is
refitted from the full-data optimum; all resamples are minimised together by the batched L-BFGS. Intervals are
the 2.5th and 97.5th percentiles of each parameter over the resamples (natural space).
"""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np

from cpt_scaling.optimize import Objective, batched_lbfgs, bounds_theta

log = logging.getLogger(__name__)


def bootstrap_params(
    obj: Objective, theta: np.ndarray, resamples: int, seed: int = 0, level: float = 0.95
) -> dict[str, list[float]]:
    """``{param: [low, high]}`` percentile intervals from ``resamples`` refits of ``obj`` around ``theta``."""
    n = obj.log_y.size
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(n, np.full(n, 1.0 / n), size=resamples).astype(float)
    boot = replace(obj, weights=weights)
    lo, hi = bounds_theta(obj)
    starts = np.repeat(theta[None, :], resamples, axis=0)
    thetas, f, _ = batched_lbfgs(boot, starts, lo, hi, max_iter=500)
    values = obj.natural(thetas[np.isfinite(f)])
    tail = 50.0 * (1.0 - level)
    low, high = np.percentile(values, [tail, 100.0 - tail], axis=0)
    log.info("bootstrap: %d resamples of %d points", resamples, n)
    return {name: [float(a), float(b)] for name, a, b in zip(obj.law.params, low, high, strict=True)}
