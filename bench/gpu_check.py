"""One training run through the project's trainer on one device: throughput, MFU and peak memory vs the model.

GPU (default): a ~1B Qwen2-shaped model from config (d 2048, 16 layers, 16 heads / 2 KV heads, MLP 5632, vocab
151,936, tied embeddings: 1.0B parameters), bf16, flash-attn when installed (else SDPA), activation checkpointing,
Liger's fused linear cross-entropy when installed, ZeRO-0 on one GPU; 50 steps of 8 × 4096 tokens (micro-batch 2).
``--cpu``: the same path at toy size (d 64, 2 layers, vocab 512, sequence 128, 6 steps), fp32, for CI.

Prints tokens/s (steps after the first), MFU with the cost model's FLOPs per token (``cost.model.flops_per_token``: the
trainer's own MFU), the measured peak (``torch.cuda.max_memory_reserved``, allocated alongside; on CPU the
process's peak RSS) and the memory model's prediction (``cpt_scaling.cost.memory.estimate``) when that module exists.
Last line: ``tokens_per_s=<x> mfu=<y> peak_gib=<z> predicted_gib=<w|nan>``.

    bench/gpu_check.sh [--cpu]      (installs what it needs, then runs this)
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import tempfile
from pathlib import Path

import numpy as np
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from cpt_scaling.cost.model import flops_per_token
from cpt_scaling.data.shards import TokenFileWriter
from cpt_scaling.train.model import count_parameters, model_shape, save_model
from cpt_scaling.train.train_log import read_log
from cpt_scaling.train.trainer import train

GIB = 2**30
SHAPES = {
    "gpu": {"hidden_size": 2048, "num_hidden_layers": 16, "num_attention_heads": 16, "num_key_value_heads": 2,
            "intermediate_size": 5632, "vocab_size": 151936},
    "cpu": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
            "intermediate_size": 128, "vocab_size": 512},
}
RUNS = {  # seq_len, batch, micro-batch, steps, peak FLOP/s per device (H100/H200 dense bf16; a nominal CPU)
    "gpu": (4096, 8, 2, 50, 989e12),
    "cpu": (128, 4, 2, 6, 1e11),
}


def write_store(directory: Path, n_seq: int, seq_len: int, vocab: int) -> Path:
    """A general-mix token store of random ids (no Parquet: training reads only the token file)."""
    directory.mkdir(parents=True)
    writer = TokenFileWriter(directory / "train.u32", seq_len)
    writer.add(np.random.default_rng(0).integers(0, vocab, size=n_seq * seq_len, dtype=np.uint32))
    entry = writer.close()
    manifest = {"seq_len": seq_len, "vocab_size": vocab, "token_dtype": "uint32",
                "train": {"n_tokens": n_seq * seq_len, **entry}}
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return directory


def predicted_gib(config: Qwen2Config, n_non_embedding: int, seq_len: int, micro: int, *, on_gpu: bool,
                  fused: bool) -> float:
    """The memory model's peak per GPU for this run; NaN when ``cpt_scaling.cost.memory`` is not there."""
    try:
        from cpt_scaling.cost import memory
    except ImportError:
        return math.nan
    shape = memory.ModelShape(
        n_layers=config.num_hidden_layers, d_model=config.hidden_size, n_heads=config.num_attention_heads,
        n_kv_heads=config.num_key_value_heads, d_ff=config.intermediate_size, vocab_size=config.vocab_size,
        n_non_embedding=n_non_embedding, tied_embeddings=bool(config.tie_word_embeddings))
    setup = memory.TrainSetup(seq_len=seq_len, micro_batch_size=micro, gpus=1, zero_stage=0,
                              activation_checkpointing=True, precision="bf16" if on_gpu else "fp32",
                              fused_loss=fused, on_gpu=on_gpu)
    return memory.estimate(shape, setup).gib


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cpu", action="store_true", help="toy size on CPU (what CI runs)")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    mode = "cpu" if args.cpu else "gpu"
    on_gpu = torch.cuda.is_available()
    if mode == "gpu" and not on_gpu:
        raise SystemExit("gpu_check: no CUDA device (use --cpu for the CPU-sized variant)")
    seq_len, batch, micro, steps, peak = RUNS[mode]
    steps = args.steps or steps
    config = Qwen2Config(**SHAPES[mode], max_position_embeddings=seq_len, tie_word_embeddings=True,
                         rope_theta=1e6, use_cache=False)

    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        root = Path(tmp)
        torch.manual_seed(0)
        model = Qwen2ForCausalLM(config)
        n_total, n_non_embedding = count_parameters(model)
        save_model(model, root / "base")  # fp32 weights; the trainer loads them in bf16 on GPU
        del model
        general = write_store(root / "general", steps * batch + 8, seq_len, config.vocab_size)
        spec = {
            "vocab_size": config.vocab_size, "seq_len": seq_len,
            "init": {"kind": "checkpoint", "path": str(root / "base")},
            "general_shards": str(general), "domain_shards": None, "ratio": 0.0,
            "tokens": steps * batch * seq_len, "batch_size": batch, "micro_batch_size": micro,
            "optimizer": {"lr": 3e-4, "min_lr_ratio": 0.1, "weight_decay": 0.1, "beta1": 0.9, "beta2": 0.95,
                          "warmup_fraction": 0.1, "schedule": "cosine", "grad_clip": 1.0},
            "checkpoint_tokens": [], "seed": 0, "threads": 0, "deepspeed": {"zero_stage": 0},
            "activation_checkpointing": True, "peak_flops": peak, "log_every": 10 if mode == "gpu" else 1,
        }
        if on_gpu:
            torch.cuda.reset_peak_memory_stats()
        train(spec, root / "run")
        records = read_log(root / "run" / "train_log.jsonl")

    start = records[0]
    logged = [r for r in records if r["event"] == "step" and r["step"] > 1]  # step 1 includes warm-up
    tokens_per_s = float(np.mean([r["tokens_per_s"] for r in logged]))
    shape = model_shape(config)
    flops_tok = flops_per_token(shape["n_layers"], shape["d_model"], shape["d_ff"], seq_len, shape["vocab_size"],
                                kv_dim=shape["kv_dim"])
    mfu = tokens_per_s * flops_tok / peak
    if on_gpu:
        peak_gib = torch.cuda.max_memory_reserved() / GIB
        allocated = torch.cuda.max_memory_allocated() / GIB
        measured = f"peak reserved {peak_gib:.2f} GiB (allocated {allocated:.2f} GiB)"
    else:
        peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB
        measured = f"peak RSS {peak_gib:.3f} GiB (the whole process: Python, torch, DeepSpeed)"
    predicted = predicted_gib(config, n_non_embedding, seq_len, micro, on_gpu=on_gpu,
                              fused=bool(start.get("fused_cross_entropy")))
    device = torch.cuda.get_device_name() if on_gpu else "CPU"
    print(f"device {device}; {n_total / 1e6:.1f}M parameters ({n_non_embedding / 1e6:.1f}M non-embedding); "
          f"attention {start['attention']}; fused cross-entropy {start.get('fused_cross_entropy')}; "
          f"activation checkpointing {start.get('activation_checkpointing')}")
    print(f"{steps} steps of {batch} x {seq_len} tokens (micro-batch {micro}); {flops_tok:.3e} FLOPs/token; "
          f"peak {peak:.3e} FLOP/s")
    trainer_mfu = float(np.mean([r["mfu"] for r in logged]))
    print(f"tokens/s {tokens_per_s:.0f}; MFU {mfu:.4f} (the trainer's logged MFU, same formula: {trainer_mfu:.4f})")
    ratio = peak_gib / predicted if predicted == predicted else math.nan
    print(f"memory: measured {measured}; memory model {predicted:.2f} GiB; measured/predicted {ratio:.2f}")
    print(f"tokens_per_s={tokens_per_s:.1f} mfu={mfu:.4f} peak_gib={peak_gib:.3f} predicted_gib={predicted:.3f}")


if __name__ == "__main__":
    main()
