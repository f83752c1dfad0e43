"""Per-GPU memory model of a training job, next to the cost model (:mod:`cpt_scaling.cost.model`).

Predicts the peak bytes one rank holds while training a Llama/Qwen2-style decoder with DeepSpeed, so a sweep that
would run out of memory fails when the workflow is parsed, not after a month in the queue. All quantities are
bytes; ``GiB`` = 2**30 bytes (as DeepSpeed's estimators and ``cost.gpu_memory_gb`` count).

Notation: ``P`` total parameters (``N`` non-embedding from :mod:`cpt_scaling.cost.model` plus ``V·d`` embedding rows,
twice when the LM head is untied), ``G`` ranks (GPUs) of the job, ``L`` layers, ``d`` width, ``d_kv`` key/value
width, ``f`` MLP width, ``V`` vocabulary, ``T`` sequence length, ``b`` micro-batch, ``t = b·T`` tokens of one
micro-batch, ``e`` bytes of one activation element (2 in bf16 on GPU, 4 in fp32 on CPU).

Model states (``precision="bf16"``: bf16 weights and gradients, fp32 master weights and Adam moments; the
ZeRO paper's mixed-precision Adam, DeepSpeed's ``18 = 2 + 4 + 4 + 8`` bytes per parameter):

==========  ================  ======================================  ===========================
ZeRO stage  weights           gradients                               optimizer (master, m, v)
==========  ================  ======================================  ===========================
0           2·P               2·P + 4·P                               12·P
1           2·P               2·P + a·P (fp32 accum) or 4·P/G (bf16)  12·P/G
2           2·P               (2 + 4)·P/G                             12·P/G
3           2·P/G + 4·P_big   4·P/G                                   12·P/G
==========  ================  ======================================  ===========================

``a`` = 4 with ``grad_accum_dtype: fp32`` (a full fp32 accumulation buffer), 0 with bf16. At stages 2 and 3 the
gradient partitions are fp32 either way (DeepSpeed converts them for the optimizer step), so the dtype only
changes memory at stage 1. Stage 0 (DeepSpeed's bf16 optimizer wrapper: accumulation in bf16, fp32 master
weights) holds an fp32 copy of the gradients at the optimizer step. ``P_big`` is the largest module's parameter
count (the embedding or LM head here): ZeRO-3 gathers the module being computed and prefetches the next
(``4·P_big`` = two bf16 copies, DeepSpeed's ``largest_layer_memory``). With ``offload_optimizer`` (stages 1-3)
the fp32 gradients, master weights and moments live in CPU memory: the GPU keeps the bf16 weights (``2·P``,
``2·P/G + 4·P_big`` at stage 3) and at stage 1 the bf16 gradients. These are DeepSpeed's
``estimate_zero2/zero3_model_states_mem_needs`` (tests/test_memory.py). ZeRO-3 over several nodes uses ZeRO++
hpZ (:func:`cpt_scaling.train.ds_config.deepspeed_config`): one more bf16 partition of the weights within the
node of ``R`` GPUs, ``2·P/R``.
``precision="fp32"`` (CPU training): 4-byte weights and gradients, 8-byte moments, no master copy.

Activations saved for the backward pass, per layer and token, as the HF decoder layer stores them with
SDPA/flash attention (no ``T²`` score matrix): each RMSNorm keeps its input upcast to fp32 (``4d``; in fp32 that is
the input itself) and its output (``e·d``); attention keeps the rotated q and k, v, the attention output, the
o-projection's contiguous input and one more ``d``-wide copy (``e·(4d + 2·d_kv)``); the gated MLP keeps gate,
SiLU(gate), up and their product (``e·4f``)::

    A_layer = 8d + e·(6d + 2·d_kv + 4f)          (bf16: 20d + 4·d_kv + 8f bytes; fp32: 4·(10d + 4f) without GQA)

(counted with ``torch.autograd.graph.saved_tensors_hooks`` on the project's model: exactly ``10d + 4f`` fp32
elements per layer and token). Both add the final norm (``t·(4d + e·d)``).

Logits and loss: the LM head's logits (``e·V`` per token), the fp32 log-softmax the cross-entropy saves and, in the
backward pass, its incoming gradient and the logits' gradient (``3·4·V``): ``t·V·(e + 12)``. With a fused
linear cross-entropy (Liger, ``fused_loss``) logits are never materialised: chunks of about ``t·d/V`` rows,
the input gradient and the fp32 weight gradient, ``t·d·(e + 12) + 4·V·d``. Under ZeRO-3 on GPU the trainer's
chunked loss (:mod:`cpt_scaling.train.chunked_loss`) holds one chunk of :data:`LOSS_CHUNK_ROWS` positions at a
time: ``min(t, LOSS_CHUNK_ROWS)·V·(e + 12)``.

Peak. Without checkpointing all ``L`` layers' activations are live when the loss's backward pass runs:
``states + t·L·A_layer + final norm + logits``. With activation checkpointing (non-reentrant, one checkpoint per
decoder layer) only each layer's input is kept (``t·L·e·d``); the peak is the larger of the loss's backward pass
(``logits``) and one layer recomputed during its backward with the gradients flowing through it
(``2·t·A_layer``), on top of ``states + t·L·e·d + final norm``. (``activations`` in an estimate holds the kept
activations plus whatever the recomputed layer needs beyond the logits' memory.)

Framework: DeepSpeed's gradient reduce and all-gather buckets with more than one rank (``2 · min(P, 5e8) ·
2`` bytes at stages 1-2, once at stage 0 and 3), and on GPU 2 GiB of CUDA context, cuBLAS workspaces and NCCL
buffers plus 10 % of activations and logits for allocator fragmentation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from cpt_scaling.core.errors import InputError
from cpt_scaling.cost import model as cost

GIB = 2**30
#: DeepSpeed's default reduce / all-gather bucket (elements).
BUCKET_ELEMENTS = 500_000_000
#: Fixed per-GPU overhead: CUDA context, cuBLAS workspaces, NCCL buffers.
GPU_FIXED_OVERHEAD = 2 * GIB
#: Caching-allocator fragmentation, as a fraction of activation and logit memory.
FRAGMENTATION = 0.10
#: Positions per LM-head chunk of the trainer's chunked loss under ZeRO-3 (:mod:`cpt_scaling.train.chunked_loss`;
#: a few chunks per micro-batch: each is one more gather of the head).
LOSS_CHUNK_ROWS = 2048


@dataclass(frozen=True)
class ModelShape:
    """What the memory model needs of a decoder: its dimensions and parameter counts."""

    n_layers: int
    d_model: int
    n_heads: int
    n_kv_heads: int
    d_ff: int
    vocab_size: int
    n_non_embedding: int
    tied_embeddings: bool = False

    @property
    def kv_dim(self) -> int:
        return self.n_kv_heads * (self.d_model // self.n_heads)

    @property
    def embedding_params(self) -> int:
        """Token embedding plus LM head (one matrix when tied)."""
        return self.vocab_size * self.d_model * (1 if self.tied_embeddings else 2)

    @property
    def total_params(self) -> int:
        return self.n_non_embedding + self.embedding_params

    @property
    def largest_module_params(self) -> int:
        """Parameters of the largest single module (what ZeRO-3 gathers at once)."""
        return max(self.vocab_size * self.d_model, self.d_model * self.d_ff, self.d_model * self.d_model)

    @classmethod
    def from_size(cls, size: Mapping[str, Any], vocab_size: int) -> ModelShape:
        """The shape of a sweep size (``models.sizes.<name>``); ``N`` from the cost model."""
        vocab = size.get("vocab_size") or vocab_size
        kv_heads = size.get("n_kv_heads") or size["n_heads"]
        return cls(size["n_layers"], size["d_model"], size["n_heads"], kv_heads, size["d_ff"], vocab,
                   _non_embedding(size), bool(size.get("tied_embeddings")))


def _non_embedding(size: Mapping[str, Any]) -> int:
    """``N`` of a size by the cost model (its family-aware count when it has one)."""
    exact = getattr(cost, "size_non_embedding_params", None)
    if exact is not None:
        return int(exact(dict(size)))
    kv_heads = size.get("n_kv_heads")
    kv_dim = kv_heads * (size["d_model"] // size["n_heads"]) if kv_heads else None
    return cost.n_params_non_embedding(size["n_layers"], size["d_model"], size["d_ff"], kv_dim=kv_dim)


@dataclass(frozen=True)
class TrainSetup:
    """The settings of one training job that change its memory."""

    seq_len: int
    micro_batch_size: int
    gpus: int = 1  # ranks over which ZeRO shards (all GPUs of the job)
    zero_stage: int = 0
    offload_optimizer: bool = False
    activation_checkpointing: bool = False
    grad_accum_dtype: str = "fp32"
    precision: str = "bf16"  # "bf16" (GPU mixed precision) or "fp32" (CPU)
    fused_loss: bool = False
    chunked_loss: bool = False  # the trainer's chunked loss (ZeRO-3 on GPU, where Liger's fused one cannot run)
    on_gpu: bool = True
    hpz_partition: int = 0  # ZeRO++ hpZ: the 16-bit weights' second partition within a node of this many GPUs

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], **overrides: Any) -> TrainSetup:
        """The setup a config's training jobs run with (bf16 on GPUs, fp32 without)."""
        t, c = cfg["training"], cfg["cost"]
        gpu = c["gpus_per_job"] > 0
        hpz = c["gpus_per_job"] // c["nodes_per_job"] if gpu and c["nodes_per_job"] > 1 and t["zero_stage"] == 3 else 0
        setup = cls(seq_len=cfg["shards"]["seq_len"], micro_batch_size=t["micro_batch_size"],
                    gpus=max(1, c["gpus_per_job"] if gpu else t["processes_per_node"] * c["nodes_per_job"]),
                    zero_stage=t["zero_stage"], offload_optimizer=t["offload_optimizer"],
                    activation_checkpointing=t["activation_checkpointing"], grad_accum_dtype=t["grad_accum_dtype"],
                    precision="bf16" if gpu else "fp32", on_gpu=gpu, hpz_partition=hpz,
                    chunked_loss=gpu and t["zero_stage"] == 3)
        return replace(setup, **overrides)


