"""DeepSpeed configuration from a training spec, and the process-group setup it needs."""

from __future__ import annotations

import os
from typing import Any

import torch

from cpt_scaling.core.errors import InputError
from cpt_scaling.train.spec_types import TrainSpec


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


def deepspeed_config(spec: TrainSpec, n_ranks: int, *, bf16: bool, ranks_per_node: int | None = None
                     ) -> dict[str, Any]:
    """The DeepSpeed config dict for ``spec``: ZeRO stage and offload, precision, batch split, gradient clipping.

    The optimizer and the LR schedule are ours (passed to ``deepspeed.initialize`` / set per step), so the
    config names neither. ZeRO-3 gathers the 16-bit weights for saving. ``grad_accum_dtype`` goes to
    ``data_types`` only for bf16 training under ZeRO 1-3 (DeepSpeed keeps a separate fp32 accumulation buffer
    there); ZeRO-0 accumulates in the model dtype, and fp32 (CPU) training is fp32 throughout.

    ZeRO-3 over several nodes (``ranks_per_node`` < ``n_ranks``): ZeRO++'s hierarchical partitioning (hpZ,
    ``zero_hpz_partition_size`` = ranks per node): a second copy of the 16-bit weights partitioned within each
    node, so the forward and backward all-gathers stay on the node's NVLink (cost: ``2·P/ranks_per_node`` bytes
    per GPU, :mod:`cpt_scaling.cost.memory`).
    """
    zero = spec.deepspeed
    stage = zero.zero_stage
    batch, micro = spec.batch_size, spec.micro_batch_size
    zero_cfg: dict[str, Any] = {"stage": stage}
    if stage == 3:
        zero_cfg["stage3_gather_16bit_weights_on_model_save"] = True
        if ranks_per_node and 1 < ranks_per_node < n_ranks:
            zero_cfg["zero_hpz_partition_size"] = ranks_per_node
    if zero.offload_optimizer:
        zero_cfg["offload_optimizer"] = {"device": "cpu", "pin_memory": torch.cuda.is_available()}
    config: dict[str, Any] = {
        "train_batch_size": batch,
        "train_micro_batch_size_per_gpu": micro,
        "gradient_accumulation_steps": gradient_accumulation(batch, micro, n_ranks),
        "gradient_clipping": float(spec.optimizer.grad_clip or 0.0),
        "zero_optimization": zero_cfg,
        "bf16": {"enabled": bf16},
        "zero_allow_untested_optimizer": True,
        # With offload on GPU we pass DeepSpeedCPUAdam; a CPU-only run offloads to where it already is.
        "zero_force_ds_cpu_optimizer": False,
        "steps_per_print": 2**62,
        "wall_clock_breakdown": False,
    }
    if bf16 and stage > 0:
        config["data_types"] = {"grad_accum_dtype": zero.grad_accum_dtype}
    return config
