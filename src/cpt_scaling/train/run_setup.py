"""Setting up a training run before its first step: the machine check, ranks, resume point, the model (ZeRO-3
partitioned where asked), the optimizer, the fused loss and the token sampler."""

from __future__ import annotations

import contextlib
import importlib.util
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from cpt_scaling.core.errors import InputError
from cpt_scaling.data.sequences import read_train_sequences
from cpt_scaling.train import checkpoints as ckpt
from cpt_scaling.train.ds_config import ensure_distributed
from cpt_scaling.train.mixture import MixtureSampler
from cpt_scaling.train.model import attention_implementation, build_model, default_dtype, load_model, model_from_config
from cpt_scaling.train.resubmit import RESUBMIT_MARKER
from cpt_scaling.train.spec_types import OptimizerSpec, TrainPlan, TrainSpec

log = logging.getLogger(__name__)


def _ndim(p: torch.Tensor) -> int:
    """A parameter's true rank, also for a ZeRO-3 partitioned one (whose local tensor is flat)."""
    return len(getattr(p, "ds_shape", p.shape))


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on matrices (projections, embeddings) only, not on norm gains."""
    decay = [p for p in model.parameters() if p.requires_grad and _ndim(p) >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and _ndim(p) < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def _initial_model(spec: TrainSpec, resume_dir: Path | None) -> torch.nn.Module:
    if resume_dir is not None and ckpt.is_sharded(resume_dir):  # ZeRO-3 partitions: restored after initialize
        return model_from_config(resume_dir, attention=spec.attention)
    if resume_dir is not None:
        return load_model(resume_dir, dtype=default_dtype(), attention=spec.attention)
    if spec.init.kind in ("checkpoint", "state"):
        return load_model(Path(str(spec.init.path)), dtype=default_dtype(), attention=spec.attention)
    assert spec.model is not None  # TrainSpec.from_json: a scratch init names its model
    torch.manual_seed(spec.seed)
    return build_model(spec.model.to_json(), spec.vocab_size, spec.seq_len, attention=spec.attention)


def check_environment(spec: TrainSpec) -> None:
    """Stop before anything starts when this machine cannot train as the job asks: a job given GPUs
    (``device: cuda``) whose torch sees no CUDA device (a CPU build of torch would train in fp32 over gloo for
    days), or an explicitly requested attention kernel that cannot run. One :class:`InputError` line."""
    if spec.device == "cuda" and not torch.cuda.is_available():
        cuda = torch.version.cuda
        build = f"torch {torch.__version__} (built {'without CUDA' if cuda is None else 'for CUDA ' + cuda})"
        raise InputError("device", f"the job was given GPUs (cost.gpus_per_job > 0) but {build} sees no CUDA "
                                   "device; install a CUDA build of torch or check the job's GPU allocation")
    attention_implementation(spec.attention)


@contextlib.contextmanager
def _zero3_init(config: dict[str, Any] | None) -> Iterator[None]:
    """While building or loading the model under ZeRO-3: transformers' ``HfDeepSpeedConfig`` is live, so the
    model is created inside ``deepspeed.zero.Init`` (each rank materialises only its partition) and
    ``from_pretrained`` loads into the partitions. ``config`` None: nothing. The global is unset afterwards."""
    if config is None:
        yield
        return
    from transformers.integrations.deepspeed import HfDeepSpeedConfig, unset_hf_deepspeed_config

    hf_config = HfDeepSpeedConfig(config)
    try:
        yield
    finally:
        del hf_config
        unset_hf_deepspeed_config()


def fused_cross_entropy(model: torch.nn.Module, zero_stage: int) -> bool:
    """Liger's fused linear cross-entropy (and its RMSNorm/RoPE/SwiGLU kernels) when installed and on GPU.

    Not under ZeRO-3: the fused loss reads ``lm_head.weight`` without calling the module, so ZeRO-3's gather
    hook never runs and the kernel would see an empty partition. Returns whether it was applied.
    """
    if not torch.cuda.is_available() or zero_stage == 3 or importlib.util.find_spec("liger_kernel") is None:
        return False
    try:
        from liger_kernel.transformers.monkey_patch import _apply_liger_kernel_to_instance
    except ImportError as exc:  # installed but unusable (e.g. no triton): train without it
        log.warning("liger-kernel is installed but cannot be imported (%s); using the plain loss", exc)
        return False
    _apply_liger_kernel_to_instance(model=model)
    return True


def build_optimizer(model: torch.nn.Module, opt_cfg: OptimizerSpec, offload: bool) -> torch.optim.Optimizer:
    """AdamW; with optimizer offload on GPU, DeepSpeed's CPU Adam (the fast kernel for CPU-resident states)."""
    groups = _param_groups(model, float(opt_cfg.weight_decay))
    lr, betas = float(opt_cfg.lr), (float(opt_cfg.beta1), float(opt_cfg.beta2))
    if offload and torch.cuda.is_available():
        from deepspeed.ops.adam import DeepSpeedCPUAdam

        return DeepSpeedCPUAdam(groups, lr=lr, betas=betas, adamw_mode=True)
    return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=(torch.cuda.is_available() and not offload) or None)


