"""Stream JSON-lines files (plain, gzip, zstd or bzip2) as Arrow tables: a fast C++ path with an exact Python
fallback.

The fast path is Arrow's streaming JSON reader (C++, decompression and parsing release the GIL). Anything it
cannot take — a parse error, a column whose type changes between records, a field first seen late in the file, a
record bigger than a block, invalid UTF-8, or a batch the caller's validation rejects — hands over to the Python
reader, which resumes at the first record not yet yielded and either reads on (the input was fine, only unusual)
or raises the precise ``InputError`` with the 1-based line number.
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import logging
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.json as pa_json

from cpt_scaling.core.errors import InputError

try:  # ISA-L's gzip decompresses about twice as fast as zlib; Arrow's own gzip stream is the fallback
    from isal import igzip as _isal_gzip
    from isal.isal_zlib import error as _IsalError
except ImportError:  # pragma: no cover - isal is a dependency, but the reader works without it
    _isal_gzip = None
    _IsalError = zlib.error

log = logging.getLogger(__name__)

# Bytes per Arrow JSON block: a record longer than this falls back to the Python reader.
JSON_BLOCK_BYTES = 1 << 20
_FAST_PATH_ERRORS = (pa.ArrowException, InputError, OSError, EOFError, zlib.error, _IsalError, UnicodeDecodeError)

# (raw table, first row or line number of that table, "row"/"line"/"record") -> validated batch
Normalise = Callable[[pa.Table, int, str], pa.RecordBatch]


def iter_jsonl(path: Path, batch_size: int, text_column: str, normalise: Normalise) -> Iterator[pa.RecordBatch]:
    """Yield ``normalise``-d batches of about ``batch_size`` records from a JSON-lines file (see
    :data:`COMPRESSION_SUFFIXES` for the compressed forms)."""
    n_done = 0
    try:
        for table in _arrow_tables(path, batch_size, text_column):
            batch = normalise(table, n_done, "record")
            yield batch
            n_done += table.num_rows
        return
    except _FAST_PATH_ERRORS as exc:
        log.debug("%s: Arrow JSON reader stopped after %d records (%s); reading on in Python", path, n_done, exc)
    for table, first_line in _python_tables(path, batch_size, text_column, skip=n_done):
        yield normalise(table, first_line, "line")


def _arrow_tables(path: Path, batch_size: int, text_column: str) -> Iterator[pa.Table]:
    """Arrow's streaming JSON reader, re-cut into tables of ``batch_size`` rows (the last one shorter)."""
    read_options = pa_json.ReadOptions(block_size=JSON_BLOCK_BYTES)
    parse_options = pa_json.ParseOptions(explicit_schema=pa.schema([(text_column, pa.string())]))
    with _open_stream(path) as stream:
        reader = pa_json.open_json(stream, read_options=read_options, parse_options=parse_options)
        pending: list[pa.RecordBatch] = []
        n_pending = 0
        for batch in reader:
            pending.append(batch)
            n_pending += batch.num_rows
            while n_pending >= batch_size:
                table = pa.Table.from_batches(pending, schema=reader.schema)
                yield table.slice(0, batch_size)
                rest = table.slice(batch_size)
                pending, n_pending = rest.to_batches(), rest.num_rows
        if n_pending:
            yield pa.Table.from_batches(pending, schema=reader.schema)


#: Compression by file-name suffix (DCLM ships ``.jsonl.zst``, Dolma ``.json.gz``); anything else is plain text.
COMPRESSION_SUFFIXES = {".gz": "gzip", ".zst": "zstd", ".zstd": "zstd", ".bz2": "bz2"}


def compression_of(path: Path) -> str | None:
    """The compression codec a file's name announces (``gzip``, ``zstd``, ``bz2``), or None."""
    return COMPRESSION_SUFFIXES.get(Path(path).suffix)


def _open_stream(path: Path) -> pa.NativeFile:
    """The file's decompressed bytes (ISA-L for gzip when installed, else Arrow's codec streams)."""
    codec = compression_of(path)
    if codec == "gzip" and _isal_gzip is not None:
        return pa.PythonFile(_isal_gzip.open(path, "rb"), mode="r")
    return pa.input_stream(str(path), compression=codec)


def _open_binary(path: Path) -> Any:
    """A binary line-iterable file object of the decompressed bytes (the Python reader's view of the file)."""
    codec = compression_of(path)
    if codec == "gzip":
        return gzip.open(path, "rb")
    if codec == "bz2":
        return bz2.open(path, "rb")
    if codec == "zstd":
        return io.BufferedReader(pa.input_stream(str(path), compression="zstd"))
    return open(path, "rb")


def _python_tables(path: Path, batch_size: int, text_column: str, skip: int) -> Iterator[tuple[pa.Table, int]]:
    """Parse JSON lines in Python (skipping blank lines and the first ``skip`` records) into tables."""
    where = str(path)
    records: list[dict[str, Any]] = []
    first_line = 1
    lineno = 0
    n_records = 0
    try:
        with _open_binary(path) as fh:
            for lineno, raw in enumerate(fh, start=1):
                if not raw.strip():
                    continue
                n_records += 1
                if n_records <= skip:
                    continue
                rec = _parse_line(raw, where, lineno, text_column)
                if not records:
                    first_line = lineno
                records.append(rec)
                if len(records) >= batch_size:
                    yield _records_table(records), first_line
                    records = []
    except (OSError, EOFError, zlib.error) as exc:
        problem = f"cannot read (corrupt or truncated file?) near line {lineno + 1}: {exc}"
        raise InputError(where, problem) from None
    if records:
        yield _records_table(records), first_line


def _parse_line(raw: bytes, where: str, lineno: int, text_column: str) -> dict[str, Any]:
    """Decode and parse one line into a JSON object whose text column, if present, is a string."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(where, f"line {lineno}: not valid UTF-8 ({exc.reason})") from None
    try:
        rec = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InputError(where, f"line {lineno}: invalid JSON ({exc.msg})") from None
    if not isinstance(rec, dict):
        raise InputError(where, f"line {lineno}: expected a JSON object, got {type(rec).__name__}")
    text = rec.get(text_column)
    if text is not None and not isinstance(text, str):
        problem = f"text column {text_column!r} holds a {type(text).__name__}, not a string"
        raise InputError(where, f"line {lineno}: {problem}")
    if isinstance(text, str):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise InputError(where, f"line {lineno}: text is not valid Unicode (lone surrogate escape)") from None
    return rec


def _records_table(records: list[dict[str, Any]]) -> pa.Table:
    """Turn parsed JSON objects into a table, one column per key seen (missing keys become null)."""
    keys: dict[str, None] = {}
    for rec in records:
        keys.update(dict.fromkeys(rec))
    columns: dict[str, pa.Array] = {}
    for key in keys:
        values = [rec.get(key) for rec in records]
        try:
            columns[key] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeEncodeError):
            # Mixed types (e.g. int and str ids): keep them as strings (texts were checked to be strings).
            columns[key] = pa.array([None if v is None else _as_str(v) for v in values], pa.string())
    return pa.table(columns)


def _as_str(value: Any) -> str:
    """String form of a JSON value (JSON text for non-strings)."""
    return value if isinstance(value, str) else json.dumps(value)
