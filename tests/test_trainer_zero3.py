"""ZeRO-3 (parameters partitioned from construction on) over two gloo processes under torchrun: matches one
plain process, resumes bitwise after a SIGKILL of the whole job, and saves a checkpoint that
``AutoModelForCausalLM.from_pretrained`` loads."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from tiny_shards import SEQ_LEN, make_shards, tiny_spec
from transformers import AutoModelForCausalLM

from cpt_scaling.train.model import build_model, save_model
from cpt_scaling.train.train_log import read_log
from cpt_scaling.train.trainer import train

# Measured: max relative |Δloss| 6e-8 and max |Δweight| 1e-6 between ZeRO-3 on two ranks and ZeRO-0 on one
# (same fp32 math, other reduction order); two ZeRO-3 runs on two ranks are bitwise equal.
TOLERANCE = 1e-5
STEPS = 40
SCRIPT = """import json, sys
from cpt_scaling.core.logs import setup_logging
from cpt_scaling.train.trainer import train
setup_logging()
train(json.loads(open(sys.argv[1]).read()), sys.argv[2])
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("zero3")
    general = make_shards(root / "general", domain=False)
    domain = make_shards(root / "domain", domain=True, seed=1)
    torch.manual_seed(0)
    save_model(build_model(tiny_spec(general, None)["model"], 64, SEQ_LEN), root / "base")
    per_step = 8 * SEQ_LEN
    spec = tiny_spec(general, domain, ratio=0.25, tokens=STEPS * per_step, log_every=1,
                     checkpoint_tokens=[5 * per_step, 20 * per_step], deepspeed={"zero_stage": 3},
                     init={"kind": "checkpoint", "path": str(root / "base")})
    (root / "spec.json").write_text(json.dumps(spec))
    (root / "train.py").write_text(SCRIPT)
    return root, spec


def torchrun(root: Path, out: Path, spec_name: str = "spec.json") -> subprocess.Popen:
    """Two training processes under torchrun, in their own session (so a kill can take the whole job)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(root / "train.py"), str(root / spec_name), str(out)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=(out.parent / f"{out.name}.stderr").open("w"),
                            start_new_session=True)


def finish(proc: subprocess.Popen, out: Path) -> None:
    assert proc.wait(timeout=300) == 0, (out.parent / f"{out.name}.stderr").read_text()[-3000:]


def losses(out: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_log(out / "train_log.jsonl") if r["event"] == "step"}


def kill_job(pid: int) -> None:
    """SIGKILL torchrun and every process under it (its workers run in sessions of their own)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        tree.append(todo.pop())
        todo.extend(children.get(tree[-1], []))
    for p in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)


def test_zero3_two_ranks_match_one_process_resume_after_sigkill_and_load(setup: tuple[Path, dict]) -> None:
    root, spec = setup
    # Two ranks under ZeRO-3, SIGKILLed (torchrun and both ranks) after the first checkpoint, then run again.
    out = root / "two"
    proc = torchrun(root, out)
    first = out / "checkpoints" / f"tokens-{5 * 8 * SEQ_LEN:012d}"
    deadline = time.monotonic() + 240
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    kill_job(proc.pid)
    proc.wait()
    assert first.exists(), (root / "two.stderr").read_text()[-3000:]
    assert not (out / "checkpoints.json").exists(), "the run finished before it could be killed"
    # The rerun turns activation checkpointing on: not part of the resume digest (same weights), so it resumes.
    (root / "spec-checkpointing.json").write_text(json.dumps({**spec, "activation_checkpointing": True}))
    finish(torchrun(root, out, "spec-checkpointing.json"), out)
    one = train({**spec, "deepspeed": {"zero_stage": 0}}, root / "one")  # one plain process

    records = read_log(out / "train_log.jsonl")
    starts = [r for r in records if r["event"] == "start"]
    assert [s["world_size"] for s in starts] == [2, 2] and {s["zero_stage"] for s in starts} == {3}
    assert starts[0]["resumed_from"] is None and starts[1]["resumed_from"] >= 5 * 8 * SEQ_LEN
    assert [s["activation_checkpointing"] for s in starts] == [False, True]
    # Every step of the resumed two-rank run matches the uninterrupted single process: a resume that lost the
    # optimizer state or the data position would be off by ~1e-3 after its first step.
    two_losses, one_losses = losses(out), losses(root / "one")
    assert sorted(two_losses) == sorted(one_losses) == list(range(1, STEPS + 1))
    relative = max(abs(two_losses[s] - one_losses[s]) / abs(one_losses[s]) for s in one_losses)
    assert relative <= TOLERANCE
    two = json.loads((out / "checkpoints.json").read_text())
    assert [c["tokens"] for c in two["checkpoints"]] == [c["tokens"] for c in one["checkpoints"]]
    assert two["n_params"] == one["n_params"]  # counted from ZeRO-3's partitioned parameters too
    weights_two = load_file(out / two["final"] / "model.safetensors")
    weights_one = load_file(root / "one" / one["final"] / "model.safetensors")
    assert weights_two.keys() == weights_one.keys()
    for name, tensor in weights_one.items():
        assert np.allclose(tensor.numpy(), weights_two[name].numpy(), rtol=0, atol=TOLERANCE), name

    # The gathered ZeRO-3 checkpoint is an ordinary HF model directory.
    loaded = AutoModelForCausalLM.from_pretrained(out / two["final"], local_files_only=True)
    for name, tensor in loaded.state_dict().items():
        assert torch.equal(tensor, weights_two[name]), name


