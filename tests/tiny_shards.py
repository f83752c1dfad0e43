"""Tiny synthetic shard directories in the `cpt_scaling.data.shards` format, for the training and evaluation tests.

General sequences use token ids in [0, vocab/2), domain sequences ids in [vocab/2, vocab), so the source of
any row is visible. Each sequence is an arithmetic progression modulo the half-vocabulary (easy to learn).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cpt_scaling.data.shards import write_token_file

VOCAB = 64
SEQ_LEN = 32
# ``python -c TRAIN_SCRIPT SPEC_JSON OUT_DIR``: one training run in a fresh process (kill and signal tests).
TRAIN_SCRIPT = (
    "import json, sys\n"
    "from cpt_scaling.core.logs import setup_logging\n"
    "from cpt_scaling.train.trainer import train\n"
    "setup_logging()\n"
    "train(json.loads(open(sys.argv[1]).read()), sys.argv[2])\n"
)


def sequences(n: int, *, domain: bool, seed: int, seq_len: int = SEQ_LEN, vocab: int = VOCAB) -> np.ndarray:
    """``n`` learnable sequences of one source."""
    half = vocab // 2
    rng = np.random.default_rng(seed)
    start = rng.integers(0, half, size=(n, 1))
    stride = rng.choice([1, 2, 3] if not domain else [5, 7], size=(n, 1))
    rows = (start + stride * np.arange(seq_len)) % half
    return (rows + (half if domain else 0)).astype(np.int32)


def write_parquet(path: Path, rows: np.ndarray) -> None:
    """Write rows as a ``list<int32>`` column ``input_ids``."""
    column = pa.array([r.tolist() for r in rows], type=pa.list_(pa.int32()))
    pq.write_table(pa.table({"input_ids": column}), path)


def make_shards(
    directory: Path, *, domain: bool, n_train: int = 96, n_heldout: int = 16, n_files: int = 2, seed: int = 0,
    seq_len: int = SEQ_LEN,
) -> Path:
    """A shard directory: ``n_files`` Parquet train shards, the token file ``train.u32``, ``heldout.parquet``
    and ``manifest.json``."""
    directory.mkdir(parents=True, exist_ok=True)
    train = sequences(n_train, domain=domain, seed=seed, seq_len=seq_len)
    shards = []
    for i, part in enumerate(np.array_split(train, n_files)):
        name = f"train-{i:05d}.parquet"
        write_parquet(directory / name, part)
        shards.append({"file": name, "n_sequences": len(part), "n_tokens": int(part.size)})
    tokens = write_token_file(directory / "train.u32", train)
    write_parquet(directory / "heldout.parquet", sequences(n_heldout, domain=domain, seed=seed + 1000, seq_len=seq_len))
    manifest = {
        "seq_len": seq_len,
        "vocab_size": VOCAB,
        "token_dtype": "uint32",
        "train": {"n_tokens": int(train.size), "n_sequences": len(train), "shards": shards,
                  "token_file": tokens["token_file"], "max_token_id": tokens["max_token_id"]},
    }
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return directory


def tiny_spec(general: Path, domain: Path | None, *, ratio: float = 0.0, tokens: int = 40 * 8 * SEQ_LEN,
              **overrides: object) -> dict:
    """A training spec for a 2-layer d=32 model on the tiny shards (8 sequences per step)."""
    spec = {
        "model": {"n_layers": 2, "d_model": 32, "n_heads": 4, "d_ff": 64},
        "vocab_size": VOCAB,
        "seq_len": SEQ_LEN,
        "init": {"kind": "scratch"},
        "general_shards": str(general),
        "domain_shards": str(domain) if domain is not None else None,
        "ratio": ratio,
        "tokens": tokens,
        "batch_size": 8,
        "micro_batch_size": 4,
        "optimizer": {"lr": 3e-3, "min_lr_ratio": 0.1, "weight_decay": 0.1, "beta1": 0.9, "beta2": 0.95,
                      "warmup_fraction": 0.1, "schedule": "cosine", "grad_clip": 1.0},
        "checkpoint_tokens": [],
        "seed": 0,
        "threads": 1,
        "deepspeed": {"zero_stage": 0},
        "log_every": 5,
    }
    spec.update(overrides)
    return spec
