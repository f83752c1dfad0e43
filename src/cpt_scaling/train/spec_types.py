"""The training spec as typed values (what one training job trains, built by the plan and read by the trainer)
and what is derived from it: its step plan and digest.

Its JSON form (:meth:`TrainSpec.to_json`) is the job description a ``train`` rule hands its script, and what the
artifact keys and the spec digest (:func:`spec_digest`) are computed from: a spec the plan built comes back from
:meth:`TrainSpec.from_json` unchanged. Optional fields left unset (None) are not in
the JSON. Path fields keep the plan's :class:`~cpt_scaling.plan.artifact.Ref` strings, so a job's inputs are read
off its spec.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cpt_scaling.core.errors import InputError
from cpt_scaling.core.keys import canonical_json, sha256_hex

SCHEDULES = ("cosine", "wsd", "constant")
SUPPORTED_ZERO_STAGES = (0, 1, 2, 3)
GRAD_ACCUM_DTYPES = ("fp32", "bf16")
SIZE_KEYS = ("n_layers", "d_model", "n_heads", "d_ff")
REQUIRED = ("vocab_size", "seq_len", "init", "general_shards", "ratio", "tokens", "batch_size",
            "micro_batch_size", "optimizer", "seed")
OPTIMIZER_KEYS = ("lr", "weight_decay", "beta1", "beta2", "schedule")
_OPTIMIZER_OPTIONAL = ("min_lr_ratio", "warmup_fraction", "warmup_steps", "grad_clip", "decay_fraction",
                       "decay_shape")
_RUNTIME = ("threads", "peak_flops", "log_every", "checkpoint_minutes", "stop_at", "device", "attention",
            "tensorboard_dir")


def _set(**fields: Any) -> dict[str, Any]:
    """``fields`` without the unset (None) ones."""
    return {k: v for k, v in fields.items() if v is not None}


@dataclass(frozen=True)
class ModelSpec:
    """Shape of a Llama-style decoder trained from scratch (:func:`cpt_scaling.train.model.build_model`); a
    checkpoint's size may leave them None (its ``config.json`` has them)."""

    n_layers: int | None
    d_model: int | None
    n_heads: int | None
    d_ff: int | None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelSpec:
        return cls(**{k: data.get(k) for k in SIZE_KEYS})

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in SIZE_KEYS}


@dataclass(frozen=True)
class InitSpec:
    """Where a run starts. The trainer's kinds: ``scratch``, ``checkpoint`` (the weights at ``path``) and
    ``state`` (weights, optimizer, RNG and step at ``path``: a WSD branch or trunk segment). The plan's kinds,
    resolved by :func:`cpt_scaling.train.runs.resolve_init` when the job runs: ``run`` (the checkpoint of the run
    at ``run_dir`` at ``tokens``, else its final one) and ``run_state`` (that run's final state)."""

    kind: str
    path: str | None = None
    run_dir: str | None = None
    tokens: int | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> InitSpec:
        return cls(data["kind"], data.get("path"), data.get("run_dir"), data.get("tokens"))

    def to_json(self) -> dict[str, Any]:
        return _set(kind=self.kind, path=self.path, run_dir=self.run_dir, tokens=self.tokens)


@dataclass(frozen=True)
class OptimizerSpec:
    """AdamW and its LR schedule (:func:`cpt_scaling.train.schedule.learning_rate`): peak ``lr``, ``schedule``
    (cosine, wsd or constant) after a linear warmup of ``warmup_steps`` steps (else ``warmup_fraction`` of the
    run), decaying to ``lr · min_lr_ratio``; a WSD run decays over its last ``decay_fraction`` in ``decay_shape``
    (linear or 1-sqrt); ``grad_clip`` the gradient-norm clip (0 or unset: none)."""

    lr: float
    weight_decay: float
    beta1: float
    beta2: float
    schedule: str
    min_lr_ratio: float | None = None
    warmup_fraction: float | None = None
    warmup_steps: int | None = None
    grad_clip: float | None = None
    decay_fraction: float | None = None
    decay_shape: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> OptimizerSpec:
        """The optimizer section of a spec, checked as the trainer needs it."""
        missing = [k for k in OPTIMIZER_KEYS if k not in data]
        if missing:
            raise InputError("optimizer", f"missing keys {missing}")
        if data["schedule"] not in SCHEDULES:
            raise InputError("optimizer.schedule", f"{data['schedule']!r} is not one of {SCHEDULES}")
        if not 0.0 <= float(data.get("warmup_fraction", 0.0)) <= 1.0:
            raise InputError("optimizer.warmup_fraction", "must lie in [0, 1]")
        return cls(**{k: data.get(k) for k in (*OPTIMIZER_KEYS, *_OPTIMIZER_OPTIONAL)})

    def to_json(self) -> dict[str, Any]:
        return _set(**{k: getattr(self, k) for k in (*OPTIMIZER_KEYS, *_OPTIMIZER_OPTIONAL)})


