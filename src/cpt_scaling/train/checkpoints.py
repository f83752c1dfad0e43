"""Checkpoint layout, atomic multi-rank writing, and the resumable train state (safetensors + JSON).

``checkpoints/tokens-<012d>/`` holds ``model.safetensors`` + ``config.json`` (a loadable HF model) and, for
the newest checkpoint only, ``train_state/``: ``state.json`` (step, tokens, spec digest, world size) and per
rank ``rank-<05d>.{safetensors,json}`` (optimizer state, fp32 master partitions under ZeRO/bf16, RNG state).
Everything is written into a hidden staging directory that is renamed into place when complete, so a
checkpoint directory either is complete or does not exist. ``state.json`` is written last and deleted first.
Each checkpoint records the digests of its files (``digests.json``, :mod:`cpt_scaling.core.digests`) when it is
saved; resuming and branching check the weights, ``state.json`` and this rank's state file against it, so a flipped
bit is an error naming the file, not a silently different run.

``resume/tokens-<012d>/`` holds at most one *resumable* checkpoint in the same layout (under ZeRO-3 without
``model.safetensors``: each rank's file also holds its parameter partitions, :func:`param_partitions`, and
``config.json`` describes the model; no copy of the weights is gathered): a time-based or
signal-triggered save between evaluation checkpoints (``training.checkpoint_minutes``, SIGTERM/SIGUSR1). It is
never listed in ``checkpoints.json`` nor evaluated; an evaluation checkpoint at or past it removes it, and a
finished run removes the directory. The train state is rank-independent on load: ZeRO-1/2 partitions written
by N ranks are re-cut for M ranks (:func:`restore_train_state`).
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
from safetensors import safe_open
from safetensors.torch import save_file

from cpt_scaling.core.atomic import publish, write_json
from cpt_scaling.core.digests import forget, record_digests, verify_file
from cpt_scaling.core.errors import InputError
from cpt_scaling.data.tokenizer_files import copy_tokenizer
from cpt_scaling.train.state_io import _decode, load_state, save_state

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
RESUME_DIR = "resume"
NAME = re.compile(r"^tokens-(\d{12})$")
TRAIN_STATE = "train_state"


def checkpoint_name(tokens: int) -> str:
    """Directory name of the checkpoint after ``tokens`` training tokens."""
    return f"tokens-{tokens:012d}"


def complete_checkpoints(out_dir: Path, kind: str = CHECKPOINT_DIR) -> list[tuple[int, Path]]:
    """(tokens, directory) of every complete checkpoint under ``out_dir``, oldest first (``kind``
    :data:`RESUME_DIR`: the resumable ones)."""
    root = Path(out_dir) / kind
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := NAME.match(p.name)) and p.is_dir()]
    return sorted(found)


def read_train_state(checkpoint: Path) -> dict[str, Any]:
    """A checkpoint's ``train_state/state.json``, checked against the checkpoint's digest record."""
    state_file = checkpoint / TRAIN_STATE / "state.json"
    verify_file(state_file)
    try:
        return json.loads(state_file.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(str(state_file), f"cannot read train state: {exc}") from None


def resumable_checkpoint(out_dir: Path) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint (evaluation or resumable) that still has a complete train state, with its
    ``state.json``; at equal tokens the evaluation checkpoint."""
    best: tuple[int, int, Path, dict[str, Any]] | None = None
    for rank, kind in ((1, CHECKPOINT_DIR), (0, RESUME_DIR)):
        for tokens, path in reversed(complete_checkpoints(out_dir, kind)):
            state_file = path / TRAIN_STATE / "state.json"
            if state_file.is_file():
                if best is None or (tokens, rank) > best[:2]:
                    best = (tokens, rank, path, read_train_state(path))
                break
    return None if best is None else (best[2], best[3])


def remove_stale_staging(out_dir: Path) -> None:
    """Delete staging directories left by a killed run."""
    for kind in (CHECKPOINT_DIR, RESUME_DIR):
        root = Path(out_dir) / kind
        if root.is_dir():
            for p in root.iterdir():
                if p.name.startswith(".") and p.name.endswith(".staging"):
                    shutil.rmtree(p, ignore_errors=True)


