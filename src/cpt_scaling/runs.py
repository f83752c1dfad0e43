"""Training-run bookkeeping shared by the workflow: where a run's weights are and how a branch starts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cpt_scaling.errors import InputError


def final_checkpoint(run_dir: str | Path) -> Path:
    """The final checkpoint directory of a finished run (from its ``checkpoints.json``)."""
    index = Path(run_dir) / "checkpoints.json"
    if not index.is_file():
        raise InputError(str(index), "run has no checkpoints.json (is the run finished?)")
    return Path(run_dir) / json.loads(index.read_text())["final"]


def resolve_init(init: dict[str, Any]) -> dict[str, Any]:
    """Turn a plan's ``{"kind": "run", "run_dir": ...}`` into the trainer's ``{"kind": "checkpoint", ...}``."""
    if init["kind"] == "run":
        return {"kind": "checkpoint", "path": str(final_checkpoint(init["run_dir"]))}
    return init