@dataclass(frozen=True)
class DeepSpeedSpec:
    """DeepSpeed settings that change the numerics: ZeRO stage (3 also partitions the parameters from
    construction on), optimizer offload to CPU (stage 1-3), the dtype gradients accumulate in (fp32 or bf16)."""

    zero_stage: int = 0
    offload_optimizer: bool = False
    grad_accum_dtype: str = "fp32"

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> DeepSpeedSpec:
        """The ``deepspeed`` section with defaults, checked."""
        data = data or {}
        stage = data.get("zero_stage", 0)
        if stage not in SUPPORTED_ZERO_STAGES:
            raise InputError("deepspeed.zero_stage", f"{stage} is not supported (use {SUPPORTED_ZERO_STAGES})")
        offload = bool(data.get("offload_optimizer", False))
        if offload and stage == 0:
            raise InputError("deepspeed.offload_optimizer", "needs zero_stage 1, 2 or 3 (ZeRO-Offload)")
        accum = data.get("grad_accum_dtype", "fp32")
        if accum not in GRAD_ACCUM_DTYPES:
            raise InputError("deepspeed.grad_accum_dtype", f"{accum!r} is not one of {GRAD_ACCUM_DTYPES}")
        return cls(int(stage), offload, accum)

    def to_json(self) -> dict[str, Any]:
        return {"zero_stage": self.zero_stage, "offload_optimizer": self.offload_optimizer,
                "grad_accum_dtype": self.grad_accum_dtype}


