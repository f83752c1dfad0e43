"""Continued pretraining with DeepSpeed: mixture sampling, LR schedule, checkpoints, resume, JSONL log."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn, TextIO

import numpy as np
import torch

from cpt_scaling.core.atomic import write_json
from cpt_scaling.core.digests import BackgroundCheck
from cpt_scaling.core.errors import InputError
from cpt_scaling.cost.model import flops_per_token
from cpt_scaling.data.sequences import read_train_sequences
from cpt_scaling.train import checkpoints as ckpt
from cpt_scaling.train import train_log
from cpt_scaling.train.chunked_loss import apply_chunked_loss
from cpt_scaling.train.ds_config import deepspeed_config, ensure_distributed
from cpt_scaling.train.extension_locks import use_environment_build_root, watch_stale_locks
from cpt_scaling.train.mixture import MixtureSampler, domain_sequences_before
from cpt_scaling.train.model import (
    attention_implementation,
    build_model,
    count_parameters,
    default_dtype,
    load_model,
    model_from_config,
    model_shape,
)
from cpt_scaling.train.schedule import learning_rate
from cpt_scaling.train.spec_types import OptimizerSpec, TrainPlan, TrainSpec, plan
from cpt_scaling.train.tensorboard_log import TensorBoardLog

log = logging.getLogger(__name__)

RESULT = "checkpoints.json"
DEFAULT_LOG_EVERY = 10
#: Exit status of a training job that stopped itself for a resubmission (a signal, its own deadline) after writing
#: a resumable checkpoint: EX_TEMPFAIL, "try again". The workflow resubmits it (rules/train.smk retries).
RESUBMIT_EXIT_CODE = 75
#: Written by rank 0 next to the run when it stops for a resubmission (what a launcher of several processes reads).
RESUBMIT_MARKER = "resubmit.json"
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class Resubmit(SystemExit):
    """Training stopped at a step boundary with a resumable checkpoint; exit :data:`RESUBMIT_EXIT_CODE`."""

    def __init__(self, step: int, reason: str) -> None:
        super().__init__(RESUBMIT_EXIT_CODE)
        self.step, self.reason = step, reason


class _StopSignals:
    """While training: SIGTERM/SIGUSR1 only note that the job should stop (at the next step boundary)."""

    def __init__(self) -> None:
        self.received: str | None = None
        self._old: dict[int, Any] = {}

    def _note(self, signum: int, _frame: Any) -> None:
        self.received = signal.Signals(signum).name

    def __enter__(self) -> _StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._old[sig] = signal.signal(sig, self._note)
        return self

    def __exit__(self, *_exc: object) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


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


def _fused_cross_entropy(model: torch.nn.Module, zero_stage: int) -> bool:
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


def _optimizer(model: torch.nn.Module, opt_cfg: OptimizerSpec, offload: bool) -> torch.optim.Optimizer:
    """AdamW; with optimizer offload on GPU, DeepSpeed's CPU Adam (the fast kernel for CPU-resident states)."""
    groups = _param_groups(model, float(opt_cfg.weight_decay))
    lr, betas = float(opt_cfg.lr), (float(opt_cfg.beta1), float(opt_cfg.beta2))
    if offload and torch.cuda.is_available():
        from deepspeed.ops.adam import DeepSpeedCPUAdam

        return DeepSpeedCPUAdam(groups, lr=lr, betas=betas, adamw_mode=True)
    return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=(torch.cuda.is_available() and not offload) or None)


def _sampler(spec: TrainSpec, vocab_size: int) -> tuple[MixtureSampler, list[Path]]:
    """The mixture of the run's token stores, and the stores' files."""
    ratio, seq_len = float(spec.ratio), spec.seq_len
    general = read_train_sequences(Path(str(spec.general_shards)), seq_len, vocab_size) if ratio < 1 else None
    domain = read_train_sequences(Path(str(spec.domain_shards)), seq_len, vocab_size) if ratio > 0 else None
    files = [Path(store.filename) for store in (general, domain) if store is not None]
    return MixtureSampler(general, domain, ratio, spec.batch_size, spec.seed), files


def _result(out_dir: Path, attention: str, n_params: tuple[int, int], digest: str) -> dict[str, Any]:
    found = ckpt.complete_checkpoints(out_dir)
    entries = [{"tokens": t, "path": f"{ckpt.CHECKPOINT_DIR}/{p.name}"} for t, p in found]
    return {
        "checkpoints": entries,
        "final": entries[-1]["path"],
        "attention": attention,
        "n_params": n_params[0],
        "n_params_non_embedding": n_params[1],
        "spec_digest": digest,
    }


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


