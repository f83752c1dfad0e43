"""Two-process data parallelism (ZeRO-2 over gloo, launched by torchrun) matches the single-process run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from safetensors.torch import load_file
from tiny_shards import SEQ_LEN, make_shards, tiny_spec

from cpt_scaling.train.train_log import read_log
from cpt_scaling.train.trainer import train

# Measured: the two curves and final weights are bitwise equal (max |Δloss| = 0.0, max |Δweight| = 0.0);
# the tolerances below leave room for other CPUs' reduction order.
LOSS_TOLERANCE = 1e-5
WEIGHT_TOLERANCE = 1e-5

SCRIPT = """import json, sys
from cpt_scaling.core.logs import setup_logging
from cpt_scaling.train.trainer import train
setup_logging()
train(json.loads(open(sys.argv[1]).read()), sys.argv[2])
"""


def test_two_process_zero2_matches_one_process(tmp_path: Path) -> None:
    general = make_shards(tmp_path / "general", domain=False)
    domain = make_shards(tmp_path / "domain", domain=True, seed=1)
    per_step = 8 * SEQ_LEN
    spec = tiny_spec(general, domain, ratio=0.25, tokens=30 * per_step, checkpoint_tokens=[10 * per_step],
                     deepspeed={"zero_stage": 2}, log_every=1)
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    (tmp_path / "train.py").write_text(SCRIPT)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(tmp_path / "train.py"), str(tmp_path / "spec.json"), str(tmp_path / "two")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    one = train(spec, tmp_path / "one")

    two = json.loads((tmp_path / "two" / "checkpoints.json").read_text())
    assert [c["tokens"] for c in two["checkpoints"]] == [c["tokens"] for c in one["checkpoints"]]
    records = read_log(tmp_path / "two" / "train_log.jsonl")
    assert records[0]["world_size"] == 2 and records[0]["zero_stage"] == 2
    curve_two = [r["loss"] for r in records if r["event"] == "step"]
    curve_one = [r["loss"] for r in read_log(tmp_path / "one" / "train_log.jsonl") if r["event"] == "step"]
    assert len(curve_one) == len(curve_two) == 30
    assert np.max(np.abs(np.array(curve_one) - np.array(curve_two))) <= LOSS_TOLERANCE
    weights_one = load_file(tmp_path / "one" / one["final"] / "model.safetensors")
    weights_two = load_file(tmp_path / "two" / two["final"] / "model.safetensors")
    for name, tensor in weights_one.items():
        assert np.allclose(tensor.numpy(), weights_two[name].numpy(), rtol=0, atol=WEIGHT_TOLERANCE), name
