"""Throughput of ``cpt_scaling.train.trainer.train`` (DeepSpeed) against a plain PyTorch loop on the same batches.

Model: 2 layers, d_model 64, 2 heads, d_ff 256, vocab 2048 (the demo's "s" size); seq_len 128, batch 16
(one micro-batch), 1 thread, fp32 on CPU. Both loops see identical batches (the mixture sampler at r = 0.5),
the same AdamW settings, LR schedule and gradient clipping. The first step and process start-up are excluded
from both; repeats alternate between the two so that load from other processes hits both alike.

    .venv/bin/python bench/bench_train.py [--steps 60] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from cpt_scaling.data.shards import write_token_file
from cpt_scaling.train.mixture import MixtureSampler
from cpt_scaling.train.model import build_model
from cpt_scaling.train.schedule import learning_rate
from cpt_scaling.train.spec_types import OptimizerSpec
from cpt_scaling.train.train_log import read_log
from cpt_scaling.train.trainer import train

VOCAB, SEQ_LEN, BATCH = 2048, 128, 16
SIZE = {"n_layers": 2, "d_model": 64, "n_heads": 2, "d_ff": 256}


def make_shards(directory: Path, n: int, seed: int) -> np.ndarray:
    directory.mkdir(parents=True)
    rows = np.random.default_rng(seed).integers(0, VOCAB, size=(n, SEQ_LEN), dtype=np.int32)
    column = pa.array(list(rows), type=pa.list_(pa.int32()))
    pq.write_table(pa.table({"input_ids": column}), directory / "train-00000.parquet")
    shard = {"file": "train-00000.parquet", "n_sequences": n, "n_tokens": n * SEQ_LEN}
    tokens = write_token_file(directory / "train.u32", rows)
    manifest = {"seq_len": SEQ_LEN, "vocab_size": VOCAB,
                "train": {"n_tokens": n * SEQ_LEN, "n_sequences": n, "shards": [shard], **tokens}}
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return rows


def spec_for(root: Path, steps: int) -> dict:
    return {
        "model": SIZE, "vocab_size": VOCAB, "seq_len": SEQ_LEN, "init": {"kind": "scratch"},
        "general_shards": str(root / "general"), "domain_shards": str(root / "domain"), "ratio": 0.5,
        "tokens": steps * BATCH * SEQ_LEN, "batch_size": BATCH, "micro_batch_size": BATCH,
        "optimizer": {"lr": 3e-3, "min_lr_ratio": 0.1, "weight_decay": 0.1, "beta1": 0.9, "beta2": 0.95,
                      "warmup_fraction": 0.05, "schedule": "cosine", "grad_clip": 1.0},
        "checkpoint_tokens": [], "seed": 0, "threads": 1, "deepspeed": {"zero_stage": 0}, "log_every": steps,
    }


def bench_train(root: Path, spec: dict, run: int) -> tuple[float, float]:
    """(tokens/s over steps 2..N from the run's log, wall seconds of the whole ``train`` call)."""
    start = time.perf_counter()
    train(spec, root / f"run-{run}")
    wall = time.perf_counter() - start
    last = [r for r in read_log(root / f"run-{run}" / "train_log.jsonl") if r["event"] == "step"][-1]
    return last["tokens_per_s"], wall


def bench_plain(spec: dict, general: np.ndarray, domain: np.ndarray, steps: int) -> float:
    """tokens/s of a plain PyTorch loop over steps 2..N."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build_model(SIZE, VOCAB, SEQ_LEN)
    model.config.use_cache = False
    model.train()
    opt = OptimizerSpec.from_json(spec["optimizer"])
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": opt.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=opt.lr, betas=(opt.beta1, opt.beta2),
    )
    sampler = MixtureSampler(general, domain, 0.5, BATCH, 0)
    start = 0.0
    for step in range(steps):
        if step == 1:
            start = time.perf_counter()
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, steps, opt)
        ids = torch.from_numpy(sampler.batch(step).astype(np.int64))
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), float(opt.grad_clip or 0.0))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return (steps - 1) * BATCH * SEQ_LEN / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        general = make_shards(root / "general", 512, 0)
        domain = make_shards(root / "domain", 512, 1)
        spec = spec_for(root, args.steps)
        ours, plain, walls = [], [], []
        for run in range(args.repeats):
            tps, wall = bench_train(root, spec, run)
            ours.append(tps)
            walls.append(wall)
            plain.append(bench_plain(spec, general, domain, args.steps))
    best_ours, best_plain = max(ours), max(plain)
    print(f"model {SIZE}, vocab {VOCAB}, seq_len {SEQ_LEN}, batch {BATCH}, 1 thread, {args.steps} steps, "
          f"{args.repeats} alternating repeats")
    print(f"train() (DeepSpeed ZeRO-0): best {best_ours:,.0f} tokens/s  (all: {[round(x) for x in ours]})")
    print(f"plain PyTorch loop:         best {best_plain:,.0f} tokens/s  (all: {[round(x) for x in plain]})")
    print(f"ratio train/plain: {best_ours / best_plain:.3f}")
    print(f"train() wall per call (incl. DeepSpeed init, data load, final checkpoint): "
          f"{[round(w, 2) for w in walls]} s")


if __name__ == "__main__":
    main()
