"""Content digests of artifact files: recorded when a job has written its artifact, checked when it is read.

A keyed artifact's job writes ``digests.json`` into the artifact's directory when it succeeds: the sha256 and size
of every file under the directory (logs that keep growing, ``*.jsonl``, and records themselves excepted). A training
checkpoint records its own directory when it is saved (weights and train state), so a resume inside an unfinished
job is checked too. A reader that reads a file whole anyway (loading a checkpoint to evaluate it, resuming or
branching from a state) checks it against the nearest record with :func:`verify_file`; training checks the token
stores it memory-maps in the background while it trains (:class:`BackgroundCheck`); ``cpt-scaling verify`` checks
whole trees (:func:`verify_tree`). A damaged file is an :class:`~cpt_scaling.core.errors.InputError` naming it and
the command that redoes its artifact. Nothing is silently used: a bit flipped on disk changes the digest, which the
dry run cannot see (sizes and times are unchanged) but every whole read and ``verify`` do.

Token stores are hashed once, not at every training start (a sweep's jobs read the same tens of GB): after a full
successful check, :func:`verify_file_once` writes a stamp under ``.verified/`` in the artifacts directory (outside
every artifact, so no record, key or output time changes) holding the file's path, size, mtime_ns, inode and
recorded sha256; a later check whose stamp still matches skips the hash. A rewrite changes the stamp's key, but a
bit flip that leaves the size and mtime alike (bit rot, or a write followed by ``os.utime``) does not: such damage
is caught by ``cpt-scaling verify``, which always hashes every file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cpt_scaling.core.atomic import write_json
from cpt_scaling.core.errors import InputError
from cpt_scaling.core.keys import KEY_PATTERN

log = logging.getLogger(__name__)

RECORD = "digests.json"
STAMPS = ".verified"  # folder of the verified stamps, in the artifacts directory
_SKIP_SUFFIXES = (".jsonl", ".tmp", ".log")
_CHUNK = 1 << 22
_KEYED = re.compile(f"-{KEY_PATTERN}$")  # a keyed artifact directory's name: <name>-<key>


def file_digest(path: str | os.PathLike[str]) -> str:
    """sha256 of a file's bytes (hex), read in 4 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _recorded_files(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*")):
        if (path.is_file() and path.name != RECORD and not path.name.startswith(".")
                and not path.name.endswith(_SKIP_SUFFIXES)):
            yield path


def record_digests(artifact_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Write ``digests.json`` of every file under ``artifact_dir`` (relative path -> sha256 and size): equal
    artifacts get equal records."""
    root = Path(artifact_dir)
    files = {path.relative_to(root).as_posix(): {"sha256": file_digest(path), "size": path.stat().st_size}
             for path in _recorded_files(root)}
    tmp = root / f".{RECORD}.tmp"
    tmp.write_text(json.dumps({"files": files}, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, root / RECORD)
    return files


def forget(artifact_dir: str | os.PathLike[str], prefix: str) -> None:
    """Drop the entries under ``prefix`` (a relative folder, e.g. ``train_state/``) from the artifact's record,
    before those files are removed (a record never lists files that were deleted on purpose)."""
    root = Path(artifact_dir)
    files = _read_record(root)
    if files is None:
        return
    kept = {rel: entry for rel, entry in files.items() if not rel.startswith(prefix)}
    if kept != files:
        tmp = root / f".{RECORD}.tmp"
        tmp.write_text(json.dumps({"files": kept}, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, root / RECORD)


def _read_record(root: Path) -> dict[str, dict[str, Any]] | None:
    try:
        return json.loads((root / RECORD).read_text())["files"]
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(str(root / RECORD), f"damaged digest record: {exc}") from None


def _record_root(path: Path) -> Path | None:
    """The nearest directory at or above ``path``'s folder that holds a digest record."""
    for folder in [path.parent, *path.parent.parents]:
        if (folder / RECORD).is_file():
            return folder
    return None


def redo_hint(record_dir: Path) -> str:
    """How to redo a damaged artifact: Snakemake's --forcerun of its keyed directory's spec file (every keyed job
    writes ``spec.json``), which reruns exactly the job that writes it. A damaged checkpoint (a record inside the
    artifact) is removed first, or the rerun would resume from it."""
    artifact = next((d for d in (record_dir, *record_dir.parents) if _KEYED.search(d.name)), record_dir)
    rerun = f"snakemake --forcerun {artifact / 'spec.json'} (plus your usual options)"
    return f"redo it with: {rerun}" if artifact == record_dir else f"remove {record_dir} and redo it with: {rerun}"


def _record_entry(path: Path) -> tuple[Path, dict[str, Any]] | None:
    """The nearest record's folder and its entry for ``path`` (None when no record covers it)."""
    root = _record_root(path)
    if root is None:
        return None
    entry = (_read_record(root) or {}).get(path.relative_to(root).as_posix())
    return None if entry is None else (root, entry)


def verify_file(path: str | os.PathLike[str]) -> None:
    """Check one file against its artifact's digest record (silently nothing when no record covers it: an
    artifact written before records existed, or a raw input)."""
    path = Path(path)
    found = _record_entry(path)
    if found is not None:
        _raise_if_damaged(path, *found)


def _raise_if_damaged(path: Path, root: Path, entry: dict[str, Any]) -> None:
    problem = _problem(path, entry)
    if problem:
        raise InputError(str(path), f"{problem}: the artifact is damaged; {redo_hint(root)}")


def stamp_path(record_dir: Path, path: Path) -> Path:
    """Where the verified stamp of ``path`` (recorded in ``record_dir``) lives: a flat file in ``.verified/`` of
    the artifacts directory, two levels above the keyed artifact (``<artifacts>/<stage>/<name>-<key>``; beside the
    record's folder when it is not keyed), named by the file's relative path with ``--`` for ``/`` (two files
    that shared a name would only hash again: a stamp holds its file's path)."""
    artifact = next((d for d in (record_dir, *record_dir.parents) if _KEYED.search(d.name)), None)
    base = record_dir.parent if artifact is None else artifact.parent.parent
    return base / STAMPS / f"{path.relative_to(base).as_posix().replace('/', '--')}.json"


def _stamp(path: Path, entry: dict[str, Any]) -> dict[str, Any]:
    """What a rewrite of ``path`` would change: its path, size, mtime_ns, inode, and the sha256 recorded."""
    st = path.stat()
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino,
            "sha256": entry["sha256"]}