def drop_resumable(out_dir: Path, below: int | None = None) -> None:
    """Remove resumable checkpoints (those with fewer than ``below`` tokens; None: all, and the directory)."""
    for tokens, path in complete_checkpoints(out_dir, RESUME_DIR):
        if below is None or tokens < below:
            drop_train_state(path)
            shutil.rmtree(path, ignore_errors=True)
    if below is None:
        shutil.rmtree(Path(out_dir) / RESUME_DIR, ignore_errors=True)


def drop_train_state(checkpoint: Path) -> None:
    """Remove a checkpoint's train state (``state.json`` first: a partial removal is never resumed from; then its
    entries in the checkpoint's digest record)."""
    state_dir = checkpoint / TRAIN_STATE
    (state_dir / "state.json").unlink(missing_ok=True)
    forget(checkpoint, f"{TRAIN_STATE}/")
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
    """``model.safetensors``, ``config.json`` and ``generation_config.json`` of an HF model (also for DeepSpeed's
    flat-buffer views): a checkpoint differs from its base in its weights (and their ``dtype``) only.

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
    generation = getattr(model, "generation_config", None)
    if generation is not None:  # the base's generation settings (its file, as loaded), as save_pretrained would
        generation.to_json_file(str(directory / "generation_config.json"))


def copy_tokenizer_files(tokenizer_dir: Path, directory: Path) -> None:
    """Copy a HF tokenizer's files (``tokenizer.json``, its config, vocabularies, chat template) into
    ``directory``, so ``AutoTokenizer.from_pretrained(directory)`` works without the sweep."""
    copy_tokenizer(Path(tokenizer_dir), directory)


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


def _fsync(path: Path) -> None:
    """Flush a file's (or a directory's entries') data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_files(directory: Path, names: list[str]) -> None:
    for name in names:
        _fsync(directory / name)


