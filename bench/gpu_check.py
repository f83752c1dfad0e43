"""GPU check (issue 25): the project's trainer on one device through torchrun, as a cluster job runs it.

GPU (default): a ~1B Qwen2-shaped model from random init (d 2048, 16 layers, 16 heads / 2 KV heads, MLP 5632,
vocab 151,936, tied embeddings: 1.0B parameters), bf16, flash-attn when it imports (else SDPA), activation
checkpointing, Liger's fused linear cross-entropy when installed; steps of 8 × 4096 tokens (micro-batch 2).
``--cpu``: the same path at toy size (d 64, 2 layers, vocab 512, sequence 128, 8 steps), fp32, for CI.

Each run is ``torchrun --standalone --nproc_per_node 1`` of this file's ``--worker`` (the trainer, as
``cpt-scaling train`` calls it):

1. ZeRO-0, with an evaluation checkpoint half-way (the gathered HF export): tokens/s (steps after the second),
   MFU with the cost model's FLOPs per token (the trainer's own MFU), peak memory (``max_memory_reserved``; on CPU
   the worker's peak RSS) against the memory model (:func:`cpt_scaling.cost.memory.estimate`).
2. ZeRO-3: SIGUSR1 to the worker after its second step: a resumable state (per-rank partitions) is saved and
   timed, the run stops with exit status 75 (its resubmit marker); run again, it resumes there and its losses
   continue those of the uninterrupted ZeRO-0 run (relative difference within :data:`RESUME_TOLERANCE`).
3. The evaluation's forward pass (:func:`cpt_scaling.evaluate.heldout.sequence_loss`) on the final checkpoint:
   tokens/s.

Last line: ``tokens_per_s=… mfu=… peak_gib=… predicted_gib=… zero3_peak_gib=… zero3_predicted_gib=… save_s=…
eval_tokens_per_s=… resume_max_rel=…``.

    bench/gpu_check.sh [--offline] [--cpu]     (see the script: the wheels an offline machine needs)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

GIB = 2**30
SHAPES = {
    "gpu": {"hidden_size": 2048, "num_hidden_layers": 16, "num_attention_heads": 16, "num_key_value_heads": 2,
            "intermediate_size": 5632, "vocab_size": 151936},
    "cpu": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
            "intermediate_size": 128, "vocab_size": 512},
}
RUNS = {  # seq_len, batch, micro-batch, steps, peak FLOP/s per device (H100/H200 dense bf16; a nominal CPU)
    "gpu": (4096, 8, 2, 40, 989e12),
    "cpu": (128, 4, 2, 8, 1e11),
}
#: The ZeRO-3 run gets its SIGUSR1 once it logged this step (it stops at the next step boundary).
STOP_AFTER_STEP = 2
#: Resumed ZeRO-3 losses against the uninterrupted ZeRO-0 run at the same steps (bf16 on GPU: another reduction
#: order and partitioned weights; fp32 on CPU: measured ~1e-7).
RESUME_TOLERANCE = {"gpu": 0.02, "cpu": 1e-4}
MEMORY_FILE = "gpu_check_memory.json"


def worker(spec_file: Path, out: Path) -> None:
    """One rank: train as the spec says (exit 75 on a stop), then record this process's peak memory."""
    from cpt_scaling.core.logs import setup_logging
    from cpt_scaling.train.trainer import train

    setup_logging()
    try:
        train(json.loads(spec_file.read_text()), out)
    finally:
        if torch.cuda.is_available():
            peak = {"peak_gib": torch.cuda.max_memory_reserved() / GIB,
                    "allocated_gib": torch.cuda.max_memory_allocated() / GIB}
        else:
            peak = {"peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB}
        out.mkdir(parents=True, exist_ok=True)
        (out / MEMORY_FILE).write_text(json.dumps(peak))


def _descendants(pid: int) -> list[int]:
    """The processes below ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError):
            children.setdefault(int(stat.read_text().rsplit(")", 1)[1].split()[1]), []).append(int(stat.parent.name))
    found, todo = [], list(children.get(pid, []))
    while todo:
        found.append(todo.pop())
        todo += children.get(found[-1], [])
    return found


def _steps(out: Path) -> list[dict[str, Any]]:
    from cpt_scaling.train.train_log import read_log

    return [r for r in read_log(out / "train_log.jsonl") if r["event"] == "step"]


def torchrun(root: Path, spec: dict[str, Any], out: Path, *, stop_at_step: int | None = None) -> int:
    """Run ``spec`` under torchrun on one rank; ``stop_at_step``: SIGUSR1 to the worker once it logged that step
    (torchrun itself ignores it, as the project's launcher starts it). Returns torchrun's exit status."""
    spec_file = root / f"{out.name}.json"
    spec_file.write_text(json.dumps(spec))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1",
           str(Path(__file__).resolve()), "--worker", str(spec_file), str(out)]
    old = signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    try:
        proc = subprocess.Popen(cmd)
    finally:
        signal.signal(signal.SIGUSR1, old)
    if stop_at_step is not None:
        while proc.poll() is None and not any(r["step"] >= stop_at_step for r in _steps(out)):
            time.sleep(0.05)
        for pid in _descendants(proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGUSR1)
    return proc.wait()


def write_store(directory: Path, n_seq: int, seq_len: int, vocab: int) -> Path:
    """A token store of random ids in the trainer's format (raw uint32 rows and their manifest)."""
    directory.mkdir(parents=True)
    rows = np.random.default_rng(0).integers(0, vocab, size=(n_seq, seq_len), dtype=np.uint32)
    rows.tofile(directory / "train.u32")
    manifest = {"seq_len": seq_len, "vocab_size": vocab, "token_dtype": "uint32",
                "train": {"n_tokens": rows.size, "token_file": "train.u32", "n_sequences": n_seq,
                          "max_token_id": int(rows.max())}}
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return directory


def predicted_gib(config: Qwen2Config, n_non_embedding: int, seq_len: int, micro: int, *, on_gpu: bool,
                  fused: bool, zero_stage: int, chunked: bool = False) -> float:
    """The memory model's peak per device for one rank of this run."""
    from cpt_scaling.cost import memory

    shape = memory.ModelShape(
        n_layers=config.num_hidden_layers, d_model=config.hidden_size, n_heads=config.num_attention_heads,
        n_kv_heads=config.num_key_value_heads, d_ff=config.intermediate_size, vocab_size=config.vocab_size,
        n_non_embedding=n_non_embedding, tied_embeddings=bool(config.tie_word_embeddings))
    setup = memory.TrainSetup(seq_len=seq_len, micro_batch_size=micro, gpus=1, zero_stage=zero_stage,
                              activation_checkpointing=True, precision="bf16" if on_gpu else "fp32",
                              fused_loss=fused, chunked_loss=chunked, on_gpu=on_gpu)
    return memory.estimate(shape, setup).gib


def eval_throughput(checkpoint: Path, store: Path, seq_len: int, batch: int) -> float:
    """Tokens/s of the evaluation's forward pass over ``4 × batch`` sequences (after one warm-up batch)."""
    from cpt_scaling.evaluate.heldout import sequence_loss
    from cpt_scaling.train.model import load_model

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = load_model(checkpoint).to(device)
    rows = np.fromfile(store / "train.u32", dtype=np.uint32).reshape(-1, seq_len)[:5 * batch]
    sequence_loss(model, rows[:batch], batch_size=batch)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    _, n_tokens = sequence_loss(model, rows[batch:], batch_size=batch)  # returns a host float: synchronised
    return n_tokens / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cpu", action="store_true", help="toy size on CPU (what CI runs)")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--worker", nargs=2, type=Path, metavar=("SPEC", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(*args.worker)
        return
    from cpt_scaling.cost.model import flops_per_token
    from cpt_scaling.train.model import count_parameters, model_shape, save_model
    from cpt_scaling.train.resubmit import RESUBMIT_EXIT_CODE, RESUBMIT_MARKER
    from cpt_scaling.train.train_log import read_log

    mode = "cpu" if args.cpu else "gpu"
    on_gpu = torch.cuda.is_available()
    if mode == "gpu" and not on_gpu:
        raise SystemExit("gpu_check: no CUDA device (use --cpu for the CPU-sized variant)")
    seq_len, batch, micro, steps, peak = RUNS[mode]
    steps = args.steps or steps
    config = Qwen2Config(**SHAPES[mode], max_position_embeddings=seq_len, tie_word_embeddings=True,
                         rope_theta=1e6, use_cache=False)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        root = Path(tmp)
        torch.manual_seed(0)
        model = Qwen2ForCausalLM(config)
        n_total, n_non_embedding = count_parameters(model)
        save_model(model, root / "base")  # fp32 weights; the trainer loads them in bf16 on GPU
        del model
        store = write_store(root / "general", steps * batch + 8, seq_len, config.vocab_size)
        half = steps // 2
        spec = {
            "vocab_size": config.vocab_size, "seq_len": seq_len,
            "init": {"kind": "checkpoint", "path": str(root / "base")},
            "general_shards": str(store), "domain_shards": None, "ratio": 0.0,
            "tokens": steps * batch * seq_len, "batch_size": batch, "micro_batch_size": micro,
            "optimizer": {"lr": 3e-4, "min_lr_ratio": 0.1, "weight_decay": 0.1, "beta1": 0.9, "beta2": 0.95,
                          "warmup_fraction": 0.1, "schedule": "cosine", "grad_clip": 1.0},
            "checkpoint_tokens": [half * batch * seq_len], "seed": 0, "threads": 0,
            "deepspeed": {"zero_stage": 0}, "activation_checkpointing": True, "peak_flops": peak, "log_every": 1,
            "device": "cuda" if mode == "gpu" else None,
        }
        zero0 = root / "zero0"
        rc = torchrun(root, spec, zero0)
        if rc != 0:
            raise SystemExit(f"gpu_check: the ZeRO-0 run failed (torchrun exit {rc})")
        records = read_log(zero0 / "train_log.jsonl")
        memory0 = json.loads((zero0 / MEMORY_FILE).read_text())

        zero3 = root / "zero3"
        spec3 = {**spec, "deepspeed": {"zero_stage": 3}, "checkpoint_tokens": []}
        rc = torchrun(root, spec3, zero3, stop_at_step=STOP_AFTER_STEP)
        stop = json.loads((zero3 / RESUBMIT_MARKER).read_text()) if (zero3 / RESUBMIT_MARKER).is_file() else None
        if stop is None:
            raise SystemExit(f"gpu_check: SIGUSR1 did not stop the ZeRO-3 run with a resumable state (torchrun {rc})")
        stopped_step = int(stop["step"])
        rc = torchrun(root, spec3, zero3)
        if rc != 0:
            raise SystemExit(f"gpu_check: the resumed ZeRO-3 run failed (torchrun exit {rc})")
        log3 = read_log(zero3 / "train_log.jsonl")
        memory3 = json.loads((zero3 / MEMORY_FILE).read_text())
        final = json.loads((zero0 / "checkpoints.json").read_text())["final"]
        eval_tps = eval_throughput(zero0 / final, store, seq_len, batch)

    start = records[0]
    logged = [r for r in records if r["event"] == "step" and r["step"] > 2]  # the first steps include warm-up
    tokens_per_s = float(np.mean([r["tokens_per_s"] for r in logged]))
    shape = model_shape(config)
    flops_tok = flops_per_token(shape["n_layers"], shape["d_model"], shape["d_ff"], seq_len, shape["vocab_size"],
                                kv_dim=shape["kv_dim"])
    mfu = tokens_per_s * flops_tok / peak
    fused = bool(start.get("fused_cross_entropy"))
    predicted = predicted_gib(config, n_non_embedding, seq_len, micro, on_gpu=on_gpu, fused=fused, zero_stage=0)
    starts3 = [r for r in log3 if r["event"] == "start"]
    predicted3 = predicted_gib(config, n_non_embedding, seq_len, micro, on_gpu=on_gpu,
                               fused=bool(starts3[-1].get("fused_cross_entropy")), zero_stage=3,
                               chunked=bool(starts3[-1].get("chunked_cross_entropy")))
    saves = [r["seconds"] for r in log3 if r["event"] == "save" and r["resumable"]]
    stops = [r for r in log3 if r["event"] == "stop"]
    loss0 = {r["step"]: r["loss"] for r in records if r["event"] == "step"}
    loss3 = {r["step"]: r["loss"] for r in log3 if r["event"] == "step"}
    after = [s for s in sorted(loss3) if s > stopped_step]
    resume_rel = max(abs(loss3[s] - loss0[s]) / abs(loss0[s]) for s in after)
    measured = "peak reserved" if on_gpu else "peak RSS of the worker (Python, torch, DeepSpeed)"

    device = torch.cuda.get_device_name() if on_gpu else "CPU"
    print(f"device {device}; torch {torch.__version__}; {n_total / 1e6:.1f}M parameters "
          f"({n_non_embedding / 1e6:.1f}M non-embedding); attention {start['attention']}; fused cross-entropy "
          f"{fused}; activation checkpointing {start.get('activation_checkpointing')}")
    print(f"{steps} steps of {batch} x {seq_len} tokens (micro-batch {micro}); {flops_tok:.3e} FLOPs/token; "
          f"peak {peak:.3e} FLOP/s")
    trainer_mfu = float(np.mean([r["mfu"] for r in logged]))
    print(f"ZeRO-0: tokens/s {tokens_per_s:.0f}; MFU {mfu:.4f} (the trainer's logged MFU, same formula: "
          f"{trainer_mfu:.4f})")
    print(f"ZeRO-0 memory: {measured} {memory0['peak_gib']:.2f} GiB; memory model {predicted:.2f} GiB; "
          f"measured/predicted {memory0['peak_gib'] / predicted:.2f}")
    print(f"ZeRO-3 memory: {measured} {memory3['peak_gib']:.2f} GiB; memory model {predicted3:.2f} GiB; "
          f"measured/predicted {memory3['peak_gib'] / predicted3:.2f}")
    print(f"ZeRO-3 stop: SIGUSR1 at step {stopped_step}, exit status {stops[0]['exit_code']} "
          f"(expected {RESUBMIT_EXIT_CODE}), resumable save {saves[0]:.2f} s; resumed from tokens "
          f"{starts3[-1]['resumed_from']}; losses after the resume vs the ZeRO-0 run: max relative difference "
          f"{resume_rel:.2e} (tolerance {RESUME_TOLERANCE[mode]:g})")
    print(f"evaluation forward: {eval_tps:.0f} tokens/s; whole check {time.perf_counter() - started:.0f} s")
    if stops[0]["exit_code"] != RESUBMIT_EXIT_CODE or resume_rel > RESUME_TOLERANCE[mode]:
        raise SystemExit("gpu_check: the ZeRO-3 stop/resume did not continue the run")
    print(f"tokens_per_s={tokens_per_s:.1f} mfu={mfu:.4f} peak_gib={memory0['peak_gib']:.3f} "
          f"predicted_gib={predicted:.3f} zero3_peak_gib={memory3['peak_gib']:.3f} "
          f"zero3_predicted_gib={predicted3:.3f} save_s={saves[0]:.3f} eval_tokens_per_s={eval_tps:.1f} "
          f"resume_max_rel={resume_rel:.3g}")


if __name__ == "__main__":
    main()