def verify_file_once(path: str | os.PathLike[str]) -> bool:
    """:func:`verify_file`, skipped when a stamp shows the file was verified whole and not rewritten since (see
    the module's note: ``cpt-scaling verify`` still hashes it); a successful hash writes the stamp. Returns
    whether the file was hashed."""
    path = Path(path)
    found = _record_entry(path)
    if found is None:
        return False
    root, entry = found
    if not path.is_file():
        _raise_if_damaged(path, root, entry)  # missing
    stamp_file = stamp_path(root, path)
    before = _stamp(path, entry)
    try:
        if json.loads(stamp_file.read_text()) == before:
            log.info("%s: verified whole earlier and not rewritten since (%s); not hashed again", path, stamp_file)
            return False
    except (OSError, ValueError):
        pass  # no stamp, or an unreadable one: hash
    _raise_if_damaged(path, root, entry)
    if _stamp(path, entry) == before:  # not rewritten while it was hashed
        try:
            write_json(stamp_file, before)
        except OSError as exc:
            log.warning("could not write the verified stamp %s (%s): the file is hashed again next time",
                        stamp_file, exc)
    return True


def _problem(path: Path, entry: dict[str, Any]) -> str | None:
    if not path.is_file():
        return "missing"
    size = path.stat().st_size
    if size < entry["size"]:
        return f"truncated: {size} of the {entry['size']} bytes recorded when it was written"
    if size != entry["size"]:
        return f"size {size} differs from the {entry['size']} bytes recorded when it was written"
    if file_digest(path) != entry["sha256"]:
        return "content differs from the sha256 recorded when it was written"
    return None


@dataclass(frozen=True)
class Damage:
    """One damaged file of an artifact, and what is wrong with it."""

    artifact: Path
    file: str
    problem: str


def verify_tree(root: str | os.PathLike[str]) -> tuple[int, list[Damage]]:
    """Check every recorded file of every artifact under ``root`` (an artifacts tree or one artifact); returns
    the number of files checked and the damaged ones. A record inside a recorded directory (a checkpoint's, in a
    finished run) is covered by the outer one and skipped; in an unfinished run it is the only one."""
    checked = 0
    damaged: list[Damage] = []
    folders = {record.parent for record in Path(root).rglob(RECORD)}
    for artifact in sorted(folders):
        if any(parent in folders for parent in artifact.parents):
            continue
        for rel, entry in sorted((_read_record(artifact) or {}).items()):
            checked += 1
            problem = _problem(artifact / rel, entry)
            if problem:
                damaged.append(Damage(artifact, rel, problem))
    return checked, damaged


class BackgroundCheck:
    """:func:`verify_file_once` of some large files in a daemon thread (training memory-maps its token stores and
    reads a few rows of them; hashing them first would delay every start by the corpus' size). The owner calls
    :meth:`raise_if_damaged` at its save points and, with ``wait``, before it publishes its result, so a job
    reading a damaged file fails naming it instead of finishing. ``hashed`` lists the files read whole (the others
    had a matching verified stamp)."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths
        self.hashed: list[Path] = []
        self.error: InputError | None = None
        self._thread = threading.Thread(target=self._run, name="digest-check", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for path in self.paths:
            try:
                if verify_file_once(path):
                    self.hashed.append(path)
            except InputError as exc:
                self.error = exc
                return

    def raise_if_damaged(self, wait: bool = False) -> None:
        """Raise the damage found so far (``wait``: after checking every file)."""
        if wait:
            self._thread.join()
        if self.error is not None:
            raise self.error
