"""The data stage inside the real workflow: what a dry run plans when the pool grows by one file."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
import yaml
from workflow_utils import plan_in, planned_jobs

pytestmark = pytest.mark.slow


def plan_outputs(workdir: Path, configfile: str) -> dict[str, dict[str, str]]:
    """Stage -> artifact key -> output path, of the plan of ``configfile`` in ``workdir``."""
    plan = plan_in(workdir, configfile)
    stages: dict[str, dict[str, str]] = {}
    for key, art in plan.by_key.items():
        stages.setdefault(art.output.split("/")[1], {})[key] = art.output
    return stages


def test_one_new_pool_file_plans_one_classify_job_and_new_shards(micro_copy: Path) -> None:
    lines = gzip.decompress((micro_copy / "data/demo/pool/pool-02.jsonl.gz").read_bytes()).splitlines(keepends=True)
    new_pool = "data/demo/pool/pool-extra.jsonl.gz"
    (micro_copy / new_pool).write_bytes(gzip.compress(b"".join(lines[:40])))
    cfg = yaml.safe_load((micro_copy / "micro.yaml").read_text())
    cfg["data"]["pool"].append(new_pool)
    (micro_copy / "grown.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))  # keep the seed order

    jobs = planned_jobs(micro_copy, "grown.yaml")
    before, after = plan_outputs(micro_copy, "micro.yaml"), plan_outputs(micro_copy, "grown.yaml")
    new_classified = set(after["classified"]) - set(before["classified"])
    assert len(new_classified) == 1
    (new_key,) = new_classified
    assert f"/pool-extra-{new_key}/" in after["classified"][new_key]
    assert [out for rule, out in jobs if rule == "classify_pool_file"] == [after["classified"][new_key]]
    assert "train_classifier" not in {rule for rule, _ in jobs} and "tokenizer" not in {rule for rule, _ in jobs}
    # Every shards artifact reads every pool file: all get new keys and all are planned.
    assert not set(after["shards"]) & set(before["shards"])
    assert sorted(out for rule, out in jobs if rule == "shards") == sorted(after["shards"].values())