@dataclass(frozen=True)
class MemoryEstimate:
    """Predicted peak bytes of one rank, by component."""

    params: int
    grads: int
    optimizer: int
    activations: int
    logits: int
    buffers: int
    overhead: int

    @property
    def model_states(self) -> int:
        """Weights, gradients and optimizer states (what DeepSpeed's estimators count)."""
        return self.params + self.grads + self.optimizer

    @property
    def total(self) -> int:
        return self.model_states + self.activations + self.logits + self.buffers + self.overhead

    @property
    def gib(self) -> float:
        return self.total / GIB

    def as_gib(self) -> dict[str, float]:
        """Every component and the total in GiB."""
        out = {k: v / GIB for k, v in asdict(self).items()}
        out["total"] = self.gib
        return out


def model_state_bytes(shape: ModelShape, setup: TrainSetup) -> tuple[int, int, int]:
    """(weights, gradients, optimizer states) bytes on one GPU (table in the module docstring)."""
    p, g, stage = shape.total_params, max(1, setup.gpus), setup.zero_stage
    if setup.offload_optimizer and stage == 0:
        raise ValueError("optimizer offload needs ZeRO stage 1 or higher")
    if setup.precision == "fp32":  # no master copy: weights are the fp32 parameters
        w, grad, opt = 4.0, 4.0, 8.0
        params = w * p / g if stage == 3 else w * p
        grads = grad * p / g if stage >= 2 else grad * p
        optim = opt * p / g if stage >= 1 else opt * p
        if setup.offload_optimizer:
            optim = 0.0
            grads = 0.0 if stage >= 2 else grads
        if stage == 3:
            params += 2 * w * shape.largest_module_params
        return round(params), round(grads), round(optim)
    accum = 4.0 if setup.grad_accum_dtype == "fp32" else 0.0
    if stage == 3:
        params = 2.0 * p / g + 4.0 * shape.largest_module_params
        if setup.hpz_partition:  # ZeRO++ hpZ: a second bf16 partition within the node
            params += 2.0 * p / setup.hpz_partition
        grads, optim = 4.0 * p / g, 12.0 * p / g
        if setup.offload_optimizer:
            grads = optim = 0.0
    elif stage == 2:
        params, grads, optim = 2.0 * p, 6.0 * p / g, 12.0 * p / g
        if setup.offload_optimizer:
            grads = optim = 0.0
    elif stage == 1:
        params, optim = 2.0 * p, 12.0 * p / g
        grads = 2.0 * p + (accum * p if accum else 4.0 * p / g)
        if setup.offload_optimizer:
            grads, optim = 2.0 * p, 0.0
    else:
        params, grads, optim = 2.0 * p, 6.0 * p, 12.0 * p
    return round(params), round(grads), round(optim)


