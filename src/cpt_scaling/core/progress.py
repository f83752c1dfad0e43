"""Progress of long data work, written for log files: a Snakemake job's log is a file, not a terminal, so instead of
a redrawn bar, tqdm's counter and meter go through ``logging`` as one line every :data:`LOG_INTERVAL_S` seconds and
one at the end, e.g. ``legal shards: 1.20M/4.80M documents (25%) in 02:10, 9.23k documents/s, ETA 06:30, selected
310k, train tokens 402M`` (the share and the ETA only where the total is known).

Use: ``with LogProgress(log, "what", total=n) as progress: ... progress.update(k, tokens=t)``."""

from __future__ import annotations

import logging
import math
import time
from types import TracebackType

from tqdm import tqdm

#: Seconds between two progress lines of one loop.
LOG_INTERVAL_S = 30.0


class _Discard:
    """Where the bar itself would be drawn: nowhere (the lines go to the log)."""

    def write(self, _text: str) -> None:
        pass

    def flush(self) -> None:
        pass


class _Counter(tqdm):
    """tqdm without its monitor thread (a thread alive at a ``fork``, as the classifier's batch reader does, can
    deadlock the child)."""

    monitor_interval = 0


class LogProgress:
    """Count work done (``update``) and log a progress line at most every ``interval_s`` seconds and once at the
    end (leaving the ``with`` block normally, or :meth:`close`); a block left by an exception logs no end line.

    ``total``: the units expected (None when unknown: no share, no ETA). ``unit``: their name, plural. The
    keyword counts given to :meth:`update` (running totals such as ``tokens``) are shown after the rate.
    """

    def __init__(self, log: logging.Logger, what: str, *, total: int | None = None, unit: str = "documents",
                 interval_s: float = LOG_INTERVAL_S) -> None:
        self.log, self.what, self.unit, self.interval_s = log, what, unit, interval_s
        # tqdm keeps the count and the clock; never drawn (an infinite redraw interval, a discarding file).
        self._bar = _Counter(total=total, file=_Discard(), mininterval=math.inf, leave=False, disable=False)
        self._counts: dict[str, int] = {}
        self._last = time.monotonic()

    def update(self, n: int, **counts: int) -> None:
        """Add ``n`` units done; ``counts``: running totals to show (replacing their earlier values)."""
        self._bar.update(n)
        self._counts.update(counts)
        now = time.monotonic()
        if now - self._last >= self.interval_s:
            self._last = now
            self.log.info("%s", self.line())

    def line(self) -> str:
        """The progress line as it stands: units done (of the total), time, mean rate, ETA, the counts."""
        meter = self._bar.format_dict
        n, total, elapsed = meter["n"], meter["total"], meter["elapsed"]
        of = f"/{_count(total)} {self.unit} ({100 * n / total:.0f}%)" if total else f" {self.unit}"
        done = f"{_count(n)}{of}"
        rate = n / elapsed if elapsed > 0 else 0.0
        parts = [f"{self.what}: {done} in {tqdm.format_interval(elapsed)}", f"{_count(rate)} {self.unit}/s"]
        if total and rate > 0:
            parts.append(f"ETA {tqdm.format_interval(max(total - n, 0) / rate)}")
        parts.extend(f"{name.replace('_', ' ')} {_count(value)}" for name, value in self._counts.items())
        return ", ".join(parts)

    def close(self) -> None:
        """Log the end line (units done, time, mean rate) once."""
        if not self._bar.disable:
            self.log.info("%s", self.line())
            self._bar.close()

    def __enter__(self) -> LogProgress:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, _exc: BaseException | None,
                 _tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
        else:
            self._bar.close()


def _count(n: float) -> str:
    """``950``, ``12.3k``, ``4.02M``: a count (or a rate, rounded) as tqdm scales it."""
    return tqdm.format_sizeof(n) if abs(n) >= 1000 else str(round(n))
