"""Build, load and save the causal LMs we train: from-config tiny Llama models or local HF checkpoints."""

from __future__ import annotations

import functools
import importlib.util
import logging
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, PreTrainedModel
from transformers.integrations import is_deepspeed_zero3_enabled
from transformers.utils import logging as hf_logging

from cpt_scaling.core.digests import verify_file
from cpt_scaling.core.errors import InputError
from cpt_scaling.train.spec_types import SIZE_KEYS

log = logging.getLogger(__name__)



ATTENTIONS = ("flash_attention_2", "sdpa")


@functools.cache
def flash_attn_problem() -> str | None:
    """Why flash-attn cannot run here (no CUDA, not installed, or it fails to import: e.g. a wheel built for
    another torch, whose CUDA extension does not load); None when it imports with its extension."""
    if not torch.cuda.is_available():
        return "CUDA is not available"
    if importlib.util.find_spec("flash_attn") is None:
        return "flash-attn is not installed"
    try:  # the package and its compiled CUDA extension (flash_attn_2_cuda)
        from flash_attn import flash_attn_func  # noqa: F401
    except Exception as exc:  # ImportError, OSError (undefined symbol): anything that stops its first forward
        return f"flash-attn does not import ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
    return None


def attention_implementation(requested: str | None = None) -> str:
    """The attention kernel: ``requested`` (``"sdpa"`` or ``"flash_attention_2"``, which must work here: an
    :class:`InputError` naming why not), else flash-attn when it imports with its CUDA extension, else SDPA (with
    a warning when flash-attn is installed but broken)."""
    if requested is not None and requested not in ATTENTIONS:
        raise InputError("attention", f"{requested!r} is not one of {list(ATTENTIONS)}")
    if requested == "sdpa":
        return "sdpa"
    problem = flash_attn_problem()
    if problem is None:
        return "flash_attention_2"
    if requested == "flash_attention_2":
        raise InputError("attention", f"flash_attention_2 was asked for but {problem}")
    if importlib.util.find_spec("flash_attn") is not None and torch.cuda.is_available():
        log.warning("%s; using SDPA attention", problem)
    return "sdpa"


def default_dtype() -> torch.dtype:
    """Weights dtype for training and evaluation: bf16 on GPU, fp32 on CPU."""
    return torch.bfloat16 if torch.cuda.is_available() else torch.float32


def build_model(size: dict[str, int], vocab_size: int, max_seq_len: int, *,
                attention: str | None = None) -> LlamaForCausalLM:
    """A freshly initialised Llama-style model (RMSNorm, RoPE, SwiGLU, untied embeddings) of the given size.

    ``size`` = {"n_layers", "d_model", "n_heads", "d_ff"}. Initialisation uses the global torch RNG: seed
    it first. ``attention``: :func:`attention_implementation`'s request.
    """
    missing = [k for k in SIZE_KEYS if size.get(k) is None]
    if missing:
        raise InputError("model", f"missing size keys {missing} (need {list(SIZE_KEYS)})")
    if size["d_model"] % size["n_heads"]:
        problem = f"d_model={size['d_model']} is not divisible by n_heads={size['n_heads']}"
        raise InputError("model.n_heads", problem)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=size["d_model"],
        intermediate_size=size["d_ff"],
        num_hidden_layers=size["n_layers"],
        num_attention_heads=size["n_heads"],
        num_key_value_heads=size["n_heads"],
        max_position_embeddings=max_seq_len,
        tie_word_embeddings=False,
        attn_implementation=attention_implementation(attention),
    )
    if is_deepspeed_zero3_enabled():  # under zero.Init, with HF's weight init on gathered partitions
        return LlamaForCausalLM._from_config(config)
    return LlamaForCausalLM(config)


def load_model(path: Path, *, dtype: torch.dtype | None = None, attention: str | None = None) -> PreTrainedModel:
    """Load a causal LM from a local directory with ``config.json`` and safetensors weights (no downloads;
    ``attention``: :func:`attention_implementation`'s request)."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise InputError(str(path), "not a model checkpoint: config.json is missing")
    if not ((path / "model.safetensors").is_file() or (path / "model.safetensors.index.json").is_file()):
        raise InputError(str(path), "not a model checkpoint: model.safetensors is missing")
    for weights in sorted(path.glob("*.safetensors")):  # digest, then the header of every weights file
        verify_file(weights)  # against the digest its training job recorded (a bit flip is caught here)
        try:
            with safe_open(str(weights), framework="pt"):
                pass
        except (OSError, SafetensorError) as exc:
            raise InputError(str(weights), f"truncated or corrupt weights file: {exc}") from None
    hf_logging.disable_progress_bar()  # our own logs report progress; keep rule logs free of per-load bars
    try:
        return AutoModelForCausalLM.from_pretrained(
            path,
            local_files_only=True,
            use_safetensors=True,
            dtype=dtype or default_dtype(),
            attn_implementation=attention_implementation(attention),
        )
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as exc:  # truncated or corrupt files
        raise InputError(str(path), f"cannot load the checkpoint (truncated or corrupt file?): {exc}") from None


def model_from_config(path: Path, *, attention: str | None = None) -> PreTrainedModel:
    """A model of the architecture in ``path/config.json``, freshly initialised (under ZeRO-3's ``zero.Init``
    when HF's DeepSpeed config is live: each rank builds only its partitions), for weights restored afterwards."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(str(path), local_files_only=True)
    return AutoModelForCausalLM.from_config(config, attn_implementation=attention_implementation(attention),
                                            dtype=default_dtype())


def save_model(model: PreTrainedModel, directory: Path) -> None:
    """Write ``model.safetensors`` and ``config.json`` into ``directory`` (the caller makes it atomic)."""
    from safetensors.torch import save_model as save_safetensors

    directory.mkdir(parents=True, exist_ok=True)
    save_safetensors(model, str(directory / "model.safetensors"), metadata={"format": "pt"})
    model.config.to_json_file(str(directory / "config.json"))


def model_shape(config: Any) -> dict[str, int]:
    """The cost-model shape of an HF decoder config: n_layers, d_model, d_ff, kv_dim, vocab_size."""
    d_model = int(config.hidden_size)
    n_heads = int(config.num_attention_heads)
    head_dim = int(getattr(config, "head_dim", None) or d_model // n_heads)
    n_kv = int(getattr(config, "num_key_value_heads", None) or n_heads)
    return {
        "n_layers": int(config.num_hidden_layers),
        "d_model": d_model,
        "d_ff": int(config.intermediate_size),
        "kv_dim": n_kv * head_dim,
        "vocab_size": int(config.vocab_size),
    }


def _numel(p: torch.Tensor) -> int:
    """Elements of a parameter, also of a ZeRO-3 partitioned one (whose local tensor is empty)."""
    return int(getattr(p, "ds_numel", p.numel()))


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(all parameters, non-embedding parameters) of a causal LM; shared (tied) tensors count once."""
    seen: set[int] = set()
    total = 0
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += _numel(p)
    embedding_ids = {id(model.get_input_embeddings().weight)}
    out = model.get_output_embeddings()
    if out is not None:
        embedding_ids.add(id(out.weight))
    embedding = sum(_numel(p) for p in model.parameters() if id(p) in embedding_ids)
    return total, total - embedding


def meta_non_embedding_params(checkpoint: Path) -> int:
    """Non-embedding parameters of a local checkpoint's architecture, counted on the instantiated model on the meta
    device (no weights read): for architectures the cost model has no formula for."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(str(checkpoint), local_files_only=True)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return count_parameters(model)[1]
