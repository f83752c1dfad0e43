"""The "never write over an input" rule of the command line: an output path may name no input file."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from cpt_scaling.core.errors import InputError


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths name the same file (through symlinks and hard links too)."""
    a, b = Path(a), Path(b)
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def refuse_overwrite(out: Path | None, inputs: Iterable[tuple[str, Path | None]], option: str = "--out") -> None:
    """Raise an :class:`InputError` naming ``out`` when it is the same file as any ``(flag, path)`` of ``inputs``."""
    if out is None:
        return
    for flag, path in inputs:
        if path is not None and same_file(out, path):
            raise InputError(str(out), f"{option} would overwrite the input {flag} {path}; choose another path")