def activation_element_bytes(setup: TrainSetup) -> int:
    """Bytes of one activation element: 2 (bf16) or 4 (fp32)."""
    return 2 if setup.precision == "bf16" else 4


def layer_activation_bytes_per_token(shape: ModelShape, setup: TrainSetup) -> int:
    """``A_layer = 8d + e·(6d + 2·d_kv + 4f)``: what one decoder layer saves for backward, per token."""
    e, d = activation_element_bytes(setup), shape.d_model
    return 8 * d + e * (6 * d + 2 * shape.kv_dim + 4 * shape.d_ff)


def activation_bytes(shape: ModelShape, setup: TrainSetup) -> int:
    """Activations at the peak of one micro-batch beyond its logits (module docstring, "Peak")."""
    e, d = activation_element_bytes(setup), shape.d_model
    tokens = setup.micro_batch_size * setup.seq_len
    layer = layer_activation_bytes_per_token(shape, setup)
    final_norm = 4 * d + e * d
    if not setup.activation_checkpointing:
        return tokens * (shape.n_layers * layer + final_norm)
    kept = tokens * (shape.n_layers * e * d + final_norm)
    return kept + max(0, 2 * tokens * layer - logit_bytes(shape, setup))


def logit_bytes(shape: ModelShape, setup: TrainSetup) -> int:
    """Logits and cross-entropy of one micro-batch: ``t·V·(e + 12)``, fused ``t·d·(e + 12) + 4·V·d``, chunked
    ``min(t, LOSS_CHUNK_ROWS)·V·(e + 12)``."""
    e = activation_element_bytes(setup)
    tokens = setup.micro_batch_size * setup.seq_len
    if setup.chunked_loss and not setup.fused_loss:
        return min(tokens, LOSS_CHUNK_ROWS) * shape.vocab_size * (e + 12)
    if setup.fused_loss:
        return tokens * shape.d_model * (e + 12) + 4 * shape.vocab_size * shape.d_model
    return tokens * shape.vocab_size * (e + 12)


