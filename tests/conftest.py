"""Shared fixtures: a finished micro sweep in a scratch working directory, reused by the workflow tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from workflow_utils import REPO, run_snakemake


def make_workdir(root: Path) -> Path:
    """A scratch working directory with a copy of the demo data and the micro config."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(REPO / "data" / "demo", root / "data" / "demo")
    shutil.copy(REPO / "tests" / "configs" / "micro.yaml", root / "micro.yaml")
    return root


@pytest.fixture(scope="session")
def micro_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The micro sweep, run once to completion; tests must not modify it (copy it first)."""
    workdir = make_workdir(tmp_path_factory.mktemp("micro"))
    result = run_snakemake(workdir, "micro.yaml")
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    return workdir


@pytest.fixture
def micro_copy(micro_run: Path, tmp_path: Path) -> Path:
    """A private copy of the finished micro sweep (Snakemake metadata included), free to modify."""
    dest = tmp_path / "w"
    shutil.copytree(micro_run, dest, symlinks=True)
    return dest
