"""Validation of a training spec and the quantities derived from it (steps, checkpoint steps, digest)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cpt_scaling.core.errors import InputError
from cpt_scaling.core.keys import canonical_json, sha256_hex
from cpt_scaling.train.schedule import SCHEDULES

REQUIRED = ("vocab_size", "seq_len", "init", "general_shards", "ratio", "tokens", "batch_size",
            "micro_batch_size", "optimizer", "seed")
OPTIMIZER_KEYS = ("lr", "weight_decay", "beta1", "beta2", "schedule")
# Keys that do not change the trained weights, so a resumed run may differ in them. Data and checkpoint
# paths are left out too: the caller's content-addressed keys identify what they hold, and a moved or copied
# working directory must still resume.
NON_DETERMINING = ("threads", "peak_flops", "log_every", "general_shards", "domain_shards", "tokenizer",
                   "activation_checkpointing", "checkpoint_minutes", "stop_at")


@dataclass(frozen=True)
class TrainPlan:
    """A validated spec plus derived values."""

    spec: dict[str, Any]
    tokens_per_step: int
    steps: int
    checkpoint_steps: tuple[int, ...]  # optimizer steps after which to save, ascending, ends with ``steps``
    digest: str

    def tokens_at(self, step: int) -> int:
        """Training tokens seen after ``step`` optimizer steps."""
        return step * self.tokens_per_step


def spec_digest(spec: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of ``spec`` without :data:`NON_DETERMINING` keys and ``init.path``."""
    core = {k: v for k, v in spec.items() if k not in NON_DETERMINING}
    core["init"] = {k: v for k, v in spec["init"].items() if k != "path"}
    return sha256_hex(canonical_json(core, ascii_only=True, allow_nan=True))


def _positive_int(spec: dict[str, Any], key: str) -> int:
    value = spec[key]
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InputError(key, f"must be a positive integer, got {value!r}")
    return value


def plan(spec: dict[str, Any]) -> TrainPlan:
    """Validate ``spec`` (see :func:`cpt_scaling.train.trainer.train`) and derive the step plan."""
    missing = [k for k in REQUIRED if k not in spec]
    if missing:
        raise InputError("train spec", f"missing keys {missing}")
    for key in ("vocab_size", "seq_len", "tokens", "batch_size", "micro_batch_size"):
        _positive_int(spec, key)
    init = spec["init"]
    if not isinstance(init, dict) or init.get("kind") not in ("scratch", "checkpoint", "state"):
        raise InputError("init.kind", "must be 'scratch', 'checkpoint' or 'state'")
    if init["kind"] in ("checkpoint", "state") and not init.get("path"):
        raise InputError("init.path", f"a {init['kind']} init needs a path")
    if init["kind"] == "scratch" and not isinstance(spec.get("model"), dict):
        raise InputError("model", "a scratch init needs model: {n_layers, d_model, n_heads, d_ff}")
    ratio = spec["ratio"]
    if not isinstance(ratio, int | float) or not 0.0 <= float(ratio) <= 1.0:
        raise InputError("ratio", f"must lie in [0, 1], got {ratio!r}")
    if ratio > 0 and not spec.get("domain_shards"):
        raise InputError("domain_shards", f"needed for ratio {ratio} > 0")
    opt = spec["optimizer"]
    missing = [k for k in OPTIMIZER_KEYS if k not in opt]
    if missing:
        raise InputError("optimizer", f"missing keys {missing}")
    if opt["schedule"] not in SCHEDULES:
        raise InputError("optimizer.schedule", f"{opt['schedule']!r} is not one of {SCHEDULES}")
    if not 0.0 <= float(opt.get("warmup_fraction", 0.0)) <= 1.0:
        raise InputError("optimizer.warmup_fraction", "must lie in [0, 1]")
    if spec["micro_batch_size"] > spec["batch_size"]:
        raise InputError("micro_batch_size", "must not exceed batch_size")

    per_step = spec["batch_size"] * spec["seq_len"]
    tokens = spec["tokens"]
    if tokens % per_step:
        raise InputError("tokens", f"{tokens} is not a multiple of batch_size × seq_len = {per_step}")
    steps = tokens // per_step
    ckpt_steps = {steps}
    for t in spec.get("checkpoint_tokens") or []:
        if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t <= tokens or t % per_step:
            problem = f"{t!r} must be a multiple of {per_step} (batch_size × seq_len) in [0, {tokens}]"
            raise InputError("checkpoint_tokens", problem)
        ckpt_steps.add(t // per_step)
    return TrainPlan(spec, per_step, steps, tuple(sorted(ckpt_steps)), spec_digest(spec))
