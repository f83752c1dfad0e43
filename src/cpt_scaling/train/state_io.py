"""Pickle-free storage of nested state (an optimizer ``state_dict``): tensors in safetensors, rest in JSON.

The structure becomes a JSON skeleton in which tensors are ``{"tensor": name}`` references into one
safetensors file; dicts keep their key types (``{"dict": [[key, value], ...]}``) and tuples stay tuples.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from cpt_scaling.core.atomic import atomic_path
from cpt_scaling.core.digests import verify_file
from cpt_scaling.core.errors import InputError


def _encode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        name = f"t{len(tensors)}"
        tensors[name] = obj.detach().contiguous()
        return {"tensor": name}
    if isinstance(obj, dict):
        return {"dict": [[_encode(k, tensors), _encode(v, tensors)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"tuple": [_encode(v, tensors) for v in obj]}
    if isinstance(obj, list):
        return [_encode(v, tensors) for v in obj]
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    raise TypeError(f"cannot store a {type(obj).__name__} in train state")


def _decode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if "tensor" in obj:
            return tensors[obj["tensor"]]
        if "tuple" in obj:
            return tuple(_decode(v, tensors) for v in obj["tuple"])
        return {_decode(k, tensors): _decode(v, tensors) for k, v in obj["dict"]}
    return obj


def save_state(obj: Any, stem: Path) -> None:
    """Write ``obj`` as ``<stem>.safetensors`` + ``<stem>.json`` (each atomically)."""
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _encode(obj, tensors)
    with atomic_path(stem.with_suffix(".safetensors")) as tmp:
        save_file({k: v.cpu() for k, v in tensors.items()}, str(tmp))
    with atomic_path(stem.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(skeleton))


def load_state(stem: Path) -> Any:
    """Read back what :func:`save_state` wrote (tensors on CPU); a truncated or corrupt file, or one that differs
    from its checkpoint's digest record, is an ``InputError``."""
    for path in (stem.with_suffix(".safetensors"), stem.with_suffix(".json")):
        verify_file(path)
    try:
        tensors = load_file(str(stem.with_suffix(".safetensors")))
    except (OSError, SafetensorError) as exc:
        raise InputError(str(stem.with_suffix(".safetensors")), f"cannot read train state: {exc}") from None
    try:
        return _decode(json.loads(stem.with_suffix(".json").read_text()), tensors)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(str(stem.with_suffix(".json")), f"cannot read train state: {exc!r}") from None
