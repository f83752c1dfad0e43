"""The quantities derived from a training spec: steps, checkpoint steps, digest."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cpt_scaling.core.keys import canonical_json, sha256_hex
from cpt_scaling.train.spec_types import TrainSpec

# Keys that do not change the trained weights, so a resumed run may differ in them. Data and checkpoint
# paths are left out too: the caller's content-addressed keys identify what they hold, and a moved or copied
# working directory must still resume.
NON_DETERMINING = ("threads", "peak_flops", "log_every", "general_shards", "domain_shards", "tokenizer",
                   "activation_checkpointing", "checkpoint_minutes", "stop_at")


@dataclass(frozen=True)
class TrainPlan:
    """A validated spec plus derived values."""

    spec: TrainSpec
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


def plan(spec: TrainSpec) -> TrainPlan:
    """The step plan of ``spec`` (checked by :meth:`TrainSpec.from_json`); its digest is that of its JSON."""
    per_step = spec.tokens_per_step
    steps = spec.tokens // per_step
    ckpt_steps = {steps} | {t // per_step for t in spec.checkpoint_tokens}
    return TrainPlan(spec, per_step, steps, tuple(sorted(ckpt_steps)), spec_digest(spec.to_json()))