def train(spec: TrainSpec | dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """Train as ``spec`` (a :class:`~cpt_scaling.train.spec_types.TrainSpec` or its JSON form) says into
    ``out_dir``, resuming from its newest checkpoint; return checkpoints.json.

    Preemption and time limits (none of them changes the weights): checkpoint_minutes (a resumable checkpoint
    under ``resume/`` once that long has passed since the last save), stop_at (Unix time by which the job must
    have stopped: it stops at the step boundary before it). On SIGTERM or SIGUSR1, or at stop_at, every rank
    finishes its optimizer step, a resumable checkpoint is written and :class:`Resubmit` (exit status
    :data:`RESUBMIT_EXIT_CODE`) is raised; a rerun resumes from it, also on another number of ranks (ZeRO 0-2).
    """
    if isinstance(spec, dict):
        spec = TrainSpec.from_json(spec)
    check_environment(spec)
    with _StopSignals() as stops:
        return _train(spec, Path(out_dir), stops)


def _train(spec: TrainSpec, out_dir: Path, stops: _StopSignals) -> dict[str, Any]:
    """:func:`train` with its stop signals noted in ``stops``."""
    use_environment_build_root()  # before DeepSpeed compiles its CPU communication op: one build per environment
    watch_stale_locks()  # before DeepSpeed loads its ops: a job killed mid-build must not hang every later job
    import deepspeed

    p = plan(spec)
    out_dir = Path(out_dir)
    result_file = out_dir / RESULT
    final_dir = out_dir / ckpt.CHECKPOINT_DIR / ckpt.checkpoint_name(p.tokens_at(p.steps))
    if result_file.is_file() and final_dir.is_dir():
        done = json.loads(result_file.read_text())
        if done.get("spec_digest") != p.digest:
            raise InputError(str(out_dir), "holds a finished run of another spec; remove it to rerun")
        log.info("%s is complete; nothing to train", out_dir)
        return done

    run = _Run(p, out_dir, final_dir)
    if run.start_step == p.steps:  # killed after the final checkpoint, before checkpoints.json
        return run.write_result()
    run.start(deepspeed)
    run.run_steps(stops)
    return run.finish()


def _setup_ranks(spec: TrainSpec, out_dir: Path) -> tuple[int, int]:
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


def _resume_point(p: TrainPlan, out_dir: Path, n_ranks: int) -> tuple[Path | None, int]:
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


def _prepare_model(spec: TrainSpec, resume_dir: Path | None, config: dict[str, Any]) -> torch.nn.Module:
    """The initial model (under ZeRO-3 built into partitions), with activation checkpointing if asked for."""
    with _zero3_init(config if spec.deepspeed.zero_stage == 3 else None):
        model = _initial_model(spec, resume_dir)
    if spec.activation_checkpointing:  # recompute each block in backward; non-reentrant: same losses, ZeRO-3 too
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model


class _Run:
    """One training run's state: set up on construction (ranks, resume point, model), then :meth:`start`,
    :meth:`run_steps` and :meth:`finish`."""

    def __init__(self, p: TrainPlan, out_dir: Path, final_dir: Path) -> None:
        spec = self.spec = p.spec
        self.p, self.out_dir, self.final_dir = p, out_dir, final_dir
        self.rank, self.n_ranks = _setup_ranks(spec, out_dir)
        self.resume_dir, self.start_step = _resume_point(p, out_dir, self.n_ranks)
        self.zero = spec.deepspeed
        self.config = deepspeed_config(spec, self.n_ranks, bf16=torch.cuda.is_available(),
                                       ranks_per_node=int(os.environ.get("LOCAL_WORLD_SIZE", self.n_ranks)))
        self.model = _prepare_model(spec, self.resume_dir, self.config)
        self.attention = str(getattr(self.model.config, "_attn_implementation", None)
                             or attention_implementation(spec.attention))
        self.n_params = count_parameters(self.model)
        self.shape = model_shape(self.model.config)
        if self.shape["vocab_size"] < spec.vocab_size:
            problem = f"{spec.vocab_size} exceeds the model's vocabulary ({self.shape['vocab_size']})"
            raise InputError("vocab_size", problem)
        self.log_file: TextIO | None = None
        self.board: TensorBoardLog | None = None

    def start(self, deepspeed: Any) -> None:
        """Optimizer and DeepSpeed engine (a resumed run's train state restored), sampler, log, stop settings."""
        spec, shape = self.spec, self.shape
        self.fused_ce = _fused_cross_entropy(self.model, self.zero.zero_stage)
        # ZeRO-3 on GPU: the logits chunk by chunk through the gathered head (Liger's fused loss cannot run there).
        self.chunked_ce = (not self.fused_ce and self.zero.zero_stage == 3 and torch.cuda.is_available()
                           and apply_chunked_loss(self.model))
        optimizer = _optimizer(self.model, spec.optimizer, self.zero.offload_optimizer)
        self.engine, *_ = deepspeed.initialize(model=self.model, optimizer=optimizer, config=self.config)
        self.gas = self.config["gradient_accumulation_steps"]
        # DeepSpeed's optimizers (ZeRO 1-3, its bf16 one) compute the global gradient norm in their step, before
        # clipping (engine.get_global_grad_norm); a plain torch optimizer under ZeRO-0 (fp32, as on CPU) leaves it
        # None, so rank 0 computes it from the gradients on the parameters.
        self.norm_by_hand = self.rank == 0 and not hasattr(self.engine.optimizer, "_global_grad_norm")
        self.micro = spec.micro_batch_size
        if self.resume_dir is not None:  # also written by another number of ranks (ZeRO 0-2)
            ckpt.restore_train_state(self.resume_dir, self.engine.optimizer, self.rank, self.n_ranks)
            if ckpt.is_sharded(self.resume_dir):
                ckpt.restore_param_partitions(self.resume_dir, self.engine.module, self.rank)
        self.sampler, stores = _sampler(spec, shape["vocab_size"])
        # Rank 0 checks the token stores against their shards' digests while the run trains (a damaged store
        # fails the job at its next save, naming the file; see save and finish), once per store: a store verified
        # by an earlier job and not rewritten since is not hashed again (core.digests' verified stamps).
        self.store_check = BackgroundCheck(stores) if self.rank == 0 else None
        self.device = self.engine.device
        self.flops_tok = flops_per_token(
            shape["n_layers"], shape["d_model"], shape["d_ff"], spec.seq_len, shape["vocab_size"],
            kv_dim=shape["kv_dim"],
        )
        self.log_every = int(spec.log_every or DEFAULT_LOG_EVERY)
        if self.rank == 0:
            self.log_file = self._open_log()
            if spec.tensorboard_dir:
                self.board = TensorBoardLog(Path(spec.tensorboard_dir), self.p.tokens_at(self.start_step))
        # Time-based resumable checkpoints and stops (signal, own deadline): decided at step boundaries, the same on
        # every rank (a MAX all-reduce of the flags over a CPU group: no device sync).
        self.checkpoint_seconds = float(spec.checkpoint_minutes or 0.0) * 60.0
        self.flag_group = None
        if self.n_ranks > 1:
            self.flag_group = torch.distributed.new_group(backend="gloo") if torch.cuda.is_available() else None

    def _open_log(self) -> TextIO:
        """Rank 0's training log, opened at the start step, with its ``start`` record."""
        p, n_params = self.p, self.n_params
        log_file = train_log.open_log(self.out_dir / train_log.LOG_NAME, self.start_step)
        resumed_from = p.tokens_at(self.start_step) if self.resume_dir is not None else None
        train_log.append(log_file, {
            "event": "start", "attention": self.attention, "n_params": n_params[0],
            "n_params_non_embedding": n_params[1], "resumed_from": resumed_from, "world_size": self.n_ranks,
            "zero_stage": self.config["zero_optimization"]["stage"], "steps": p.steps,
            "activation_checkpointing": self.spec.activation_checkpointing,
            "offload_optimizer": self.zero.offload_optimizer,
            "fused_cross_entropy": self.fused_ce, "chunked_cross_entropy": self.chunked_ce,
        })
        return log_file

    def save(self, step: int, resumable: bool = False) -> None:
        """Checkpoint after ``step`` steps (with its train state); ``resumable``: under ``resume/``.

        ZeRO-3: a resumable state holds each rank's parameter partitions (no gathered copy); only an evaluation
        checkpoint gathers the full 16-bit weights onto rank 0 (an HF model directory). The save's seconds go
        to the log (a ``save`` record), which the next submission's stop margin reads."""
        p = self.p
        if self.store_check is not None:
            self.store_check.raise_if_damaged()
        t0 = time.perf_counter()
        state = {"step": step, "tokens": p.tokens_at(step), "digest": p.digest, "world_size": self.n_ranks}
        zero3 = self.zero.zero_stage == 3
        partitions = ckpt.param_partitions(self.engine.module) if zero3 and resumable else None
        # ZeRO-3 evaluation checkpoint: every rank takes part in gathering the full 16-bit weights; rank 0 gets them.
        tensors = self.engine._zero3_consolidated_16bit_state_dict() if zero3 and not resumable else None
        path = ckpt.save_checkpoint(
            self.out_dir, p.tokens_at(step), self.engine.module, self.engine.optimizer, state, rank=self.rank,
            tensors=tensors, tokenizer_dir=Path(self.spec.tokenizer) if self.spec.tokenizer else None,
            resumable=resumable, partitions=partitions,
        )
        seconds = time.perf_counter() - t0
        if self.log_file is not None:
            train_log.append(self.log_file, {"event": "save", "step": step, "tokens": p.tokens_at(step),
                                             "resumable": resumable, "seconds": seconds})
        if self.rank == 0:
            log.info("saved %scheckpoint %s in %.1f s", "resumable " if resumable else "", path, seconds)

    def _agreed(self, *flags: bool) -> list[bool]:
        """Each flag set on any rank (a MAX all-reduce over the flag group; the flags as given on one rank)."""
        values = torch.tensor([int(f) for f in flags], dtype=torch.int32)
        if self.n_ranks > 1:
            torch.distributed.all_reduce(values, op=torch.distributed.ReduceOp.MAX, group=self.flag_group)
        return [bool(v) for v in values.tolist()]

    def run_steps(self, stops: _StopSignals) -> None:
        """The optimizer steps from the start step on: logged, checkpointed, stopped for a resubmission if told."""
        p = self.p
        if self.start_step == 0 and 0 in p.checkpoint_steps:
            self.save(0)
        self.engine.train()
        busy, interval_tokens = 0.0, 0
        last_save, longest_step = time.monotonic(), 0.0
        for step in range(self.start_step, p.steps):
            t0 = time.perf_counter()
            done = step + 1
            logged = done == p.steps or done % self.log_every == 0 or done == self.start_step + 1
            lr, loss_sum, grad_norm = self._step(step, logged)
            if logged:
                loss_value = self._mean_loss(loss_sum)  # the only host sync of the step, on logged steps
                busy += time.perf_counter() - t0
                interval_tokens += p.tokens_per_step
                tps = interval_tokens / busy
                busy, interval_tokens = 0.0, 0
                self._log_step(done, loss_value, lr, tps, grad_norm)
            else:
                busy += time.perf_counter() - t0
                interval_tokens += p.tokens_per_step
            longest_step = max(longest_step, time.perf_counter() - t0)
            if done in p.checkpoint_steps:
                self.save(done)
                last_save = time.monotonic()
            if done < p.steps:
                signalled, late, due = self._stop_flags(stops, longest_step, last_save)
                if (signalled or late or due) and done not in p.checkpoint_steps:
                    self.save(done, resumable=True)
                    last_save = time.monotonic()
                if signalled or late:
                    self._stop(done, stops, signalled)

    def _step(self, step: int, logged: bool) -> tuple[float, torch.Tensor, torch.Tensor | float | None]:
        """One optimizer step over this rank's rows of the step's batch; returns the lr, the summed loss and, on
        a ``logged`` step, rank 0's global gradient norm before clipping (:meth:`_grad_norm`; None elsewhere)."""
        lr = learning_rate(step, self.p.steps, self.spec.optimizer)
        for group in self.engine.optimizer.param_groups:
            group["lr"] = lr
        per_rank = self.spec.batch_size // self.n_ranks
        rows = self.sampler.batch(step, self.rank * per_rank, (self.rank + 1) * per_rank)  # this rank's rows only
        batch = torch.from_numpy(rows.astype(np.int64)).to(self.device)
        loss_sum = torch.zeros((), device=self.device)
        own_norm = None
        for i in range(self.gas):
            ids = batch[i * self.micro:(i + 1) * self.micro]
            loss = self.engine(input_ids=ids, labels=ids, use_cache=False).loss  # the config keeps the base's
            self.engine.backward(loss)
            if logged and self.norm_by_hand and i == self.gas - 1:  # the step's gradients, before step() clips
                own_norm = _grad_norm(self.engine.module)
            self.engine.step()
            loss_sum += loss.detach().float()
        if not logged or self.log_file is None:
            return lr, loss_sum, None
        return lr, loss_sum, own_norm if self.norm_by_hand else self.engine.get_global_grad_norm()

    def _mean_loss(self, loss_sum: torch.Tensor) -> float:
        """The step's loss, averaged over micro-batches and ranks (a host sync)."""
        loss_mean = loss_sum / self.gas
        if self.n_ranks > 1:
            torch.distributed.all_reduce(loss_mean)
            loss_mean /= self.n_ranks
        return float(loss_mean)

    def _log_step(self, done: int, loss_value: float, lr: float, tps: float,
                  grad_norm: torch.Tensor | float | None) -> None:
        """Rank 0: the ``step`` record of the log, and a progress line."""
        if self.log_file is None:
            return
        p = self.p
        peak = self.spec.peak_flops
        mfu = tps * self.flops_tok / (float(peak) * self.n_ranks) if peak else None
        grad_norm = None if grad_norm is None else float(grad_norm)
        eta_s = (p.tokens_at(p.steps) - p.tokens_at(done)) / tps if tps > 0 else None
        record = {
            "event": "step", "step": done, "tokens": p.tokens_at(done), "loss": loss_value, "lr": lr,
            "grad_norm": grad_norm, "tokens_per_s": tps, "mfu": mfu, "eta_s": eta_s,
            "domain_sequences": domain_sequences_before(done, self.spec.batch_size, float(self.spec.ratio)),
        }
        train_log.append(self.log_file, record)
        if self.board is not None:
            self.board.add(record)
        log.info("step %d/%d tokens %d loss %.4f lr %.3g grad norm %s %.0f tok/s ETA %s", done, p.steps,
                 p.tokens_at(done), loss_value, lr, "n/a" if grad_norm is None else f"{grad_norm:.3g}", tps,
                 self._eta_text(eta_s))

    def _eta_text(self, eta_s: float | None) -> str:
        """The time left to the end of this job's run (or segment), and the job's own deadline where it comes
        first (the job then stops for a resubmission, which trains the rest)."""
        if eta_s is None:
            return "n/a"
        text = _duration(eta_s)
        stop_at = self.spec.stop_at
        if stop_at is not None and time.time() + eta_s > float(stop_at):
            text += f" (this job stops for a resubmission in {_duration(max(float(stop_at) - time.time(), 0.0))})"
        return text

    def _stop_flags(self, stops: _StopSignals, longest_step: float, last_save: float) -> list[bool]:
        """Agreed over the ranks: signalled, late (the next step would pass stop_at), due (a time checkpoint)."""
        stop_at = self.spec.stop_at
        late = stop_at is not None and time.time() + longest_step >= float(stop_at)  # the next step would overrun
        due = self.checkpoint_seconds > 0 and time.monotonic() - last_save >= self.checkpoint_seconds
        return self._agreed(stops.received is not None, late, due)

    def _stop(self, done: int, stops: _StopSignals, signalled: bool) -> NoReturn:
        """Record the stop (log record and marker on rank 0) and raise :class:`Resubmit` on every rank."""
        p = self.p
        reason = f"signal {stops.received}" if stops.received else ("a signal on another rank" if signalled
                                                                   else "its deadline (stop_at)")
        if self.log_file is not None:
            train_log.append(self.log_file, {"event": "stop", "step": done, "tokens": p.tokens_at(done),
                                             "reason": reason, "exit_code": RESUBMIT_EXIT_CODE})
            self.log_file.close()
            self._close_board()
            write_json(self.out_dir / RESUBMIT_MARKER, {"step": done, "tokens": p.tokens_at(done), "reason": reason})
        log.warning("stopped at step %d of %d on %s with a resumable checkpoint; exit status %d asks "
                    "for a resubmission", done, p.steps, reason, RESUBMIT_EXIT_CODE)
        if self.n_ranks > 1:
            torch.distributed.barrier()
        raise Resubmit(done, reason)

    def _close_board(self) -> None:
        if self.board is not None:
            self.board.close()
            self.board = None

    def write_result(self) -> dict[str, Any]:
        """checkpoints.json; rank 0 writes it, drops the resumable checkpoint and (unless kept) the final state."""
        result = _result(self.out_dir, self.attention, self.n_params, self.p.digest)
        if self.rank == 0:
            ckpt.drop_resumable(self.out_dir)
            write_json(self.out_dir / RESULT, result)
            if not self.spec.keep_final_state:  # a WSD trunk segment's: later segments and branches go on
                ckpt.drop_train_state(self.final_dir)
        return result

    def finish(self) -> dict[str, Any]:
        """After the last step: close the log, write the result, wait for every rank."""
        if self.rank == 0:
            assert self.log_file is not None and self.store_check is not None
            self.store_check.raise_if_damaged(wait=True)
            self.log_file.close()
            self._close_board()
        result = self.write_result()
        if self.n_ranks > 1:
            torch.distributed.barrier()
        return result


def _grad_norm(model: torch.nn.Module) -> torch.Tensor:
    """The 2-norm of all gradients on ``model``'s parameters (after ZeRO-0's all-reduce: the global one)."""
    return torch.nn.utils.get_total_norm([p.grad for p in model.parameters() if p.grad is not None])


def _duration(seconds: float) -> str:
    """``1h02m`` / ``3m05s`` / ``12s``."""
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
