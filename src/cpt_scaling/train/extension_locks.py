"""Stale build locks of PyTorch JIT extensions (DeepSpeed compiles its CPU communication op this way).

torch guards each extension's build directory with a ``lock`` file and, while the file exists, every other
process that loads the extension polls forever, even when the compiled library is already there. A training job
killed while holding it (preemption, the OOM killer, a SIGKILL during the first ~40 s build) would leave every
later training job on that machine hanging. So before DeepSpeed loads its ops, locks older than any real build
are removed, and a watcher thread keeps doing so while the job runs: a job that came upon a lock whose owner died
moments ago waits ``STALE_AFTER_S`` at most, not forever.

Each Python environment also builds into a root of its own (:func:`use_environment_build_root`): torch keys a
build directory by the extension's name alone, so two environments sharing one home directory (two virtual
environments, a clone's and an installed one) would rewrite each other's build files and recompile the op at every
switch (~2 minutes of compiler on 2 cores each time).
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)

STALE_AFTER_S = 900.0  # an op build takes ~40 s on 2 CPU cores; a lock this old belongs to a dead process
_watcher: tuple[threading.Thread, threading.Event] | None = None


def extensions_root() -> Path:
    """Where torch builds JIT extensions: ``$TORCH_EXTENSIONS_DIR`` or its per-user default cache."""
    root = os.environ.get("TORCH_EXTENSIONS_DIR")
    if root:
        return Path(root)
    from torch.utils.cpp_extension import get_default_build_root

    return Path(get_default_build_root())


def use_environment_build_root(prefix: str | None = None) -> Path:
    """Unless ``$TORCH_EXTENSIONS_DIR`` is set, set it to ``<torch's default root>/env-<digest of the environment's
    prefix>`` (``sys.prefix`` unless given), so each environment keeps its own compiled ops; return the root used."""
    if not os.environ.get("TORCH_EXTENSIONS_DIR"):
        from torch.utils.cpp_extension import get_default_build_root

        env = hashlib.sha256(str(Path(prefix or sys.prefix).resolve()).encode()).hexdigest()[:12]
        os.environ["TORCH_EXTENSIONS_DIR"] = str(Path(get_default_build_root()) / f"env-{env}")
    return extensions_root()


def clear_stale_locks(max_age_s: float = STALE_AFTER_S, root: Path | None = None) -> list[Path]:
    """Remove extension build locks older than ``max_age_s``; return the ones removed (each logged)."""
    root = extensions_root() if root is None else root
    now = time.time()
    removed = []
    # <root>/<extension>/lock with $TORCH_EXTENSIONS_DIR, <root>/<python>_<accelerator>/<extension>/lock otherwise
    for lock in [*root.glob("*/lock"), *root.glob("*/*/lock")]:
        try:
            age = now - lock.stat().st_mtime
            if age <= max_age_s:
                continue
            lock.unlink()
        except FileNotFoundError:  # released meanwhile
            continue
        log.warning("removed a stale PyTorch extension build lock (%.0f s old, its process is gone): %s", age, lock)
        removed.append(lock)
    return removed


def watch_stale_locks(interval_s: float = 30.0, max_age_s: float = STALE_AFTER_S) -> threading.Event:
    """Clear stale locks now, then every ``interval_s`` from a daemon thread for the rest of the process (one per
    process, on the extensions root of its start; torch's lock wait sleeps between polls, so the thread runs).
    Returns the event that stops the watcher."""
    global _watcher
    root = extensions_root()
    clear_stale_locks(max_age_s, root)
    if _watcher is not None and _watcher[0].is_alive():
        return _watcher[1]
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(interval_s):
            try:
                clear_stale_locks(max_age_s, root)
            except OSError as exc:  # e.g. the cache directory vanished: keep watching
                log.debug("extension lock check failed: %s", exc)

    thread = threading.Thread(target=run, name="extension-lock-watch", daemon=True)
    thread.start()
    _watcher = (thread, stop)
    return stop