@dataclass(frozen=True)
class TrainSpec:
    """One training run (:func:`cpt_scaling.train.trainer.train`).

    What it trains: ``model`` (scratch init) of ``vocab_size`` embedding rows on sequences of ``seq_len``
    tokens from ``init``; ``tokens`` training tokens in steps of ``batch_size`` sequences (``micro_batch_size``
    per forward pass), a ``ratio`` of them from ``domain_shards``, the rest from ``general_shards``; ``optimizer``,
    ``seed``, ``deepspeed``; a checkpoint after each of ``checkpoint_tokens`` and at the end, the last with its
    train state when ``keep_final_state`` (a WSD trunk segment, which later segments and branches continue);
    ``tokenizer`` (a directory) is copied into each checkpoint.

    Settings that never change the weights (the job's, not the plan's): ``threads``, ``activation_checkpointing``
    (recompute each block in backward), ``peak_flops`` (per device, for MFU), ``log_every`` (steps between log
    records), ``checkpoint_minutes`` (a resumable checkpoint once that long has passed since the last save),
    ``stop_at`` (Unix time by which the job must have stopped), ``device`` (``"cuda"``: the job was given GPUs
    and must not train without them; None: whatever is there) and ``attention`` (``"flash_attention_2"`` or
    ``"sdpa"`` asked for explicitly; None: flash-attn when it works, else SDPA) and ``tensorboard_dir`` (where
    rank 0 mirrors the log's step records as TensorBoard scalars; None: no TensorBoard output).
    """

    vocab_size: int
    seq_len: int
    init: InitSpec
    general_shards: str | None
    ratio: float
    tokens: int
    batch_size: int
    micro_batch_size: int
    optimizer: OptimizerSpec
    seed: int
    model: ModelSpec | None = None
    domain_shards: str | None = None
    tokenizer: str | None = None
    deepspeed: DeepSpeedSpec = field(default_factory=DeepSpeedSpec)
    checkpoint_tokens: tuple[int, ...] = ()
    keep_final_state: bool = False
    activation_checkpointing: bool = False
    threads: int | None = None
    peak_flops: float | None = None
    log_every: int | None = None
    checkpoint_minutes: float | None = None
    stop_at: float | None = None
    device: str | None = None
    attention: str | None = None
    tensorboard_dir: str | None = None

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.seq_len

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainSpec:
        """A spec from its JSON form, checked as the trainer needs it (each problem, an unknown key too, an
        :class:`InputError` naming the key)."""
        missing = [k for k in REQUIRED if k not in data]
        if missing:
            raise InputError("train spec", f"missing keys {missing}")
        unknown = sorted(set(data) - _FIELDS)
        if unknown:  # a misspelt setting would otherwise be dropped without a word
            raise InputError("train spec", f"unknown keys {unknown}")
        for key in ("vocab_size", "seq_len", "tokens", "batch_size", "micro_batch_size"):
            _positive_int(data, key)
        init = data["init"]
        if not isinstance(init, dict) or init.get("kind") not in ("scratch", "checkpoint", "state"):
            raise InputError("init.kind", "must be 'scratch', 'checkpoint' or 'state'")
        if init["kind"] in ("checkpoint", "state") and not init.get("path"):
            raise InputError("init.path", f"a {init['kind']} init needs a path")
        model = data.get("model")
        if init["kind"] == "scratch" and not isinstance(model, dict):
            raise InputError("model", "a scratch init needs model: {n_layers, d_model, n_heads, d_ff}")
        ratio = data["ratio"]
        if not isinstance(ratio, int | float) or not 0.0 <= float(ratio) <= 1.0:
            raise InputError("ratio", f"must lie in [0, 1], got {ratio!r}")
        if ratio > 0 and not data.get("domain_shards"):
            raise InputError("domain_shards", f"needed for ratio {ratio} > 0")
        optimizer = OptimizerSpec.from_json(data["optimizer"])
        if data["micro_batch_size"] > data["batch_size"]:
            raise InputError("micro_batch_size", "must not exceed batch_size")
        checkpoints = tuple(data.get("checkpoint_tokens") or ())
        _check_tokens(data["tokens"], data["batch_size"] * data["seq_len"], checkpoints)
        return cls(
            data["vocab_size"], data["seq_len"], InitSpec.from_json(init), data["general_shards"], ratio,
            data["tokens"], data["batch_size"], data["micro_batch_size"], optimizer, data["seed"],
            model=ModelSpec.from_json(model) if isinstance(model, dict) else None,
            domain_shards=data.get("domain_shards"), tokenizer=data.get("tokenizer"),
            deepspeed=DeepSpeedSpec.from_json(data.get("deepspeed")),
            checkpoint_tokens=checkpoints,
            keep_final_state=bool(data.get("keep_final_state")),
            activation_checkpointing=bool(data.get("activation_checkpointing")),
            **{k: data.get(k) for k in _RUNTIME},
        )

    def to_json(self) -> dict[str, Any]:
        """The JSON form: the plan's job description (and the trainer's input, with the job's own settings)."""
        out = {
            "vocab_size": self.vocab_size, "seq_len": self.seq_len, "init": self.init.to_json(),
            "general_shards": self.general_shards, "domain_shards": self.domain_shards, "ratio": self.ratio,
            "tokens": self.tokens, "batch_size": self.batch_size, "micro_batch_size": self.micro_batch_size,
            "optimizer": self.optimizer.to_json(), "seed": self.seed, "deepspeed": self.deepspeed.to_json(),
            "checkpoint_tokens": list(self.checkpoint_tokens),
            **_set(model=self.model.to_json() if self.model else None, tokenizer=self.tokenizer,
                   **{k: getattr(self, k) for k in _RUNTIME}),
        }
        out.update({k: True for k in ("keep_final_state", "activation_checkpointing") if getattr(self, k)})
        return out


_FIELDS = frozenset(TrainSpec.__dataclass_fields__)


def _check_tokens(tokens: int, per_step: int, checkpoints: tuple[Any, ...]) -> None:
    """``tokens`` and every checkpoint a whole number of steps, the checkpoints within the run."""
    if tokens % per_step:
        raise InputError("tokens", f"{tokens} is not a multiple of batch_size × seq_len = {per_step}")
    for t in checkpoints:
        if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t <= tokens or t % per_step:
            problem = f"{t!r} must be a multiple of {per_step} (batch_size × seq_len) in [0, {tokens}]"
            raise InputError("checkpoint_tokens", problem)


def _positive_int(data: dict[str, Any], key: str) -> int:
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InputError(key, f"must be a positive integer, got {value!r}")
    return value

# Keys that do not change the trained weights, so a resumed run may differ in them. Data and checkpoint
# paths are left out too: the caller's content-addressed keys identify what they hold, and a moved or copied
# working directory must still resume.
NON_DETERMINING = ("threads", "peak_flops", "log_every", "general_shards", "domain_shards", "tokenizer",
                   "activation_checkpointing", "checkpoint_minutes", "stop_at", "device", "attention",
                   "tensorboard_dir")


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
