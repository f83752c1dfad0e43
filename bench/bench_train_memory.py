"""Peak resident memory and start-up time of one training process vs the size of its domain corpus.

Two synthetic token stores for the domain, 10M and 200M tokens (uint32 token files written with the shards
stage's own writer, random ids), plus one 10M-token general mix; the same model, spec and steps for both (the
demo's "s" size: 2 layers, d_model 64, vocab 2048; seq_len 128, batch 16, r = 0.5, 30 steps, fp32 on CPU,
1 thread). Each run is a fresh process: peak RSS is its ``ru_maxrss`` from ``wait4``, start-up the wall time
from launch until the trainer's ``start`` log record (model built, DeepSpeed initialised, token stores
opened: the last thing before step 1). One warm-up run first (DeepSpeed's op build cache), then the two sizes
alternate ``--repeats`` times; medians are reported.

    .venv/bin/python bench/bench_train_memory.py [--repeats 3] [--steps 30] [--workdir DIR]

Last line: ``rss_ratio=<200M/10M peak RSS> startup_ratio=<200M/10M start-up>``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from cpt_scaling.data.sequences import read_train_sequences
from cpt_scaling.data.shards import TokenFileWriter

VOCAB, SEQ_LEN, BATCH = 2048, 128, 16
SIZE = {"n_layers": 2, "d_model": 64, "n_heads": 2, "d_ff": 256}
CHUNK_SEQUENCES = 1 << 16
TRAIN_SCRIPT = (
    "import json, sys\n"
    "from cpt_scaling.train.trainer import train\n"
    "train(json.loads(open(sys.argv[1]).read()), sys.argv[2])\n"
)


def make_store(directory: Path, n_tokens: int, seed: int) -> Path:
    """A shard directory with only the token store: ``train.u32`` of random ids and its manifest."""
    directory.mkdir(parents=True)
    n_seq = n_tokens // SEQ_LEN
    rng = np.random.default_rng(seed)
    writer = TokenFileWriter(directory / "train.u32", SEQ_LEN)
    for start in range(0, n_seq, CHUNK_SEQUENCES):
        count = min(CHUNK_SEQUENCES, n_seq - start)
        writer.add(rng.integers(0, VOCAB, size=count * SEQ_LEN, dtype=np.uint32))
    entry = writer.close()
    manifest = {"seq_len": SEQ_LEN, "vocab_size": VOCAB, "token_dtype": "uint32",
                "train": {"n_tokens": n_seq * SEQ_LEN, **entry}}
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return directory


def spec_for(general: Path, domain: Path, steps: int) -> dict:
    return {
        "model": SIZE, "vocab_size": VOCAB, "seq_len": SEQ_LEN, "init": {"kind": "scratch"},
        "general_shards": str(general), "domain_shards": str(domain), "ratio": 0.5,
        "tokens": steps * BATCH * SEQ_LEN, "batch_size": BATCH, "micro_batch_size": BATCH,
        "optimizer": {"lr": 3e-3, "min_lr_ratio": 0.1, "weight_decay": 0.1, "beta1": 0.9, "beta2": 0.95,
                      "warmup_fraction": 0.05, "schedule": "cosine", "grad_clip": 1.0},
        "checkpoint_tokens": [], "seed": 0, "threads": 1, "deepspeed": {"zero_stage": 0}, "log_every": steps,
    }


def run(spec: dict, out: Path) -> tuple[float, float]:
    """(peak RSS in MB, start-up seconds) of one training process."""
    spec_file = out.with_suffix(".json")
    spec_file.write_text(json.dumps(spec))
    log = out / "train_log.jsonl"
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", TRAIN_SCRIPT, str(spec_file), str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    startup = None
    while startup is None and proc.poll() is None:
        if log.is_file() and '"start"' in log.read_text():
            startup = time.perf_counter() - t0
        else:
            time.sleep(0.01)
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"training process failed (status {status}): {out}")
    if startup is None:  # finished between two polls
        startup = time.perf_counter() - t0
    return usage.ru_maxrss / 1024, startup


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        root = Path(tmp)
        general = make_store(root / "general", 10_000_000, seed=0)
        domains = {"10M": make_store(root / "domain-10M", 10_000_000, seed=1),
                   "200M": make_store(root / "domain-200M", 200_000_000, seed=2)}
        for name, d in domains.items():
            size_mb = (d / "train.u32").stat().st_size / 2**20
            t = time.perf_counter()
            data = read_train_sequences(d, SEQ_LEN, VOCAB)
            opened = time.perf_counter() - t
            print(f"domain {name}: {len(data)} sequences, token file {size_mb:.0f} MB, opened in {opened * 1e3:.2f} ms")
        run(spec_for(general, domains["10M"], args.steps), root / "warmup")
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in domains}
        for repeat in range(args.repeats):
            for name, d in domains.items():
                rss, startup = run(spec_for(general, d, args.steps), root / f"run-{name}-{repeat}")
                results[name].append((rss, startup))
                print(f"repeat {repeat} domain {name}: peak RSS {rss:.1f} MB, start-up {startup:.2f} s", flush=True)
        rss = {n: statistics.median(r for r, _ in v) for n, v in results.items()}
        startup = {n: statistics.median(s for _, s in v) for n, v in results.items()}
        for name in domains:
            print(f"median domain {name}: peak RSS {rss[name]:.1f} MB, start-up {startup[name]:.2f} s")
        print(f"rss_ratio={rss['200M'] / rss['10M']:.3f} startup_ratio={startup['200M'] / startup['10M']:.3f}")


if __name__ == "__main__":
    main()