def mixture_sampler(spec: TrainSpec, vocab_size: int) -> tuple[MixtureSampler, list[Path]]:
    """The mixture of the run's token stores, and the stores' files."""
    ratio, seq_len = float(spec.ratio), spec.seq_len
    general = read_train_sequences(Path(str(spec.general_shards)), seq_len, vocab_size) if ratio < 1 else None
    domain = read_train_sequences(Path(str(spec.domain_shards)), seq_len, vocab_size) if ratio > 0 else None
    files = [Path(store.filename) for store in (general, domain) if store is not None]
    return MixtureSampler(general, domain, ratio, spec.batch_size, spec.seed), files


def _check_resume(state: dict[str, Any], p: TrainPlan, n_ranks: int, where: Path) -> None:
    if state["digest"] != p.digest:
        raise InputError(str(where), "holds checkpoints of another training spec; remove it to start over")
    # ZeRO-0/1/2 states load on any number of ranks (checkpoints.restore_train_state); ZeRO-3's are not re-cut.
    if state["world_size"] != n_ranks and p.spec.deepspeed.zero_stage == 3:
        problem = f"was trained on {state['world_size']} ranks under ZeRO-3; resume on as many"
        raise InputError(str(where), problem)


def _continued_state(p: TrainPlan, n_ranks: int) -> tuple[Path, int]:
    """The checkpoint (with its train state) that an ``init: {kind: state}`` run continues, and its step."""
    path = Path(str(p.spec.init.path))
    state_file = path / ckpt.TRAIN_STATE / "state.json"
    if not state_file.is_file():
        raise InputError(str(state_file), "missing: the run to continue kept no train state at this checkpoint")
    state = ckpt.read_train_state(path)
    if state["world_size"] != n_ranks and p.spec.deepspeed.zero_stage == 3:
        raise InputError(str(path), f"was trained on {state['world_size']} ranks under ZeRO-3; continue on as many")
    if not 0 < state["step"] < p.steps:
        raise InputError(str(path), f"its step {state['step']} is not inside this run's {p.steps} steps")
    return path, int(state["step"])


def setup_ranks(spec: TrainSpec, out_dir: Path) -> tuple[int, int]:
    """Threads, DeepSpeed's log level, the process group; rank 0 clears a previous attempt's leftovers.

    Returns this process's rank and the number of ranks.
    """
    if spec.threads:
        torch.set_num_threads(int(spec.threads))
    logging.getLogger("DeepSpeed").setLevel(logging.WARNING)
    ensure_distributed()
    rank, n_ranks = torch.distributed.get_rank(), torch.distributed.get_world_size()
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
        ckpt.remove_stale_staging(out_dir)
        (out_dir / RESUBMIT_MARKER).unlink(missing_ok=True)
    if n_ranks > 1:
        torch.distributed.barrier()
    return rank, n_ranks


def resume_point(p: TrainPlan, out_dir: Path, n_ranks: int) -> tuple[Path | None, int]:
    """The checkpoint to resume from (this run's newest resumable one, or a continued run's) and its step."""
    resume = ckpt.resumable_checkpoint(out_dir)
    resume_dir, start_step = None, 0
    if resume is not None:
        resume_dir, state = resume
        _check_resume(state, p, n_ranks, out_dir)
        start_step = state["step"]
        log.info("resuming from %s (step %d of %d)", resume_dir, start_step, p.steps)
    elif p.spec.init.kind == "state":  # continue another run's full state (a WSD trunk's branch point)
        resume_dir, start_step = _continued_state(p, n_ranks)
        log.info("continuing %s (step %d of %d)", resume_dir, start_step, p.steps)
    return resume_dir, start_step


def prepare_model(spec: TrainSpec, resume_dir: Path | None, config: dict[str, Any]) -> torch.nn.Module:
    """The initial model (under ZeRO-3 built into partitions), with activation checkpointing if asked for."""
    with _zero3_init(config if spec.deepspeed.zero_stage == 3 else None):
        model = _initial_model(spec, resume_dir)
    if spec.activation_checkpointing:  # recompute each block in backward; non-reentrant: same losses, ZeRO-3 too
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model