def test_zero3_scratch_init_runs_hf_weight_init_on_the_gathered_partitions(setup: tuple[Path, dict],
                                                                           tmp_path: Path) -> None:
    """A from-config model under zero.Init gets HF's N(0, 0.02) init (not torch's default of an empty shard);
    with the optimizer offloaded to CPU (which, on a CPU-only machine, is where it already is)."""
    spec = setup[1]
    scratch = {**spec, "init": {"kind": "scratch"}, "tokens": 2 * 8 * SEQ_LEN, "checkpoint_tokens": [0],
               "deepspeed": {"zero_stage": 3, "offload_optimizer": True}}
    result = train(scratch, tmp_path / "run")
    initial = load_file(tmp_path / "run" / result["checkpoints"][0]["path"] / "model.safetensors")
    std = float(initial["model.layers.0.mlp.down_proj.weight"].std())
    assert abs(std - 0.02) < 0.003, std  # torch's default (kaiming-uniform) init would give ~0.07 here
    start = read_log(tmp_path / "run" / "train_log.jsonl")[0]
    assert start["zero_stage"] == 3 and start["offload_optimizer"] is True


def test_zero3_resumable_state_is_per_rank_partitions_and_resumes_bitwise(setup: tuple[Path, dict]) -> None:
    """Must-show 2: a resumable ZeRO-3 state holds each rank's shard only (no gathered weights), a save killed
    before its rename leaves the previous state loadable, and the resumed run equals an uninterrupted one."""
    from cpt_scaling.train.checkpoints import load_rank_state

    root, spec = setup
    per_step = 8 * SEQ_LEN
    short = {**spec, "tokens": 6 * per_step, "checkpoint_tokens": []}
    (root / "short.json").write_text(json.dumps(short))
    (root / "short-stop.json").write_text(json.dumps({**short, "stop_at": 1.0}))  # stops after its first step
    finish(torchrun(root, root / "whole", "short.json"), root / "whole")
    out = root / "stopped"
    torchrun(root, out, "short-stop.json").wait(timeout=300)
    resume = out / "resume" / f"tokens-{per_step:012d}"
    assert (resume / "train_state" / "state.json").is_file(), (root / "stopped.stderr").read_text()[-3000:]
    assert json.loads((resume / "train_state" / "state.json").read_text())["sharded"] is True
    assert not (resume / "model.safetensors").exists() and (resume / "config.json").is_file()

    n_params = json.loads((root / "whole" / "checkpoints.json").read_text())["n_params"]
    for rank in (0, 1):
        # CPU (fp32): the rank's parameter partition, fp32 master and two Adam moments, 4 + 4 + 8 bytes per
        # parameter of its half; a gathered copy of the weights would add 4 bytes per parameter of the whole.
        size = (resume / "train_state" / f"rank-{rank:05d}.safetensors").stat().st_size
        assert abs(size - 16 * n_params / 2) < 0.1 * 16 * n_params / 2, (rank, size, n_params)
        parts = load_rank_state(resume, rank)["params"]
        assert sum(t.numel() for t in parts.values()) < 0.55 * n_params
    save = [r for r in read_log(out / "train_log.jsonl") if r["event"] == "save"]
    assert len(save) == 1 and save[0]["resumable"] and save[0]["seconds"] > 0

    # A later save killed before its rename: a staging directory with a truncated rank file.
    staging = out / "resume" / f".tokens-{2 * per_step:012d}.staging"
    (staging / "train_state").mkdir(parents=True)
    (staging / "train_state" / "rank-00000.safetensors").write_bytes(b"\0" * 100)
    finish(torchrun(root, out, "short.json"), out)
    starts = [r for r in read_log(out / "train_log.jsonl") if r["event"] == "start"]
    assert [s["resumed_from"] for s in starts] == [None, per_step]
    assert losses(out) == losses(root / "whole")  # bitwise: the same floats
    final = json.loads((out / "checkpoints.json").read_text())["final"]
    resumed = load_file(out / final / "model.safetensors")
    whole = load_file(root / "whole" / final / "model.safetensors")
    assert resumed.keys() == whole.keys() and all(torch.equal(resumed[k], whole[k]) for k in whole)
