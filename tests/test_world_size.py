"""Resuming a ZeRO-2 run on another number of ranks (real DeepSpeed and torchrun on CPU, gloo).

A 2-rank run stopped by SIGUSR1 (sent to the launcher, which forwards it to its torchrun workers) resumes on 1
rank, and a 1-rank run resumes on 2. The restored weights and optimizer state are exact, so the first step after
the resume logs the uninterrupted run's loss bit for bit. After it, a world-size change can only reorder how
gradients are summed (per rank over micro-batches, then over ranks): between 1 and 2 ranks (each rank one
micro-batch of 4 here) that is a sum of two fp32 terms, which does not depend on the order, so the whole run is
bitwise equal (measured: 0.0 loss and weight difference); with more terms summed in another order the stated
tolerance is ``LOSS_TOLERANCE`` / ``WEIGHT_TOLERANCE`` (absolute, fp32).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file
from tiny_shards import SEQ_LEN, make_shards, tiny_spec

from cpt_scaling.train import checkpoints as ckpt
from cpt_scaling.train.launch import run_training
from cpt_scaling.train.resubmit import RESUBMIT_EXIT_CODE
from cpt_scaling.train.train_log import read_log
from cpt_scaling.train.trainer import train

pytestmark = pytest.mark.slow

PER_STEP = 8 * SEQ_LEN
STEPS = 60
#: Stated tolerances of a world-size change (absolute; fp32 on CPU, 2-layer d=32 model, 60 steps).
LOSS_TOLERANCE = 1e-4
WEIGHT_TOLERANCE = 1e-4
LAUNCH = (
    "import json, sys\n"
    "from pathlib import Path\n"
    "from cpt_scaling.core.logs import setup_logging\n"
    "from cpt_scaling.train.launch import run_training\n"
    "setup_logging()\n"
    "run_training(json.loads(open(sys.argv[1]).read()), Path(sys.argv[2]), processes_per_node=int(sys.argv[3]))\n"
)


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("shards")
    general, domain = make_shards(root / "general", domain=False), make_shards(root / "domain", domain=True, seed=1)
    return tiny_spec(general, domain, ratio=0.25, tokens=STEPS * PER_STEP, log_every=1,
                     checkpoint_tokens=[10 * PER_STEP], deepspeed={"zero_stage": 2}, threads=1)


def losses(run: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_log(run / "train_log.jsonl") if r["event"] == "step"}


def stop_mid_run(spec: dict, out: Path, ranks: int, tmp: Path) -> int:
    """Run on ``ranks`` processes through the launcher, SIGUSR1 it after the step-10 checkpoint; the step it
    stopped at."""
    spec_file = tmp / f"{out.name}.json"
    spec_file.write_text(json.dumps(spec))
    err = (tmp / f"{out.name}.stderr").open("w")
    proc = subprocess.Popen([sys.executable, "-c", LAUNCH, str(spec_file), str(out), str(ranks)],
                            env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.monotonic() + 300
    while max(losses(out), default=0) < 15:
        assert proc.poll() is None and time.monotonic() < deadline, (tmp / f"{out.name}.stderr").read_text()[-3000:]
        time.sleep(0.01)
    proc.send_signal(signal.SIGUSR1)
    assert proc.wait(timeout=300) == RESUBMIT_EXIT_CODE, (tmp / f"{out.name}.stderr").read_text()[-3000:]
    [(tokens, path)] = ckpt.complete_checkpoints(out, ckpt.RESUME_DIR)
    state = json.loads((path / ckpt.TRAIN_STATE / "state.json").read_text())
    assert state["world_size"] == ranks and len(list((path / ckpt.TRAIN_STATE).glob("rank-*.safetensors"))) == ranks
    return tokens // PER_STEP


def compare(resumed: Path, reference: Path, stopped: int, label: str) -> tuple[float, float]:
    got, want = losses(resumed), losses(reference)
    assert sorted(got) == sorted(want) == list(range(1, STEPS + 1))
    assert got[stopped + 1] == want[stopped + 1], "the first step after the resume starts from the exact state"
    loss_diff = max(abs(got[s] - want[s]) for s in want)
    final = f"checkpoints/{ckpt.checkpoint_name(STEPS * PER_STEP)}/model.safetensors"
    a, b = load_file(resumed / final), load_file(reference / final)
    weight_diff = max(float(np.abs(a[k].numpy() - b[k].numpy()).max()) for k in b)
    print(f"{label}: stopped at step {stopped}, final loss {got[STEPS]:.8f} vs {want[STEPS]:.8f}, "
          f"max |loss diff| {loss_diff:.2e}, max |weight diff| {weight_diff:.2e}")
    assert loss_diff <= LOSS_TOLERANCE and weight_diff <= WEIGHT_TOLERANCE, (loss_diff, weight_diff)
    assert loss_diff == weight_diff == 0.0, "1 <-> 2 ranks: a sum of two terms, bitwise equal"
    starts = [r for r in read_log(resumed / "train_log.jsonl") if r["event"] == "start"]
    assert [s["world_size"] for s in starts] == ([2, 1] if "2 -> 1" in label else [1, 2])
    return loss_diff, weight_diff


def test_zero2_from_2_ranks_to_1_and_from_1_to_2(spec: dict, tmp_path: Path) -> None:
    ref2, ref1 = tmp_path / "ref2", tmp_path / "ref1"
    run_training(spec, ref2, processes_per_node=2)
    train(spec, ref1)

    two_to_one = tmp_path / "two_to_one"
    stopped = stop_mid_run(spec, two_to_one, 2, tmp_path)
    train(spec, two_to_one)  # the resubmission on 1 rank
    compare(two_to_one, ref2, stopped, "ZeRO-2 2 -> 1 ranks")

    one_to_two = tmp_path / "one_to_two"
    stopped = stop_mid_run(spec, one_to_two, 1, tmp_path)
    run_training(spec, one_to_two, processes_per_node=2)  # the resubmission on 2 ranks
    compare(one_to_two, ref1, stopped, "ZeRO-2 1 -> 2 ranks")
    # Across world sizes the uninterrupted runs themselves differ only by the summation order too.
    ref_diff = max(abs(losses(ref1)[s] - losses(ref2)[s]) for s in range(1, STEPS + 1))
    print(f"uninterrupted 1 vs 2 ranks: max |loss diff| {ref_diff:.2e}")
