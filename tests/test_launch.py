"""Multi-process launch: `cpt-scaling train` under torchrun (as the workflow starts it) matches one process."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file
from tiny_shards import SEQ_LEN, make_shards, tiny_spec

from cpt_scaling.core.errors import InputError
from cpt_scaling.cost.resources import STOP_SLACK_SECONDS
from cpt_scaling.train.launch import SAVE_TIME_FACTOR, launch_command, run_training, stop_margin


def test_single_node_command_uses_torchrun_standalone(tmp_path: Path) -> None:
    cmd = launch_command(tmp_path / "s.json", tmp_path / "o", processes_per_node=4, nodes=1)
    assert "--standalone" in cmd and cmd[cmd.index("--nproc_per_node") + 1] == "4"
    assert cmd[-6:] == ["cpt_scaling.cli", "train", "--spec", str(tmp_path / "s.json"), "--out", str(tmp_path / "o")]


def test_multi_node_command_runs_one_torchrun_per_node_under_srun(tmp_path: Path) -> None:
    cmd = launch_command(tmp_path / "s.json", tmp_path / "o", processes_per_node=8, nodes=2, cpus_per_task=64)
    # Slurm >= 22.05: a step does not inherit the job's --cpus-per-task, so the srun step must pass it.
    assert cmd[:4] == ["srun", "--nodes=2", "--ntasks-per-node=1", "--cpus-per-task=64"]
    assert cmd[cmd.index("--nnodes") + 1] == "2" and "--rdzv-backend" in cmd and "--standalone" not in cmd


def test_two_processes_through_the_launcher_match_one(tmp_path: Path) -> None:
    general = make_shards(tmp_path / "general", domain=False)
    domain = make_shards(tmp_path / "domain", domain=True, seed=1)
    spec = tiny_spec(general, domain, ratio=0.5, tokens=12 * 8 * SEQ_LEN, checkpoint_tokens=[],
                     deepspeed={"zero_stage": 2})
    run_training(spec, tmp_path / "two", processes_per_node=2)
    run_training(spec, tmp_path / "one")
    final = json.loads((tmp_path / "two" / "checkpoints.json").read_text())["final"]
    assert final == json.loads((tmp_path / "one" / "checkpoints.json").read_text())["final"]
    two = load_file(tmp_path / "two" / final / "model.safetensors")
    one = load_file(tmp_path / "one" / final / "model.safetensors")
    for name, tensor in one.items():
        assert np.allclose(tensor.numpy(), two[name].numpy(), rtol=0, atol=1e-5), name


def test_multi_node_command_takes_the_cpus_of_the_allocation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "48")
    cmd = launch_command(tmp_path / "s.json", tmp_path / "o", processes_per_node=8, nodes=2)
    assert "--cpus-per-task=48" in cmd[:cmd.index(sys.executable)]
    monkeypatch.delenv("SLURM_CPUS_PER_TASK")
    with pytest.raises(InputError, match="cpus_per_task"):
        launch_command(tmp_path / "s.json", tmp_path / "o", processes_per_node=8, nodes=2)


def test_stop_margin_grows_to_the_longest_logged_save(tmp_path: Path) -> None:
    assert stop_margin(tmp_path, 300) == 300  # nothing logged yet: the cost model's margin
    records = [{"event": "save", "step": 10, "resumable": True, "seconds": 400.0},
               {"event": "save", "step": 20, "resumable": False, "seconds": 900.0},  # an evaluation checkpoint
               {"event": "step", "step": 20, "loss": 1.0}]
    (tmp_path / "train_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert stop_margin(tmp_path, 300) == math.ceil(SAVE_TIME_FACTOR * 400) + STOP_SLACK_SECONDS
    assert stop_margin(tmp_path, 5000) == 5000  # never below the modelled one
    # ... and at most a quarter of the job's limit, like the modelled one: a 1-minute job still trains 45 s
    assert stop_margin(tmp_path, 15, limit_minutes=1) == 15
    assert stop_margin(tmp_path, 300, limit_minutes=60) == math.ceil(SAVE_TIME_FACTOR * 400) + STOP_SLACK_SECONDS
    assert stop_margin(tmp_path, 300, limit_minutes=20) == 300  # a quarter of 20 minutes: the modelled 300 s
