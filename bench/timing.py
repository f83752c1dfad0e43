"""Timing helpers shared by the benchmarks (not a benchmark itself: `make bench` runs bench/bench_*.py)."""

from __future__ import annotations

import time
from collections.abc import Callable


def timed(fn: Callable[[], object]) -> float:
    """Wall time of one call."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start
