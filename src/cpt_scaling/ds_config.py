"""DeepSpeed configuration from a training spec, and the process-group setup it needs."""

from __future__ import annotations

import os
from typing import Any

import torch

from cpt_scaling.errors import InputError

SUPPORTED_ZERO_STAGES = (0, 1, 2)


def ensure_distributed() -> None:
    """Initialise ``torch.distributed`` for DeepSpeed.

    Under torchrun (``RANK``/``WORLD_SIZE`` set) or srun with several tasks (``SLURM_PROCID``; the launcher
    must set ``MASTER_ADDR``/``MASTER_PORT``), DeepSpeed joins the group from the environment. A plain single
    process gets
    an in-memory store (no port), so concurrent runs on one machine never collide.
    """
    import deepspeed

    if torch.distributed.is_initialized():
        return
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    env = os.environ
    if "RANK" not in env and int(env.get("SLURM_NTASKS", "1")) > 1:
        if "MASTER_ADDR" not in env or "MASTER_PORT" not in env:
            raise InputError("environment", "multi-task srun launch needs MASTER_ADDR and MASTER_PORT")
        env["RANK"] = env["SLURM_PROCID"]
        env["WORLD_SIZE"] = env["SLURM_NTASKS"]
        env["LOCAL_RANK"] = env.get("SLURM_LOCALID", "0")
    if "RANK" in env and int(env.get("WORLD_SIZE", "1")) > 1:
        env.setdefault("LOCAL_RANK", "0")
        deepspeed.init_distributed(dist_backend=backend)
    else:
        env.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
        store = torch.distributed.HashStore()
        torch.distributed.init_process_group(backend, store=store, rank=0, world_size=1)
    if torch.cuda.is_available():
        torch.cuda.set_device(int(env.get("LOCAL_RANK", "0")))


def gradient_accumulation(batch_size: int, micro_batch_size: int, n_ranks: int) -> int:
    """Micro-batches per rank and optimizer step; ``batch_size`` must split evenly over ranks × micro."""
    if micro_batch_size <= 0 or batch_size % (micro_batch_size * n_ranks):
        raise InputError(
            "batch_size",
            f"{batch_size} is not a multiple of micro_batch_size ({micro_batch_size}) × ranks ({n_ranks})",
        )
    return batch_size // (micro_batch_size * n_ranks)


def deepspeed_config(spec: dict[str, Any], n_ranks: int, *, bf16: bool) -> dict[str, Any]:
    """The DeepSpeed config dict for ``spec``: ZeRO stage, precision, batch split and gradient clipping.

    The optimizer and the LR schedule are ours (passed to ``deepspeed.initialize`` / set per step), so the
    config names neither.
    """
    stage = int(spec.get("deepspeed", {}).get("zero_stage", 0))
    if stage not in SUPPORTED_ZERO_STAGES:
        raise InputError("deepspeed.zero_stage", f"{stage} is not supported (use {SUPPORTED_ZERO_STAGES})")
    batch, micro = int(spec["batch_size"]), int(spec["micro_batch_size"])
    return {
        "train_batch_size": batch,
        "train_micro_batch_size_per_gpu": micro,
        "gradient_accumulation_steps": gradient_accumulation(batch, micro, n_ranks),
        "gradient_clipping": float(spec["optimizer"].get("grad_clip") or 0.0),
        "zero_optimization": {"stage": stage},
        "bf16": {"enabled": bf16},
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 2**62,
        "wall_clock_breakdown": False,
    }
