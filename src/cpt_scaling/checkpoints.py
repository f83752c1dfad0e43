"""Checkpoint layout, atomic multi-rank writing, and the resumable train state (safetensors + JSON).

``checkpoints/tokens-<012d>/`` holds ``model.safetensors`` + ``config.json`` (a loadable HF model) and, for
the newest checkpoint only, ``train_state/``: ``state.json`` (step, tokens, spec digest, world size) and per
rank ``rank-<05d>.{safetensors,json}`` (optimizer state, fp32 master partitions under ZeRO/bf16, RNG state).
Everything is written into a hidden staging directory that is renamed into place when complete, so a
checkpoint directory either is complete or does not exist. ``state.json`` is written last and deleted first.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from cpt_scaling.atomic import publish, write_json
from cpt_scaling.state_io import load_state, save_state

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
NAME = re.compile(r"^tokens-(\d{12})$")
TRAIN_STATE = "train_state"
# Name prefixes of the files that make up a Hugging Face tokenizer directory.
TOKENIZER_FILES = ("tokenizer", "special_tokens_map", "added_tokens", "vocab", "merges", "chat_template")


def checkpoint_name(tokens: int) -> str:
    """Directory name of the checkpoint after ``tokens`` training tokens."""
    return f"tokens-{tokens:012d}"


def complete_checkpoints(out_dir: Path) -> list[tuple[int, Path]]:
    """(tokens, directory) of every complete checkpoint under ``out_dir``, oldest first."""
    root = Path(out_dir) / CHECKPOINT_DIR
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := NAME.match(p.name)) and p.is_dir()]
    return sorted(found)


def resumable_checkpoint(out_dir: Path) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint that still has a complete train state, with its ``state.json``."""
    for _, path in reversed(complete_checkpoints(out_dir)):
        state_file = path / TRAIN_STATE / "state.json"
        if state_file.is_file():
            return path, json.loads(state_file.read_text())
    return None


def remove_stale_staging(out_dir: Path) -> None:
    """Delete staging directories left by a killed run."""
    root = Path(out_dir) / CHECKPOINT_DIR
    if root.is_dir():
        for p in root.iterdir():
            if p.name.startswith(".") and p.name.endswith(".staging"):
                shutil.rmtree(p, ignore_errors=True)


def drop_train_state(checkpoint: Path) -> None:
    """Remove a checkpoint's train state (``state.json`` first: a partial removal is never resumed from)."""
    state_dir = checkpoint / TRAIN_STATE
    (state_dir / "state.json").unlink(missing_ok=True)
    shutil.rmtree(state_dir, ignore_errors=True)


def _tied_aliases(model: torch.nn.Module) -> set[str]:
    """Names of parameters that are another name's tensor (tied weights), all but the first of each group."""
    first: dict[int, str] = {}
    aliases = set()
    for name, param in model.named_parameters(remove_duplicate=False):
        if id(param) in first:
            aliases.add(name)
        else:
            first[id(param)] = name
    return aliases


def _model_tensors(model: torch.nn.Module, state: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """CPU copies of the model's state dict (or of ``state``, e.g. ZeRO-3's gathered one); tied tensors are
    stored once, first name wins."""
    tensors: dict[str, torch.Tensor] = {}
    seen: set[tuple[int, tuple[int, ...]]] = set()
    aliases = _tied_aliases(model) if state is not None else set()
    for name, t in (model.state_dict() if state is None else state).items():
        if name in aliases:
            continue
        key = (t.data_ptr(), tuple(t.shape))
        if key in seen:
            continue
        seen.add(key)
        t = t.detach()
        # A gathered state is rank 0's own CPU copy already: no second copy of a large model in host memory.
        tensors[name] = (t if state is not None and t.device.type == "cpu" else t.to("cpu", copy=True)).contiguous()
    return tensors


def write_model(model: Any, directory: Path, state: dict[str, torch.Tensor] | None = None) -> None:
    """``model.safetensors`` + ``config.json`` of an HF model (also for DeepSpeed's flat-buffer views).

    ``state``: the full weights when the model's own are partitioned (ZeRO-3's gathered 16-bit state dict).
    """
    directory.mkdir(parents=True, exist_ok=True)
    tensors = _model_tensors(model, state)
    save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})
    publish(directory / "model.safetensors")  # readable by the group on a shared filesystem
    model.config.architectures = [type(model).__name__]
    # The weights' dtype, always: a model built from config has none and a loaded (resumed) one has one, and a
    # resumed run must write the same config.json as an uninterrupted one.
    model.config.dtype = next((t.dtype for t in tensors.values() if t.is_floating_point()), None)
    model.config.to_json_file(str(directory / "config.json"))


