"""Atomic writes: an artifact is either complete at its final path or absent.

Everything is written into a temporary sibling (same filesystem) and renamed into place, so a kill at any moment
never leaves a half-written file or directory that looks complete.
"""

from __future__ import annotations

import contextlib
import glob
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_UMASK = os.umask(0)
os.umask(_UMASK)


def publish(path: str | os.PathLike[str]) -> None:
    """Give a file written by a library that creates private files (safetensors) the usual permissions."""
    _publishable(Path(path), 0o666)


def _publishable(path: Path, mode: int) -> None:
    """Give a temp file/dir the permissions a normal create would have (mkstemp/mkdtemp make them private)."""
    os.chmod(path, mode & ~_UMASK)


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``final``; on success rename it onto ``final``, on error delete it."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    _publishable(tmp, 0o666)
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a fresh temporary directory; on success it replaces ``final`` (a directory) in one rename."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    _publishable(tmp, 0o777)
    try:
        yield tmp
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def remove_stale_temps(outputs: list[str | os.PathLike[str]], owned_dirs: list[str | os.PathLike[str]]) -> None:
    """Delete temporaries a killed writer left behind (only call this for paths the caller alone writes).

    For each output file, its hidden ``.<name>.*.tmp`` siblings; for each owned directory (a keyed artifact
    directory), every hidden ``.*.tmp`` entry inside it and its own ``.<dirname>.*.tmp`` siblings.
    """
    stale: list[Path] = []
    for out in map(Path, outputs):
        stale += out.parent.glob(f".{glob.escape(out.name)}.*.tmp")
    for owned in map(Path, owned_dirs):
        stale += owned.glob(".*.tmp")
        stale += owned.parent.glob(f".{glob.escape(owned.name)}.*.tmp")
    for path in stale:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


#: The key under which :func:`strict_json` notes the values it wrote as null.
NON_FINITE_KEY = "non_finite"


def _finite(obj: Any, where: str, found: list[str]) -> Any:
    """``obj`` with every NaN/Infinity float replaced by None, its JSON path appended to ``found``."""
    if isinstance(obj, dict):
        return {k: _finite(v, f"{where}.{k}" if where else str(k), found) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v, f"{where}[{i}]", found) for i, v in enumerate(obj)]
    if isinstance(obj, float) and not math.isfinite(obj):
        found.append(where)
        return None
    return obj


def strict_json(obj: Any) -> str:
    """Indented, key-sorted, standard JSON of ``obj``: NaN and Infinity (which standard JSON lacks) are written as
    null, and a top-level object gets a ``non_finite`` note listing their paths."""
    found: list[str] = []
    clean = _finite(obj, "", found)
    if found and isinstance(clean, dict):
        clean[NON_FINITE_KEY] = {"note": "these values were not finite numbers and are written as null",
                                 "paths": found}
    return json.dumps(clean, indent=2, sort_keys=True, allow_nan=False) + "\n"


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as strict JSON (:func:`strict_json`), atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(strict_json(obj))


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


#: PDF metadata without timestamps: equal figures give byte-identical files.
PDF_METADATA = {"CreationDate": None, "ModDate": None}


def write_pdf(fig: Any, path: str | os.PathLike[str]) -> None:
    """Write a matplotlib figure as a reproducible PDF (no timestamps, tight bounding box), atomically."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="pdf", bbox_inches="tight", metadata=PDF_METADATA)


def copy_file(src: str | os.PathLike[str], dest: str | os.PathLike[str]) -> None:
    """Copy ``src`` to ``dest`` atomically (a reader never sees a partial copy)."""
    with atomic_path(dest) as tmp:
        shutil.copyfile(src, tmp)
