"""The JSONL training log: one ``start`` record per (re)start, one ``step`` record per logged step, one ``save``
record per checkpoint (its seconds: what the stop margin of the next submission must leave, :func:`longest_save`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TextIO

from cpt_scaling.core.atomic import write_text

LOG_NAME = "train_log.jsonl"


def read_log(path: Path) -> list[dict[str, Any]]:
    """All complete records of a training log (a line cut off by a kill is skipped)."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def open_log(path: Path, resume_step: int) -> TextIO:
    """Open the log for appending, first dropping step records past ``resume_step`` (work a resume redoes)."""
    kept = [r for r in read_log(path) if r.get("event") != "step" or r["step"] <= resume_step]
    write_text(path, "".join(json.dumps(r) + "\n" for r in kept))
    return path.open("a")


def append(log_file: TextIO, record: dict[str, Any]) -> None:
    """Write one record and flush it."""
    log_file.write(json.dumps(record) + "\n")
    log_file.flush()


def longest_save(path: Path) -> float | None:
    """The longest resumable save of a run (seconds, from its ``save`` records); None when it logged none."""
    seconds = [r["seconds"] for r in read_log(path) if r.get("event") == "save" and r.get("resumable")]
    return max(seconds, default=None)
