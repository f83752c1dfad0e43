"""The stop-and-resubmit protocol of a training job: its exit status, marker file, stop signals and the exception
a run raises when it stops at a step boundary with a resumable checkpoint."""

from __future__ import annotations

import signal
import threading
from typing import Any

#: Exit status of a training job that stopped itself for a resubmission (a signal, its own deadline) after writing
#: a resumable checkpoint: EX_TEMPFAIL, "try again". The workflow resubmits it (rules/train.smk retries).
RESUBMIT_EXIT_CODE = 75
#: Written by rank 0 next to the run when it stops for a resubmission (what a launcher of several processes reads).
RESUBMIT_MARKER = "resubmit.json"
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class Resubmit(SystemExit):
    """Training stopped at a step boundary with a resumable checkpoint; exit :data:`RESUBMIT_EXIT_CODE`."""

    def __init__(self, step: int, reason: str) -> None:
        super().__init__(RESUBMIT_EXIT_CODE)
        self.step, self.reason = step, reason


class StopSignals:
    """While training: SIGTERM/SIGUSR1 only note that the job should stop (at the next step boundary)."""

    def __init__(self) -> None:
        self.received: str | None = None
        self._old: dict[int, Any] = {}

    def _note(self, signum: int, _frame: Any) -> None:
        self.received = signal.Signals(signum).name

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._old[sig] = signal.signal(sig, self._note)
        return self

    def __exit__(self, *_exc: object) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
