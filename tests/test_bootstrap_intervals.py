"""Bootstrap interval methods (fit/bootstrap.interval): percentile, basic and bias-corrected (BC), checked by
simulation with known truth on a skewed, biased statistic whose exact interval is known. Whether they cover on
fitted laws: bench/bench_coverage.py."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import ndtr

from cpt_scaling.fit.bootstrap import INTERVAL, INTERVAL_METHODS, BootstrapResult, interval

SIGMA, Z0 = 1.0, 0.5  # on the log scale: estimate = truth - Z0*SIGMA + SIGMA*Z, resamples likewise about it


def _coverage(method: str, reps: int = 1000, resamples: int = 1000, seed: int = 0) -> float:
    """Share of ``reps`` replications whose 95 % interval of ``theta = exp(phi)`` (truth phi = 0) covers 1: the
    estimate is lognormal and biased (``log θ̂ ~ N(-Z0·σ, σ²)``), the resamples follow the same law about it, so
    BC (any monotone scale) and basic on the log scale are exact and the percentile interval is not."""
    rng = np.random.default_rng(seed)
    phi_hat = -Z0 * SIGMA + SIGMA * rng.standard_normal(reps)
    boot = phi_hat - Z0 * SIGMA + SIGMA * rng.standard_normal((resamples, reps))  # one column per replication
    if method == "basic":
        ends = np.exp(interval(boot, method=method, point=phi_hat))
    else:
        ends = interval(np.exp(boot), method=method, point=np.exp(phi_hat))
    return float(np.mean((ends[:, 0] <= 1.0) & (ends[:, 1] >= 1.0)))


def test_bc_and_basic_cover_a_biased_skewed_estimate_where_the_percentile_interval_does_not() -> None:
    """Known truth, 1,000 replications of 1,000 resamples (binomial sd 0.007 at 0.95): BC and log-scale basic
    cover 0.95 (BC a little less: its z0 is itself estimated); the percentile interval, which repeats the bias
    instead of removing it, covers P(|Z - 2·Z0| <= 1.96) = 0.83."""
    assert _coverage("bc") == pytest.approx(0.95, abs=0.025)
    assert _coverage("basic") == pytest.approx(0.95, abs=0.025)
    exact = ndtr(1.96 - 2 * Z0) - ndtr(-1.96 - 2 * Z0)
    assert _coverage("percentile") == pytest.approx(exact, abs=0.025)


def test_bc_endpoints_follow_the_share_of_resamples_below_the_point() -> None:
    """With resamples exactly symmetric about the point (z0 = 0) BC is the percentile interval; with 84 % of them
    below it (z0 = 1) BC reads the quantiles at Φ(2 ± 1.96) on the resamples' own scale."""
    q = np.linspace(0.0005, 0.9995, 1000)
    boot = np.exp(q)  # any monotone scale: BC reads quantiles only
    assert interval(boot, method="bc", point=float(np.median(boot))) == pytest.approx(interval(boot), rel=1e-3)
    point = float(np.quantile(boot, ndtr(1.0)))
    lo, hi = interval(boot, method="bc", point=point)
    assert lo == pytest.approx(np.quantile(boot, ndtr(2.0 - 1.96)), rel=2e-3)
    assert hi == pytest.approx(np.quantile(boot, ndtr(2.0 + 1.96)), rel=2e-3)


def test_interval_columns_drop_non_finite_values_and_methods_need_the_point() -> None:
    """Per column: non-finite resamples are dropped, an empty column is nan; basic reflects about the point;
    unknown methods and a missing point are refused."""
    s = np.array([[1.0, np.nan], [2.0, np.nan], [3.0, np.nan], [np.inf, np.nan]])
    out = interval(s, level=0.5)
    assert out[0] == pytest.approx([1.5, 2.5]) and np.isnan(out[1]).all()
    assert interval(s[:, 0], level=0.5, method="basic", point=2.5) == pytest.approx([2.5, 3.5])
    with pytest.raises(ValueError, match="needs the point"):
        interval(s, method="bc")
    with pytest.raises(ValueError, match="unknown interval method"):
        interval(s, method="studentized")


def test_fits_report_the_percentile_interval() -> None:
    """A fit's intervals are :data:`INTERVAL` (percentile: bench/bench_coverage.py), over the rows that succeeded."""
    assert INTERVAL == "percentile" and INTERVAL in INTERVAL_METHODS
    samples = np.array([[0.0, 1.0], [1.0, 2.0], [np.nan, 3.0], [2.0, 4.0]])
    res = BootstrapResult(samples, 4, 1, 0, 4, 1)
    assert res.interval(0.5) == pytest.approx(np.array([[0.5, 1.5], [1.5, 3.0]]))