def buffer_bytes(shape: ModelShape, setup: TrainSetup) -> int:
    """DeepSpeed's communication buckets (only with more than one rank)."""
    if setup.gpus <= 1:
        return 0
    bucket = min(shape.total_params, BUCKET_ELEMENTS) * 2
    return 2 * bucket if setup.zero_stage in (1, 2) else bucket


def estimate(shape: ModelShape, setup: TrainSetup) -> MemoryEstimate:
    """Predicted peak memory of one rank training ``shape`` under ``setup``."""
    params, grads, optim = model_state_bytes(shape, setup)
    acts, logits = activation_bytes(shape, setup), logit_bytes(shape, setup)
    overhead = GPU_FIXED_OVERHEAD + round(FRAGMENTATION * (acts + logits)) if setup.on_gpu else 0
    return MemoryEstimate(params, grads, optim, acts, logits, buffer_bytes(shape, setup), overhead)


# -- what fits ---------------------------------------------------------------------------------------------------
#: Relative throughput cost of each change (a heuristic to rank the settings that fit): ZeRO-3's extra all-gathers,
#: checkpointing's recomputed forward (a third more FLOPs), optimizer offload's CPU step and PCIe traffic.
COST_ZERO3, COST_CHECKPOINTING, COST_OFFLOAD = 1.1, 4 / 3, 2.0
COST_HALVED_MICRO_BATCH = 1.03  # per halving of the micro-batch: smaller matmuls


def _setup_cost(base: TrainSetup, s: TrainSetup) -> float:
    c = 1.0
    if s.zero_stage == 3 and base.zero_stage < 3:
        c *= COST_ZERO3
    if s.activation_checkpointing and not base.activation_checkpointing:
        c *= COST_CHECKPOINTING
    if s.offload_optimizer and not base.offload_optimizer:
        c *= COST_OFFLOAD
    return c * COST_HALVED_MICRO_BATCH ** math.log2(base.micro_batch_size / s.micro_batch_size)


