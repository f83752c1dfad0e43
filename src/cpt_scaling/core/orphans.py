"""A job whose Snakemake is gone stops instead of writing on.

``kill -9`` of a Snakemake process leaves its jobs running (they are its children, not killed with it); a rerun
would then start beside them. :func:`stop_when_orphaned` watches the job's parent from a daemon thread and, once
the process has been re-parented (its parent died), sends it ``SIGUSR1``: a training job's launcher forwards that
to the trainer, which stops at its next step boundary with a resumable checkpoint (the preemption path); any other
job ends (its writes are atomic, so nothing partial is left) and its lease is released by the exit.
"""

from __future__ import annotations

import logging
import os
import signal
import threading

log = logging.getLogger(__name__)

POLL_S = 1.0


def stop_when_orphaned(poll_s: float = POLL_S) -> threading.Event:
    """Start the watcher (daemon thread); returns the event that stops it."""
    parent = os.getppid()
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(poll_s):
            if os.getppid() != parent:
                log.warning("the process that started this job (pid %d) is gone: stopping (SIGUSR1)", parent)
                os.kill(os.getpid(), signal.SIGUSR1)
                return

    threading.Thread(target=watch, name="orphan-watch", daemon=True).start()
    return stop
