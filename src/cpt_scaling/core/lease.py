"""One writer per artifact: a lease file beside each keyed artifact directory, taken before a job writes it.

Two checkouts (or copies of a results tree) may share one ``artifacts_dir``; each Snakemake only knows its own
jobs, so both may start the job that writes the same artifact. The job holding ``.<name>-<key>.lease`` (beside
the artifact's directory, so the directory's atomic replacement never touches it) writes; another waits for it,
and past ``wait_s`` stops with one line naming the holder. A lease records its holder (host, pid, the process's
start time, working directory); its file's modification time is a heartbeat, renewed every ``HEARTBEAT_S``.

Stale-lease rule: a lease whose holder is gone is taken over with a warning. On the holder's own host "gone" means
no process with its pid and start time (a reused pid does not count); from another host (a shared filesystem), a
heartbeat older than ``STALE_AFTER_S``. Taking over renames the stale file aside first, so of several waiters only
one takes it, and one that renamed a fresh lease by mistake puts it back.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cpt_scaling.core.errors import InputError

log = logging.getLogger(__name__)

HEARTBEAT_S = 30.0
STALE_AFTER_S = 600.0
#: How long a job waits for another writer of its artifact before it gives up (env ``CPT_LEASE_WAIT_S``).
DEFAULT_WAIT_S = 6 * 3600.0


def lease_path(artifact_dir: str | os.PathLike[str]) -> Path:
    """The lease file of an artifact directory: ``.<dirname>.lease`` beside it."""
    path = Path(artifact_dir)
    return path.parent / f".{path.name}.lease"


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (``/proc/<pid>/stat`` field 22), None if gone."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _me() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "start": _start_time(os.getpid()),
            "workdir": os.getcwd(), "since": time.time()}


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # being written this instant, or damaged: judged by its heartbeat alone


def holder_alive(path: Path, holder: dict[str, Any]) -> bool:
    """Whether the lease at ``path`` (content ``holder``) still has a live holder (the stale-lease rule)."""
    if holder.get("host") == socket.gethostname() and holder.get("pid"):
        return _start_time(int(holder["pid"])) == holder.get("start")
    try:
        return time.time() - path.stat().st_mtime < STALE_AFTER_S
    except FileNotFoundError:
        return False


def describe(holder: dict[str, Any]) -> str:
    """The holder in words, for messages."""
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder["since"])) if holder.get("since") else "?"
    return f"pid {holder.get('pid', '?')} on {holder.get('host', '?')} (in {holder.get('workdir', '?')}) since {since}"


def _take_over(path: Path, stale: dict[str, Any]) -> None:
    """Move a stale lease aside (only one waiter succeeds); put back a fresh one moved by mistake."""
    aside = path.with_name(f"{path.name}.stale.{os.getpid()}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return
    if _read(aside) == stale:
        log.warning("taking over the lease of %s from %s: its holder is gone", path.name, describe(stale))
        aside.unlink(missing_ok=True)
        return
    with contextlib.suppress(FileExistsError):
        os.link(aside, path)  # a fresh lease, taken between our read and our rename: give it back
    aside.unlink(missing_ok=True)


def _try_create(path: Path, me: dict[str, Any]) -> bool:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as fh:
        fh.write(json.dumps(me))
    return True


@contextlib.contextmanager
def artifact_lease(artifact_dir: str | os.PathLike[str], *, wait_s: float | None = None,
                   poll_s: float = 2.0) -> Iterator[Path]:
    """Hold the lease of ``artifact_dir`` for the duration of the block (waiting for another live holder up to
    ``wait_s``, default ``$CPT_LEASE_WAIT_S`` or :data:`DEFAULT_WAIT_S`); yields the lease file."""
    path = lease_path(artifact_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    wait_s = float(os.environ.get("CPT_LEASE_WAIT_S", DEFAULT_WAIT_S)) if wait_s is None else wait_s
    me = _me()
    start = time.monotonic()
    told = False
    while not _try_create(path, me):
        holder = _read(path)
        if holder is None:
            continue  # released meanwhile
        if not holder_alive(path, holder):
            _take_over(path, holder)
            continue
        if time.monotonic() - start > wait_s:
            raise InputError(str(artifact_dir), f"another job writes this artifact: {describe(holder)}; waited "
                                                f"{wait_s:.0f} s (lease {path}); rerun when it has finished")
        if not told:
            log.info("waiting for %s, which writes %s", describe(holder), artifact_dir)
            told = True
        time.sleep(poll_s)
    log.info("lease of %s taken%s", artifact_dir, f" after {time.monotonic() - start:.0f} s" if told else "")
    stop = threading.Event()

    def heartbeat() -> None:
        while not stop.wait(HEARTBEAT_S):
            with contextlib.suppress(OSError):
                os.utime(path)

    thread = threading.Thread(target=heartbeat, name="lease-heartbeat", daemon=True)
    thread.start()
    try:
        yield path
    finally:
        stop.set()
        if _read(path) == me:  # never remove a lease that was taken over from us
            path.unlink(missing_ok=True)
        log.info("lease of %s released", artifact_dir)
