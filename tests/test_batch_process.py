"""Record batches read in a forked child process: order, errors, a killed child, early stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from cpt_scaling.core.errors import InputError
from cpt_scaling.data.batch_process import batches_in_child


def numbered(n: int, rows: int = 100) -> Iterator[pa.RecordBatch]:
    for i in range(n):
        yield pa.record_batch({"i": pa.array(range(i * rows, (i + 1) * rows)), "s": [f"doc {i}"] * rows})


def test_batches_arrive_in_order_and_unchanged() -> None:
    got = list(batches_in_child(lambda: numbered(7)))
    assert [b.equals(e) for b, e in zip(got, numbered(7), strict=True)] == [True] * 7


def test_an_error_in_the_child_is_raised_in_the_parent_after_the_batches_before_it() -> None:
    def failing() -> Iterator[pa.RecordBatch]:
        yield from numbered(2)
        raise InputError("pool/a.jsonl", "line 3: not valid JSON")

    seen = []
    with pytest.raises(InputError, match=r"^pool/a.jsonl: line 3: not valid JSON$") as err:
        for batch in batches_in_child(failing):
            seen.append(batch)
    assert len(seen) == 2 and err.value.where == "pool/a.jsonl"


def test_a_killed_child_is_a_clear_error() -> None:
    def suicide() -> Iterator[pa.RecordBatch]:
        yield from numbered(1)
        os.kill(os.getpid(), signal.SIGKILL)
        yield from numbered(1)

    with pytest.raises(RuntimeError, match="reader process died"):
        list(batches_in_child(suicide))


def test_stopping_early_ends_the_child() -> None:
    def endless() -> Iterator[pa.RecordBatch]:
        while True:
            yield from numbered(1)

    it = batches_in_child(endless)
    assert next(it).num_rows == 100
    children = _children()
    assert children
    it.close()
    deadline = time.monotonic() + 10
    while _children() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _children()


def _children() -> list[int]:
    """Live (non-zombie) child processes of this process."""
    me = os.getpid()
    found = []
    for stat in os.listdir("/proc"):
        if not stat.isdigit():
            continue
        try:
            fields = Path(f"/proc/{stat}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == me and fields[0] != "Z":
            found.append(int(stat))
    return found


def test_the_child_exits_when_its_parent_is_killed(tmp_path: Path) -> None:
    """SIGKILL of the consumer alone (e.g. the OOM killer) leaves no reader process behind."""
    script = tmp_path / "consumer.py"
    script.write_text(
        "import os, signal, sys\n"
        "import pyarrow as pa\n"
        "from cpt_scaling.data.batch_process import batches_in_child\n"
        "def endless():\n"
        "    while True:\n"
        "        yield pa.record_batch({'i': pa.array(range(100))})\n"
        "it = batches_in_child(endless)\n"
        "next(it)\n"
        "print(os.getpid(), flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    parent = int(proc.stdout.split()[0])
    orphans = [pid for pid in _all_processes() if _ppid_was(pid, parent)]
    deadline = time.monotonic() + 10
    while orphans and time.monotonic() < deadline:
        time.sleep(0.1)
        orphans = [pid for pid in orphans if _alive(pid)]
    assert not orphans


def _all_processes() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def _ppid_was(pid: int, parent: int) -> bool:
    """Whether ``pid`` is a live process started by ``parent`` (its name says so: reparented children keep it)."""
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"consumer.py" in cmd and pid != parent


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
