"""Activation checkpointing: the same losses as without it, and a lower measured peak memory (CPU, fp32)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from tiny_shards import make_shards, tiny_spec

from cpt_scaling.train.train_log import read_log

# The training process's own peak resident set (VmHWM), not its process tree's: DeepSpeed may build or load its
# CPU op through a compiler subprocess whose peak (~1.5 GB, seen in a fresh venv) would hide the training's.
TRAIN_SCRIPT = (
    "import json, sys\n"
    "from cpt_scaling.train.trainer import train\n"
    "train(json.loads(open(sys.argv[1]).read()), sys.argv[2])\n"
    "hwm = next(l for l in open('/proc/self/status') if l.startswith('VmHWM:'))\n"
    "print(int(hwm.split()[1]) / 1024)\n"
)
SEQ_LEN, BATCH, STEPS = 256, 4, 10
# 8 blocks of d=128 at 4 × 256 tokens: ~10 MB of saved activations per block without checkpointing, one
# block's worth plus the block inputs with it. Measured: 744 MB vs 668 MB peak RSS (76 MB less).
MODEL = {"n_layers": 8, "d_model": 128, "n_heads": 4, "d_ff": 256}
MIN_SAVING_MB = 25


def peak_rss_mb(spec: dict, out: Path) -> float:
    """Train ``spec`` in a fresh process; that process's peak resident memory in MB (its VmHWM)."""
    spec_file = out.with_suffix(".json")
    spec_file.write_text(json.dumps(spec))
    result = subprocess.run([sys.executable, "-c", TRAIN_SCRIPT, str(spec_file), str(out)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return float(result.stdout.strip().splitlines()[-1])


def test_activation_checkpointing_same_losses_less_memory(tmp_path: Path) -> None:
    general = make_shards(tmp_path / "general", domain=False, n_train=48, seq_len=SEQ_LEN)
    base = tiny_spec(general, None, tokens=STEPS * BATCH * SEQ_LEN, seq_len=SEQ_LEN, batch_size=BATCH,
                     micro_batch_size=BATCH, model=MODEL, log_every=1)
    peak = {}
    losses = {}
    for checkpointing in (False, True):
        out = tmp_path / f"checkpointing-{checkpointing}"
        peak[checkpointing] = peak_rss_mb({**base, "activation_checkpointing": checkpointing}, out)
        records = read_log(out / "train_log.jsonl")
        assert records[0]["activation_checkpointing"] is checkpointing
        losses[checkpointing] = np.array([r["loss"] for r in records if r["event"] == "step"])
    assert len(losses[True]) == len(losses[False]) == STEPS
    relative = np.abs(losses[True] - losses[False]) / np.abs(losses[False])
    assert relative.max() <= 1e-6, relative
    assert peak[True] <= peak[False] - MIN_SAVING_MB, peak
