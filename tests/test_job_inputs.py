"""A job's inputs are derived from the references in its job description (plan.artifact.Ref), so a path a job reads
cannot be missing from what Snakemake makes first."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from test_wsd_workflow import branch_config
from workflow_utils import REPO, plan_in

from cpt_scaling.plan.sweep import Plan


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in _strings(v)]
    return []


def _plan(config: str, tmp_path: Path) -> Plan:
    if config == "branches":  # WSD curves (pretraining, CPT) and split curves off the pretraining trunk
        micro = yaml.safe_load((REPO / "tests" / "configs" / "micro.yaml").read_text())
        (tmp_path / "branches.yaml").write_text(yaml.safe_dump(branch_config(micro, [65536, 262144])))
        config = str(tmp_path / "branches.yaml")
    return plan_in(REPO, config)


@pytest.mark.parametrize("config", ["tests/configs/micro.yaml", "config/demo.yaml", "branches"])
def test_every_artifact_a_job_names_is_one_of_its_inputs(config: str, tmp_path: Path) -> None:
    plan = _plan(config, tmp_path)
    by_dir = {a.dir: a for a in plan.by_key.values()}
    outputs = {a.output for a in plan.by_key.values()}
    for art in plan.by_key.values():
        # Paths below <artifacts>/<stage>/<name>-<key>/: the artifact directories (or files) the job reads.
        dirs = {"/".join(s.split("/")[:3]) for s in _strings(art.job_data)}
        named = {by_dir[d].output for d in dirs if d in by_dir and d != art.dir}
        if art.stage == "train":  # the tokenizer reaches training through its shards (their input)
            named.discard(plan.tokenizer.output)
        assert named <= set(art.inputs), (art.name, art.inputs)
        # Every input is another artifact's main output or a raw file of the config (which exists here).
        for path in art.inputs:
            assert path in outputs or (REPO / path).exists(), (art.name, path)
    assert sum(len(a.inputs) for a in plan.by_key.values()) > len(plan.by_key)
