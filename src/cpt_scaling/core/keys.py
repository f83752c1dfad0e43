"""Content addresses for artifacts.

An artifact's key is the first 16 hex digits of the sha256 of the canonical JSON of everything that determines
it: its stage name and version, its own parameters, the keys of upstream artifacts and the content digests of raw
input files. Keys are computed at parse time from config alone. Raw-file digests are cached by
(path, size, mtime) so that re-parsing the workflow (once per cluster job) stays cheap.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from cpt_scaling.core.atomic import write_json

log = logging.getLogger(__name__)

KEY_LENGTH = 16
KEY_PATTERN = f"[0-9a-f]{{{KEY_LENGTH}}}"


def canonical_json(obj: Any, *, ascii_only: bool = False, allow_nan: bool = False) -> str:
    """Canonical JSON: sorted keys, no whitespace; UTF-8 text unless ``ascii_only`` (``\\uXXXX`` escapes).

    Artifact keys use the defaults; the training spec digest (:func:`cpt_scaling.train.spec_types.spec_digest`) has
    always hashed ASCII-escaped JSON that admits NaN, and resumes compare it, so it passes both flags.
    """
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=ascii_only, allow_nan=allow_nan)


def sha256_hex(text: str) -> str:
    """sha256 of ``text``'s UTF-8 bytes, as 64 hex digits."""
    return hashlib.sha256(text.encode()).hexdigest()


def key_of(spec: dict[str, Any]) -> str:
    """First KEY_LENGTH hex digits of the sha256 of the canonical JSON of ``spec``."""
    return sha256_hex(canonical_json(spec))[:KEY_LENGTH]


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def path_sha256(path: Path) -> str:
    """sha256 of a file, or of a directory's relative file names and contents (for HF dataset/tokenizer dirs)."""
    if path.is_file():
        return file_sha256(path)
    h = hashlib.sha256()
    for sub in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(str(sub.relative_to(path)).encode() + b"\0" + file_sha256(sub).encode())
    return h.hexdigest()


class DigestCache:
    """sha256 digests of raw inputs, cached on disk by (absolute path, size, mtime_ns)."""

    def __init__(self, cache_file: str | os.PathLike[str]) -> None:
        self.cache_file = Path(cache_file)
        self._entries: dict[str, list[Any]] = {}
        self._dirty = False
        if self.cache_file.is_file():
            try:
                self._entries = json.loads(self.cache_file.read_text())
            except (OSError, ValueError):
                log.warning("ignoring unreadable digest cache %s", self.cache_file)

    def digest(self, path: str | os.PathLike[str]) -> str:
        """Content digest of a raw input file or directory."""
        p = Path(path).resolve()
        st = p.stat()
        stamp = [st.st_size, st.st_mtime_ns]
        if p.is_dir():
            stamp = [sorted((str(s.relative_to(p)), s.stat().st_size, s.stat().st_mtime_ns)
                            for s in p.rglob("*") if s.is_file())]
        entry = self._entries.get(str(p))
        if entry is not None and entry[:-1] == stamp:
            return entry[-1]
        value = path_sha256(p)
        self._entries[str(p)] = [*stamp, value]
        self._dirty = True
        return value

    def save(self) -> None:
        """Persist new digests (atomic; concurrent writers lose at most cache entries, never correctness)."""
        if self._dirty:
            try:
                write_json(self.cache_file, self._entries)
            except OSError as exc:
                log.warning("could not write digest cache %s: %s", self.cache_file, exc)
            self._dirty = False