def copy_tokenizer_files(tokenizer_dir: Path, directory: Path) -> None:
    """Copy a HF tokenizer's files (``tokenizer.json``, its config, vocabularies, chat template) into
    ``directory``, so ``AutoTokenizer.from_pretrained(directory)`` works without the sweep."""
    for path in sorted(Path(tokenizer_dir).iterdir()):
        if path.is_file() and path.name.startswith(TOKENIZER_FILES):
            shutil.copyfile(path, directory / path.name)


def _master_partitions(optimizer: Any) -> list[torch.Tensor] | None:
    """fp32 master weights of DeepSpeed's optimizer wrappers (None for a plain torch optimizer).

    ZeRO-1/2: ``single_partition_of_fp32_groups``; ZeRO-3: ``fp32_partitioned_groups_flat``; BF16_Optimizer:
    ``fp32_groups_flat_partition``; the FP16_Optimizer that DeepSpeed uses for bf16 without ZeRO:
    ``fp32_groups_flat``.
    """
    attrs = ("single_partition_of_fp32_groups", "fp32_partitioned_groups_flat", "fp32_groups_flat_partition",
             "fp32_groups_flat")
    for attr in attrs:
        masters = getattr(optimizer, attr, None)
        if masters:
            return list(masters)
    return None


@contextlib.contextmanager
def _base_param_groups(optimizer: Any) -> Iterator[None]:
    """ZeRO-3 empties its base optimizer's param groups between steps; refill them while the state is read."""
    refill = getattr(optimizer, "_set_fp32_optimizer_param_groups", None)
    if refill is None:
        yield
        return
    refill()
    try:
        yield
    finally:
        optimizer._clear_fp32_optimizer_param_groups()


def optimizer_state(optimizer: Any) -> dict[str, Any]:
    """This rank's optimizer state: the base torch optimizer's state dict and any fp32 master partitions."""
    masters = _master_partitions(optimizer)
    base = optimizer.optimizer if masters is not None else optimizer
    with _base_param_groups(optimizer):
        return {"base": base.state_dict(), "masters": masters}


def load_optimizer_state(optimizer: Any, state: dict[str, Any]) -> None:
    """Restore what :func:`optimizer_state` captured (same ZeRO stage and world size)."""
    masters = _master_partitions(optimizer)
    base = optimizer.optimizer if masters is not None else optimizer
    if (masters is None) != (state["masters"] is None):
        raise ValueError("train state and optimizer disagree on master weights (ZeRO stage or precision?)")
    if masters is not None:
        with torch.no_grad():
            for live, saved in zip(masters, state["masters"], strict=True):
                live.copy_(saved)
    with _base_param_groups(optimizer):
        base.load_state_dict(state["base"])


def rng_state() -> dict[str, Any]:
    """Torch CPU (and CUDA) RNG state."""
    cuda = torch.cuda.get_rng_state() if torch.cuda.is_available() else None
    return {"cpu": torch.get_rng_state(), "cuda": cuda}


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore :func:`rng_state`."""
    torch.set_rng_state(state["cpu"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def _barrier() -> None:
    if torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1:
        torch.distributed.barrier()


def save_checkpoint(
    out_dir: Path, tokens: int, model: Any, optimizer: Any, state: dict[str, Any], *, rank: int,
    tensors: dict[str, torch.Tensor] | None = None, tokenizer_dir: Path | None = None,
) -> Path:
    """Write checkpoint ``tokens`` (all ranks call this); returns its directory.

    ``state`` (JSON) goes to ``train_state/state.json``. Older checkpoints lose their train state afterwards.
    ``tensors``: rank 0's full model weights when the model is partitioned (ZeRO-3), else None.
    ``tokenizer_dir``: its tokenizer files are copied in, so the checkpoint is a self-contained HF directory.
    """
    root = Path(out_dir) / CHECKPOINT_DIR
    final = root / checkpoint_name(tokens)
    staging = root / f".{final.name}.staging"
    if rank == 0:
        shutil.rmtree(staging, ignore_errors=True)
        (staging / TRAIN_STATE).mkdir(parents=True)
    _barrier()
    rank_state = {"optimizer": optimizer_state(optimizer), "rng": rng_state()}
    save_state(rank_state, staging / TRAIN_STATE / f"rank-{rank:05d}")
    _barrier()
    if rank == 0:
        write_model(model, staging, tensors)
        if tokenizer_dir is not None:
            copy_tokenizer_files(Path(tokenizer_dir), staging)
        write_json(staging / TRAIN_STATE / "state.json", state)
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
        for _, older in complete_checkpoints(out_dir):
            if older != final:
                drop_train_state(older)
    _barrier()
    return final


def load_rank_state(checkpoint: Path, rank: int) -> dict[str, Any]:
    """This rank's optimizer and RNG state from a checkpoint's train state."""
    return load_state(checkpoint / TRAIN_STATE / f"rank-{rank:05d}")
