"""Training-run bookkeeping shared by the workflow: where a run's weights are and how a branch starts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cpt_scaling.core.errors import InputError


def run_checkpoint(run_dir: str | Path, tokens: int | None = None) -> Path:
    """A finished run's checkpoint directory: the one at ``tokens``, or the final one (``checkpoints.json``)."""
    index = Path(run_dir) / "checkpoints.json"
    if not index.is_file():
        raise InputError(str(index), "run has no checkpoints.json (is the run finished?)")
    listing = json.loads(index.read_text())
    if tokens is None:
        return Path(run_dir) / listing["final"]
    for ckpt in listing["checkpoints"]:
        if ckpt["tokens"] == tokens:
            return Path(run_dir) / ckpt["path"]
    raise InputError(str(index), f"run has no checkpoint at {tokens} tokens")


def run_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """(training tokens, directory) of every checkpoint of a finished run, from its ``checkpoints.json``."""
    index = Path(run_dir) / "checkpoints.json"
    if not index.is_file():
        raise InputError(str(index), "missing: the run has not finished")
    return [(int(c["tokens"]), Path(run_dir) / c["path"]) for c in json.loads(index.read_text())["checkpoints"]]


def resolve_init(init: dict[str, Any]) -> dict[str, Any]:
    """Turn a plan's ``{"kind": "run", "run_dir": ...}`` into the trainer's ``{"kind": "checkpoint", ...}``, and
    ``{"kind": "run_state", "run_dir": ...}`` into ``{"kind": "state", ...}``."""
    if init["kind"] == "run":
        return {"kind": "checkpoint", "path": str(run_checkpoint(init["run_dir"], init.get("tokens")))}
    if init["kind"] == "run_state":  # continue the run's final state: weights, optimizer, RNG, step
        return {"kind": "state", "path": str(run_checkpoint(init["run_dir"]))}
    return init