def param_partitions(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """This rank's ZeRO-3 partition of every parameter (``ds_tensor``: flat, padded), by name; tied tensors once."""
    seen: set[int] = set()
    out = {}
    for name, p in model.named_parameters():
        if id(p) not in seen:
            seen.add(id(p))
            out[name] = p.ds_tensor.detach()
    return out


def restore_param_partitions(checkpoint: Path, model: torch.nn.Module, rank: int) -> None:
    """Copy this rank's saved ZeRO-3 parameter partitions (:func:`param_partitions`) into the live ones."""
    saved = load_rank_state(checkpoint, rank)["params"]
    live = param_partitions(model)
    if saved.keys() != live.keys():
        raise InputError(str(checkpoint / TRAIN_STATE), "its parameter partitions do not match the model")
    with torch.no_grad():
        for name, tensor in live.items():
            tensor.copy_(saved[name])


def is_sharded(checkpoint: Path) -> bool:
    """Whether a checkpoint holds its weights only as per-rank ZeRO-3 partitions (a resumable state: no
    ``model.safetensors``, loaded by building the model from ``config.json`` and restoring the partitions)."""
    state_file = checkpoint / TRAIN_STATE / "state.json"
    return state_file.is_file() and bool(read_train_state(checkpoint).get("sharded"))


def save_checkpoint(
    out_dir: Path, tokens: int, model: Any, optimizer: Any, state: dict[str, Any], *, rank: int,
    tensors: dict[str, torch.Tensor] | None = None, tokenizer_dir: Path | None = None, resumable: bool = False,
    partitions: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write checkpoint ``tokens`` (all ranks call this); returns its directory.

    ``state`` (JSON) goes to ``train_state/state.json``. Older checkpoints lose their train state afterwards.
    ``tensors``: rank 0's full model weights when the model is partitioned (ZeRO-3), else None.
    ``partitions``: this rank's ZeRO-3 parameter partitions instead (:func:`param_partitions`): each rank writes
    its own, rank 0 only ``config.json``, never a gathered copy (a resumable state; ``state["sharded"]``).
    ``tokenizer_dir``: its tokenizer files are copied in, so the checkpoint is a self-contained HF directory.
    ``resumable``: a resumable-only checkpoint under :data:`RESUME_DIR` (replaces the previous one; not
    evaluated). An evaluation checkpoint removes the resumable ones with fewer tokens.

    Order: the digests of every file are recorded, every file is fsynced, then the staging directory renamed into
    place (and its parent fsynced), then the older states removed; a save killed before the rename leaves the
    previous state as it was.
    """
    root = Path(out_dir) / (RESUME_DIR if resumable else CHECKPOINT_DIR)
    final = root / checkpoint_name(tokens)
    staging = root / f".{final.name}.staging"
    if rank == 0:
        shutil.rmtree(staging, ignore_errors=True)
        (staging / TRAIN_STATE).mkdir(parents=True)
    _barrier()
    rank_state = {"optimizer": optimizer_state(optimizer), "rng": rng_state()}
    if partitions is not None:
        rank_state["params"] = partitions
    stem = f"rank-{rank:05d}"
    save_state(rank_state, staging / TRAIN_STATE / stem)
    _fsync_files(staging / TRAIN_STATE, [f"{stem}.safetensors", f"{stem}.json"])
    _barrier()
    if rank == 0:
        if partitions is None:
            write_model(model, staging, tensors)
        else:
            model.config.to_json_file(str(staging / "config.json"))
            state = {**state, "sharded": True}
        if tokenizer_dir is not None and not resumable:
            copy_tokenizer_files(Path(tokenizer_dir), staging)
        write_json(staging / TRAIN_STATE / "state.json", state)
        record_digests(staging)  # every rank's state file is complete (the barrier above)
        _fsync_files(staging, [p.name for p in staging.iterdir() if p.is_file()])
        _fsync_files(staging / TRAIN_STATE, ["state.json", "."])
        _fsync(staging)
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
        _fsync(root)
        if resumable:  # the newest state supersedes every older one, evaluation checkpoints' included
            for _, older in complete_checkpoints(out_dir, RESUME_DIR):
                if older != final:
                    shutil.rmtree(older, ignore_errors=True)
            for older_tokens, older in complete_checkpoints(out_dir):
                if older_tokens < tokens:
                    drop_train_state(older)
        else:
            for _, older in complete_checkpoints(out_dir):
                if older != final:
                    drop_train_state(older)
            drop_resumable(out_dir, below=tokens + 1)
    _barrier()
    return final


def load_rank_state(checkpoint: Path, rank: int) -> dict[str, Any]:
    """This rank's optimizer and RNG state from a checkpoint's train state."""
    return load_state(checkpoint / TRAIN_STATE / f"rank-{rank:05d}")


# -- resuming on another world size -------------------------------------------------------------------------


class _TensorRef:
    """A tensor of a rank's train-state file, read only when (and as far as) it is needed."""

    __slots__ = ("file", "name")

    def __init__(self, file: Path, name: str) -> None:
        self.file, self.name = file, name

    def shape(self) -> list[int]:
        with safe_open(str(self.file), "pt") as f:
            return list(f.get_slice(self.name).get_shape())

    def read(self, start: int | None = None, stop: int | None = None) -> torch.Tensor:
        with safe_open(str(self.file), "pt") as f:
            if start is None:
                return f.get_tensor(self.name)
            return f.get_slice(self.name)[start:stop]


class _Refs:
    def __init__(self, file: Path) -> None:
        self.file = file

    def __getitem__(self, name: str) -> _TensorRef:
        return _TensorRef(self.file, name)


def _lazy_rank_state(checkpoint: Path, rank: int) -> dict[str, Any]:
    """A rank's train state with :class:`_TensorRef` in place of its tensors (nothing large is read)."""
    stem = checkpoint / TRAIN_STATE / f"rank-{rank:05d}"
    verify_file(stem.with_suffix(".json"))  # the tensors are read in slices: `cpt-scaling verify` checks them
    try:
        return _decode(json.loads(stem.with_suffix(".json").read_text()), _Refs(stem.with_suffix(".safetensors")))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(str(stem.with_suffix(".json")), f"cannot read train state: {exc!r}") from None


def _materialise(obj: Any) -> Any:
    if isinstance(obj, _TensorRef):
        return obj.read()
    if isinstance(obj, dict):
        return {k: _materialise(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_materialise(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_materialise(v) for v in obj)
    return obj


def _recut(parts: list[_TensorRef], length: int, rank: int) -> torch.Tensor:
    """Rank ``rank``'s slice of ``length`` elements of the flat vector that ``parts`` (old ranks' equal
    partitions, in rank order) cut; elements past the old vector's end (alignment padding) are zero."""
    old = parts[0].shape()[0]
    start, stop = rank * length, (rank + 1) * length
    out: torch.Tensor | None = None
    for k, ref in enumerate(parts):
        lo, hi = max(k * old, start), min((k + 1) * old, stop)
        if lo < hi:
            piece = ref.read(lo - k * old, hi - k * old)
            if out is None:
                out = torch.zeros(length, dtype=piece.dtype)
            out[lo - start:hi - start] = piece
    if out is None:  # only padding on this rank
        out = torch.zeros(length, dtype=parts[0].read(0, 1).dtype)
    return out


def _partitioned(optimizer: Any) -> bool:
    """Whether the optimizer's fp32 masters and states are cut over the data-parallel ranks (ZeRO-1/2, the
    BF16 optimizer), as opposed to replicated (plain torch optimizer, FP16_Optimizer)."""
    return bool(getattr(optimizer, "single_partition_of_fp32_groups", None)
                or getattr(optimizer, "fp32_groups_flat_partition", None))


def restore_train_state(checkpoint: Path, optimizer: Any, rank: int, n_ranks: int) -> None:
    """Load a checkpoint's optimizer and RNG state into this rank, also when it was written by another number
    of ranks.

    Same world size: each rank's own files. Otherwise, ZeRO-1/2 partitions: the fp32 masters and every
    optimizer-state tensor of a group are consecutive equal slices of one flat vector whose layout (parameter
    order, per-parameter alignment) does not depend on the world size, only its tail padding does; each new rank
    reads just the slices of the old files that overlap its new partition. Replicated state (ZeRO-0): rank 0's.
    RNG: the old rank of the same index, else rank 0's. ZeRO-3 partitions are not re-cut (the caller refuses).
    """
    state = read_train_state(checkpoint)
    saved = int(state["world_size"])
    if saved == n_ranks:
        rank_state = load_rank_state(checkpoint, rank)
        load_optimizer_state(optimizer, rank_state["optimizer"])
        set_rng_state(rank_state["rng"])
        return
    if getattr(optimizer, "round_robin_gradients", False):
        raise ValueError("round-robin gradient partitions depend on the world size; cannot re-cut them")
    set_rng_state(_materialise(_lazy_rank_state(checkpoint, min(rank, saved - 1))["rng"]))
    olds = [_lazy_rank_state(checkpoint, k)["optimizer"] for k in range(saved)]
    template = olds[0]
    masters = _master_partitions(optimizer)
    if masters is None or not _partitioned(optimizer):
        load_optimizer_state(optimizer, _materialise(template))
        return
    new_masters = [_recut([o["masters"][i] for o in olds], live.numel(), rank).to(live.dtype)
                   for i, live in enumerate(masters)]
    new_state: dict[Any, Any] = {}
    for index, entry in template["base"]["state"].items():
        old_len = template["masters"][index].shape()[0]
        new_state[index] = {
            key: (_recut([o["base"]["state"][index][key] for o in olds], masters[index].numel(), rank)
                  if isinstance(value, _TensorRef) and value.shape() == [old_len] else _materialise(value))
            for key, value in entry.items()}
    base = {"state": new_state, "param_groups": _materialise(template["base"]["param_groups"])}
    load_optimizer_state(optimizer, {"base": base, "masters": new_masters})
    log.info("re-cut the ZeRO train state of %d ranks for rank %d of %d", saved, rank, n_ranks)
