"""What the sweep needs of local Hugging Face directories, read from their JSON files (no torch, no model load):
a checkpoint's architecture (``config.json``) and a tokenizer's vocabulary (``tokenizer.json``).

The cost model, ``N`` and the train jobs take a checkpoint size's shape from here, so a user names a size by its
path only; values also written in the config must agree. Cheap enough for every parse of the workflow.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cpt_scaling.core.errors import InputError

# Size keys (``models.sizes.<name>``) and the config.json fields they come from, first match wins.
SHAPE_FIELDS: dict[str, tuple[str, ...]] = {
    "n_layers": ("num_hidden_layers", "n_layer"),
    "d_model": ("hidden_size", "n_embd"),
    "n_heads": ("num_attention_heads", "n_head"),
    "d_ff": ("intermediate_size", "n_inner"),
    "n_kv_heads": ("num_key_value_heads",),
    "head_dim": ("head_dim",),
    "vocab_size": ("vocab_size",),
    "tied_embeddings": ("tie_word_embeddings",),
    "model_type": ("model_type",),
    "attention_bias": ("attention_bias",),
    "mlp_bias": ("mlp_bias",),
}
REQUIRED = ("n_layers", "d_model", "n_heads", "d_ff")
#: config.json fields holding the longest sequence the model was built for, first match wins.
POSITION_FIELDS = ("max_position_embeddings", "n_positions", "max_sequence_length")


def _read_config(checkpoint: str | Path) -> dict[str, Any]:
    """The decoder's fields of the checkpoint directory's ``config.json``."""
    path = Path(checkpoint) / "config.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(str(path), f"cannot read the checkpoint's config: {exc}") from None
    return config.get("text_config") or config  # multimodal wrappers keep the decoder's fields there


def checkpoint_positions(checkpoint: str | Path) -> tuple[str, int] | None:
    """``(field, value)`` of the longest sequence the checkpoint takes (``max_position_embeddings``), or None."""
    config = _read_config(checkpoint)
    for name in POSITION_FIELDS:
        if isinstance(config.get(name), int):
            return name, int(config[name])
    return None


def read_checkpoint_shape(checkpoint: str | Path) -> dict[str, Any]:
    """The size keys of the checkpoint directory's ``config.json`` (a key the file lacks is left out)."""
    path = Path(checkpoint) / "config.json"
    config = _read_config(checkpoint)
    shape: dict[str, Any] = {}
    for key, fields in SHAPE_FIELDS.items():
        for name in fields:
            if config.get(name) is not None:
                shape[key] = config[name]
                break
    missing = [k for k in REQUIRED if k not in shape]
    if missing:
        raise InputError(str(path), f"no {', '.join(missing)} in config.json: not a decoder-only causal LM?")
    return shape


def tokenizer_vocab_size(tokenizer_dir: Path) -> int:
    """Number of token ids of a local tokenizer (largest id + 1, added tokens included), from ``tokenizer.json``."""
    path = Path(tokenizer_dir) / "tokenizer.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(str(path), f"cannot read the tokenizer (a fast tokenizer's tokenizer.json): {exc}") from None
    vocab = (data.get("model") or {}).get("vocab")
    if isinstance(vocab, dict):
        ids = list(vocab.values())
    elif isinstance(vocab, list):  # Unigram: [[piece, score], ...], ids are positions
        ids = [len(vocab) - 1] if vocab else []
    else:
        raise InputError(str(path), "no model.vocab: not a tokenizers-library tokenizer file")
    ids += [t["id"] for t in data.get("added_tokens") or []]
    if not ids:
        raise InputError(str(path), "the tokenizer has no tokens")
    return max(ids) + 1
