"""Progress lines for log files (:mod:`cpt_scaling.core.progress`): what they say, how often, and the end line."""

from __future__ import annotations

import logging
import re
import time

import pytest

from cpt_scaling.core.progress import LogProgress

log = logging.getLogger("test_progress")


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "test_progress"]


def test_a_known_total_gives_the_share_the_rate_the_eta_and_the_counts(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    with LogProgress(log, "legal shards", total=40_000, interval_s=0.0) as progress:
        time.sleep(0.05)
        progress.update(10_000, selected=2_500, train_tokens=1_234_567)
    first, end = _lines(caplog)
    match = re.fullmatch(r"legal shards: 10.0k/40.0k documents \(25%\) in 00:00, ([\d.]+k?) documents/s, "
                         r"ETA 00:0(\d), selected 2.50k, train tokens 1.23M", first)
    assert match, first
    rate = float(match[1].rstrip("k")) * (1000 if match[1].endswith("k") else 1)
    assert 10_000 / 1.0 < rate < 10_000 / 0.05  # the mean since the start: 10k documents in 0.05 s or more
    assert int(match[2]) == pytest.approx(30_000 / rate, abs=1)  # the rest at that rate
    assert end.startswith("legal shards: 10.0k/40.0k documents (25%) in 00:00, ")  # the end line: same counts


def test_lines_come_at_the_interval_and_once_at_the_end(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    with LogProgress(log, "classified pool.jsonl", interval_s=3600) as progress:
        for _ in range(100):
            progress.update(7)
    assert len(_lines(caplog)) == 1  # no line within the interval; the end line
    assert re.fullmatch(r"classified pool.jsonl: 700 documents in 00:00, [\d.]+[kMG]? documents/s", _lines(caplog)[0])


def test_an_exception_leaves_no_end_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    with pytest.raises(ValueError), LogProgress(log, "x", total=3, interval_s=3600) as progress:
        progress.update(1)
        raise ValueError("bad input")
    assert _lines(caplog) == []
