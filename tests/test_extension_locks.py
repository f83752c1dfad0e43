"""Stale PyTorch extension build locks are cleared before training; live ones are left alone."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from cpt_scaling.train.extension_locks import STALE_AFTER_S, clear_stale_locks, extensions_root


def _lock(path: Path, age_s: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    then = time.time() - age_s
    os.utime(path, (then, then))
    return path


def test_only_locks_older_than_a_build_are_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    assert extensions_root() == tmp_path
    stale = _lock(tmp_path / "deepspeed_shm_comm" / "lock", STALE_AFTER_S + 60)
    nested = _lock(tmp_path / "py311_cpu" / "cpu_adam" / "lock", 10 * STALE_AFTER_S)
    live = _lock(tmp_path / "fused_adam" / "lock", 30)
    library = _lock(tmp_path / "deepspeed_shm_comm" / "deepspeed_shm_comm.so", 10 * STALE_AFTER_S)
    assert sorted(clear_stale_locks()) == sorted([stale, nested])
    assert not stale.exists() and not nested.exists()
    assert live.exists() and library.exists()
    assert clear_stale_locks() == []


def test_default_root_is_torchs(monkeypatch: pytest.MonkeyPatch) -> None:
    from torch.utils.cpp_extension import get_default_build_root

    monkeypatch.delenv("TORCH_EXTENSIONS_DIR", raising=False)
    assert extensions_root() == Path(get_default_build_root())


def test_watcher_clears_a_lock_once_it_goes_stale(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A lock that is fresh when the job starts (its owner died moments ago) is cleared once it is old enough."""
    import cpt_scaling.train.extension_locks as locks

    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    monkeypatch.setattr(locks, "_watcher", None)
    lock = _lock(tmp_path / "deepspeed_shm_comm" / "lock", 0)
    stop = locks.watch_stale_locks(interval_s=0.05, max_age_s=0.5)
    try:
        assert lock.exists()
        deadline = time.monotonic() + 10
        while lock.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not lock.exists()
    finally:
        stop.set()


def test_each_environment_builds_into_a_root_of_its_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two environments never share a build directory (they would recompile the op at every switch); a root the
    user set is kept."""
    from torch.utils.cpp_extension import get_default_build_root

    from cpt_scaling.train.extension_locks import use_environment_build_root

    roots = []
    for prefix in (tmp_path / "venv-a", tmp_path / "venv-b", tmp_path / "venv-a"):
        monkeypatch.delenv("TORCH_EXTENSIONS_DIR", raising=False)
        roots.append(use_environment_build_root(str(prefix)))
        assert os.environ["TORCH_EXTENSIONS_DIR"] == str(roots[-1])
        assert roots[-1].parent == Path(get_default_build_root())
    assert roots[0] != roots[1] and roots[0] == roots[2]
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "mine"))
    assert use_environment_build_root(str(tmp_path / "venv-a")) == tmp_path / "mine"
