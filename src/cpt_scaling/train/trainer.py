"""Continued pretraining with DeepSpeed: the training loop (mixture batches, LR schedule, checkpoints, time-based
stops, JSONL/TensorBoard log) and the run's checkpoints.json."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any, NoReturn, TextIO

import numpy as np
import torch

from cpt_scaling.core.atomic import write_json
from cpt_scaling.core.digests import BackgroundCheck
from cpt_scaling.core.errors import InputError
from cpt_scaling.cost.model import flops_per_token
from cpt_scaling.train import checkpoints as ckpt
from cpt_scaling.train import train_log
from cpt_scaling.train.chunked_loss import apply_chunked_loss
from cpt_scaling.train.ds_config import deepspeed_config
from cpt_scaling.train.extension_locks import use_environment_build_root, watch_stale_locks
from cpt_scaling.train.mixture import domain_sequences_before
from cpt_scaling.train.model import attention_implementation, count_parameters, model_shape
from cpt_scaling.train.resubmit import RESUBMIT_EXIT_CODE, RESUBMIT_MARKER, Resubmit, StopSignals
from cpt_scaling.train.run_setup import (
    build_optimizer,
    check_environment,
    fused_cross_entropy,
    mixture_sampler,
    prepare_model,
    resume_point,
    setup_ranks,
)
from cpt_scaling.train.schedule import learning_rate
from cpt_scaling.train.spec_types import TrainPlan, TrainSpec, plan
from cpt_scaling.train.tensorboard_log import TensorBoardLog

log = logging.getLogger(__name__)

RESULT = "checkpoints.json"
DEFAULT_LOG_EVERY = 10


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


def train(spec: TrainSpec | dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """Train as ``spec`` (a :class:`~cpt_scaling.train.spec_types.TrainSpec` or its JSON form) says into
    ``out_dir``, resuming from its newest checkpoint; return checkpoints.json.

    Preemption and time limits (none of them changes the weights): checkpoint_minutes (a resumable checkpoint
    under ``resume/`` once that long has passed since the last save), stop_at (Unix time by which the job must
    have stopped: it stops at the step boundary before it). On SIGTERM or SIGUSR1, or at stop_at, every rank
    finishes its optimizer step, a resumable checkpoint is written and
    :class:`~cpt_scaling.train.resubmit.Resubmit` (exit status
    :data:`~cpt_scaling.train.resubmit.RESUBMIT_EXIT_CODE`) is raised; a rerun resumes from it, also on another
    number of ranks (ZeRO 0-2).
    """
    if isinstance(spec, dict):
        spec = TrainSpec.from_json(spec)
    check_environment(spec)
    with StopSignals() as stops:
        return _train(spec, Path(out_dir), stops)


def _train(spec: TrainSpec, out_dir: Path, stops: StopSignals) -> dict[str, Any]:
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


class _Run:
    """One training run's state: set up on construction (ranks, resume point, model), then :meth:`start`,
    :meth:`run_steps` and :meth:`finish`."""

    def __init__(self, p: TrainPlan, out_dir: Path, final_dir: Path) -> None:
        spec = self.spec = p.spec
        self.p, self.out_dir, self.final_dir = p, out_dir, final_dir
        self.rank, self.n_ranks = setup_ranks(spec, out_dir)
        self.resume_dir, self.start_step = resume_point(p, out_dir, self.n_ranks)
        self.zero = spec.deepspeed
        self.config = deepspeed_config(spec, self.n_ranks, bf16=torch.cuda.is_available(),
                                       ranks_per_node=int(os.environ.get("LOCAL_WORLD_SIZE", self.n_ranks)))
        self.model = prepare_model(spec, self.resume_dir, self.config)
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
        self.fused_ce = fused_cross_entropy(self.model, self.zero.zero_stage)
        # ZeRO-3 on GPU: the logits chunk by chunk through the gathered head (Liger's fused loss cannot run there).
        self.chunked_ce = (not self.fused_ce and self.zero.zero_stage == 3 and torch.cuda.is_available()
                           and apply_chunked_loss(self.model))
        optimizer = build_optimizer(self.model, spec.optimizer, self.zero.offload_optimizer)
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
        self.sampler, stores = mixture_sampler(spec, shape["vocab_size"])
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

    def run_steps(self, stops: StopSignals) -> None:
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

    def _stop_flags(self, stops: StopSignals, longest_step: float, last_save: float) -> list[bool]:
        """Agreed over the ranks: signalled, late (the next step would pass stop_at), due (a time checkpoint)."""
        stop_at = self.spec.stop_at
        late = stop_at is not None and time.time() + longest_step >= float(stop_at)  # the next step would overrun
        due = self.checkpoint_seconds > 0 and time.monotonic() - last_save >= self.checkpoint_seconds
        return self._agreed(stops.received is not None, late, due)

    def _stop(self, done: int, stops: StopSignals, signalled: bool) -> NoReturn:
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
