"""Determinism: a second clean run of the micro sweep, in a fresh directory, equals the session run.

Tolerance: none. The eval table is compared with ``check_exact=True`` and law JSON for equality, then every
file under ``artifacts/`` and ``results/`` byte for byte (Parquet, JSON, CSV, safetensors, fastText, PDF): on
one machine, with the pinned libraries, every stage is seeded and single-threaded per job (``training.threads``,
fastText ``thread=1``), so only the training logs' wall-clock fields may differ (their step records must not).
Across machines, thread counts or library versions floats may differ in the last bits; this test does not
claim otherwise.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import make_workdir
from reliability_utils import assert_same_products
from workflow_utils import run_snakemake

pytestmark = pytest.mark.slow


def test_two_clean_runs_give_identical_products(micro_run: Path, tmp_path: Path) -> None:
    workdir = make_workdir(tmp_path / "again")
    result = run_snakemake(workdir, "micro.yaml")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert_same_products(workdir, micro_run)
