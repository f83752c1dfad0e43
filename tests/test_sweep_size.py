"""The parse counts a sweep's jobs before Snakemake builds its DAG, and warns of a large sweep naming its
dimensions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from workflow_utils import REPO

from cpt_scaling.config.load import normalise_config, read_config_file
from cpt_scaling.plan.sweep import build_plan


@pytest.fixture
def micro(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.chdir(REPO)
    return read_config_file(REPO / "tests" / "configs" / "micro.yaml")


def test_the_parse_counts_the_jobs_and_warns_of_a_large_sweep(micro: dict[str, Any], tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from cpt_scaling.plan import queries

    plan = build_plan(normalise_config(micro, "micro.yaml"), tmp_path / "digests.json")
    line, warning = plan.size_summary()
    total = len(plan.by_key)
    assert line.startswith(f"this config plans {total:,} artifact jobs (") and warning is None
    monkeypatch.setattr(queries, "LARGE_SWEEP_JOBS", total - 1)
    _, warning = plan.size_summary()
    assert warning is not None and warning.startswith(f"large sweep: {total:,} jobs (more than {total - 1:,}) from 2 "
                                                      "sizes x 6 (domain, ratio) pairs x 1 CPT budgets")