def cheapest_fit(shape: ModelShape, setup: TrainSetup, limit_bytes: float, batch_size: int
                 ) -> tuple[TrainSetup, MemoryEstimate] | None:
    """The least costly change of ZeRO stage (up to 3), micro-batch (a divisor of ``batch_size // gpus``),
    activation checkpointing and optimizer offload under which ``shape`` fits ``limit_bytes``; None if none."""
    per_rank = max(1, batch_size // max(1, setup.gpus))
    micros = [m for m in range(setup.micro_batch_size, 0, -1) if per_rank % m == 0 or m == setup.micro_batch_size]
    best: tuple[float, TrainSetup, MemoryEstimate] | None = None
    for stage in range(setup.zero_stage, 4):
        for ckpt in sorted({setup.activation_checkpointing, True}):
            for offload in sorted({setup.offload_optimizer, stage > 0}):
                for micro in micros:
                    s = replace(setup, zero_stage=stage, activation_checkpointing=ckpt,
                                offload_optimizer=offload, micro_batch_size=micro)
                    est = estimate(shape, s)
                    if est.total <= limit_bytes:
                        c = _setup_cost(setup, s)
                        if best is None or c < best[0]:
                            best = (c, s, est)
                        break  # larger micro-batches are cheaper: stop at the first that fits
    return None if best is None else (best[1], best[2])


def describe_change(base: TrainSetup, s: TrainSetup) -> str:
    """The config edits that turn ``base`` into ``s`` (e.g. ``training.zero_stage: 3``)."""
    parts = []
    if s.activation_checkpointing != base.activation_checkpointing:
        parts.append("training.activation_checkpointing: true")
    if s.zero_stage != base.zero_stage:
        parts.append(f"training.zero_stage: {s.zero_stage}")
    if s.micro_batch_size != base.micro_batch_size:
        parts.append(f"training.micro_batch_size: {s.micro_batch_size}")
    if s.offload_optimizer != base.offload_optimizer:
        parts.append("training.offload_optimizer: true")
    return ", ".join(parts)


# -- evaluation ----------------------------------------------------------------------------------------------------
#: Positions per LM-head chunk of the evaluator (:data:`cpt_scaling.evaluate.heldout.LOGIT_ROWS`).
EVAL_LOGIT_ROWS = 4096


def eval_estimate(shape: ModelShape, seq_len: int, batch_size: int, *, on_gpu: bool = True) -> MemoryEstimate:
    """Peak memory of evaluating ``shape`` (bf16 on GPU, fp32 on CPU; no gradients, no KV cache).

    Weights ``e·P``; the decoder's output and its shifted copy (``2·e·d`` per token) plus one layer's transient
    tensors (``e·(4d + 2·d_kv + 3f)`` per token) for a batch of ``batch_size·T`` tokens; one LM-head chunk of
    :data:`EVAL_LOGIT_ROWS` positions (``e·V`` logits, their fp32 copy and the log-softmax: ``(e + 8)·V``).
    """
    e = 2 if on_gpu else 4
    tokens = batch_size * seq_len
    d = shape.d_model
    acts = tokens * (2 * e * d + e * (4 * d + 2 * shape.kv_dim + 3 * shape.d_ff))
    logits = min(tokens, EVAL_LOGIT_ROWS) * shape.vocab_size * (e + 8)
    overhead = GPU_FIXED_OVERHEAD + round(FRAGMENTATION * (acts + logits)) if on_gpu else 0
    return MemoryEstimate(e * shape.total_params, 0, 0, acts, logits, 0, overhead)


# -- the parse-time check ------------------------------------------------------------------------------------------
def size_shape(cfg: Mapping[str, Any], size: str) -> ModelShape:
    """The memory model's shape of ``models.sizes.<size>`` (embedding rows: the size's, else the tokenizer's)."""
    return ModelShape.from_size(cfg["models"]["sizes"][size], cfg["tokenizer"]["vocab_size"] or 0)


def train_estimate(cfg: Mapping[str, Any], size: str) -> MemoryEstimate:
    """Predicted peak per GPU (per process without GPUs) of a training job of ``size`` under the config.

    Assumes the unfused loss below ZeRO-3 (the trainer uses Liger's fused cross-entropy only where it is installed
    on the nodes) and the chunked loss under ZeRO-3 on GPU (the trainer's own)."""
    return estimate(size_shape(cfg, size), TrainSetup.from_config(cfg))


def check_fits(cfg: Mapping[str, Any], where: str) -> None:
    """With GPUs (``cost.gpus_per_job > 0``), refuse a sweep whose largest training job is predicted above
    ``cost.gpu_memory_gb``: one :class:`~cpt_scaling.core.errors.InputError` line naming the size, the prediction
    and the cheapest setting that fits (:func:`cheapest_fit`). Optimizer offload needs ZeRO stage 1 or more."""
    training = cfg["training"]
    if training["offload_optimizer"] and training["zero_stage"] == 0:
        raise InputError(where, "training.offload_optimizer: needs training.zero_stage 1, 2 or 3")
    if not cfg["cost"]["gpus_per_job"]:
        return
    limit = cfg["cost"]["gpu_memory_gb"] * GIB
    estimates = {size: train_estimate(cfg, size) for size in cfg["models"]["sizes"]}
    size, worst = max(estimates.items(), key=lambda kv: kv[1].total)
    if worst.total <= limit:
        return
    setup = TrainSetup.from_config(cfg)
    fit = cheapest_fit(size_shape(cfg, size), setup, limit, training["batch_size"])
    advice = (f"the cheapest setting that fits: {describe_change(setup, fit[0])} ({fit[1].gib:.1f} GiB)" if fit
              else "no setting of checkpointing, ZeRO stage, micro-batch or offload fits: use more GPUs per job")
    raise InputError(where, f"models.sizes.{size}: a training job needs {worst.gib:.1f} GiB per GPU by the memory "
                            f"model, above cost.gpu_memory_gb={cfg['cost']['gpu_memory_gb']:g}; {advice}")
