"""Read text documents, in the layouts corpora are downloaded in, into (doc_id, text) tables.

Formats (:func:`document_format`): JSON lines named ``.jsonl``, ``.json`` or ``.ndjson``, plain or compressed
(``.gz``, ``.zst``/``.zstd``, ``.bz2``: DCLM's ``.jsonl.zst``, Dolma's ``.json.gz``); Parquet files; a directory
written by ``datasets.save_to_disk``; and any other directory (a Hugging Face hub layout such as FineWeb's
``data/<dump>/*.parquet``), read as every document file below it in sorted path order.

Every reader streams batches so large pools never need to fit in memory; ``read_documents`` concatenates them.
Bad input raises ``InputError`` naming the file and, where it applies, the line (JSONL, 1-based) or the row
(Parquet and datasets, 0-based).
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from cpt_scaling.core.errors import InputError
from cpt_scaling.data.jsonl_io import COMPRESSION_SUFFIXES, iter_jsonl

log = logging.getLogger(__name__)

DOC_SCHEMA = pa.schema([("doc_id", pa.string()), ("text", pa.string())])
DEFAULT_BATCH = 4096
#: Name endings of JSON-lines files, before an optional compression suffix.
JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")
#: Files ``datasets.save_to_disk`` writes: one of them marks a saved dataset (or dataset dict) directory.
_SAVED_DATASET_MARKERS = ("state.json", "dataset_dict.json")
FORMATS_HELP = (".jsonl/.json/.ndjson (plain, .gz, .zst, .bz2), .parquet, a datasets.save_to_disk directory, "
                "or a directory of such files")


def document_format(path: Path) -> str | None:
    """``"jsonl"``, ``"parquet"``, ``"dataset"`` (a saved datasets directory), ``"folder"`` (any other
    directory) or None (an unsupported file)."""
    path = Path(path)
    if path.is_dir():
        return "dataset" if any((path / m).is_file() for m in _SAVED_DATASET_MARKERS) else "folder"
    name = path.name
    if path.suffix in COMPRESSION_SUFFIXES:
        name = name[: -len(path.suffix)]
    if name.endswith(JSONL_SUFFIXES):
        return "jsonl"
    if path.suffix == ".parquet":
        return "parquet"
    return None


def document_files(folder: Path) -> list[Path]:
    """Every document file below ``folder`` (recursively, sorted by path; saved datasets count as one entry,
    and hidden files or folders such as ``.cache`` are skipped)."""
    found: list[Path] = []
    for entry in sorted(Path(folder).iterdir()):
        if entry.name.startswith("."):
            continue
        kind = document_format(entry)
        if kind == "folder":
            found.extend(document_files(entry))
        elif kind is not None:
            found.append(entry)
    return found


def count_documents(path: Path) -> int | None:
    """The number of documents in ``path`` where metadata tells it without reading the texts (a Parquet file's
    row count, a saved dataset's, a folder's sum of them); None for JSON lines (only reading counts them) and for
    a path its reader will refuse (the reader names the problem). For progress lines, not for checks."""
    path = Path(path)
    kind = document_format(path)
    try:
        if kind == "parquet":
            return pq.ParquetFile(path).metadata.num_rows
        if kind == "dataset":
            import datasets

            loaded = datasets.load_from_disk(str(path))
            return loaded.num_rows if isinstance(loaded, datasets.Dataset) else None
        if kind == "folder":
            return count_all_documents(document_files(path))
    except Exception:  # unreadable here: its reader raises the InputError that names it
        return None
    return None


def count_all_documents(paths: list[Path]) -> int | None:
    """The documents of all ``paths`` (:func:`count_documents`); None when one cannot be counted, or no paths."""
    counts = [count_documents(path) for path in paths]
    return sum(counts) if counts and None not in counts else None  # type: ignore[arg-type]


def doc_hash(text: str) -> str:
    """Return the sha256 hex digest of ``text`` encoded as UTF-8."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def hash_fraction(digest: str) -> float:
    """Map a hex digest to [0, 1) from its first 8 hex digits (for deterministic splits)."""
    return int(digest[:8], 16) / 2**32


def read_documents(path: Path, text_column: str = "text", id_column: str = "id") -> pa.Table:
    """Read all documents of ``path`` as a table with string columns ``doc_id`` and ``text``.

    Formats: see :func:`document_format`. Without an id column, ``doc_id`` is the first 16 hex digits of the
    text's sha256.
    """
    batches = list(iter_document_batches(path, text_column=text_column, id_column=id_column))
    return pa.Table.from_batches(batches, schema=DOC_SCHEMA)


def iter_document_batches(
    path: Path,
    *,
    text_column: str = "text",
    id_column: str = "id",
    batch_size: int = DEFAULT_BATCH,
    extra_columns: Sequence[str] = (),
) -> Iterator[pa.RecordBatch]:
    """Yield record batches with ``doc_id``, ``text`` and those of ``extra_columns`` present in the source.

    Raises ``InputError`` when the file is missing, unreadable, has no documents, lacks the text column, or
    holds a null, empty or non-string text.
    """
    path = Path(path)
    where = str(path)
    if not path.exists():
        raise InputError(where, "file not found")
    norm = functools.partial(
        _normalise, where=where, text_column=text_column, id_column=id_column, extra_columns=extra_columns
    )
    batches: Iterator[pa.RecordBatch]
    kind = document_format(path)
    if kind == "folder":
        files = document_files(path)
        if not files:
            raise InputError(where, f"folder holds no document files (expected {FORMATS_HELP})")
        batches = (b for f in files for b in iter_document_batches(
            f, text_column=text_column, id_column=id_column, batch_size=batch_size, extra_columns=extra_columns))
    elif kind == "dataset":
        batches = (norm(t, row, label) for t, row, label in _iter_hf_dataset(path, batch_size))
    elif kind == "jsonl":
        batches = iter_jsonl(path, batch_size, text_column, norm)
    elif kind == "parquet":
        batches = (norm(t, row, label) for t, row, label in _iter_parquet(path, batch_size))
    else:
        raise InputError(where, f"unsupported format (expected {FORMATS_HELP})")
    n_docs = 0
    for batch in batches:
        yield batch
        n_docs += batch.num_rows
    if n_docs == 0:
        raise InputError(where, "no documents in file")
    log.debug("read %d documents from %s", n_docs, path)


def _iter_parquet(path: Path, batch_size: int) -> Iterator[tuple[pa.Table, int, str]]:
    """Stream a Parquet file in batches."""
    where = str(path)
    row = 0
    try:
        pf = pq.ParquetFile(path)
        for batch in pf.iter_batches(batch_size=batch_size):
            yield pa.Table.from_batches([batch]), row, "row"
            row += batch.num_rows
    except (OSError, pa.ArrowException) as exc:
        raise InputError(where, f"cannot read Parquet (corrupt file?) near row {row}: {exc}") from None


def _iter_hf_dataset(path: Path, batch_size: int) -> Iterator[tuple[pa.Table, int, str]]:
    """Stream a directory written by ``datasets.Dataset.save_to_disk``."""
    import datasets

    where = str(path)
    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as exc:  # datasets raises several unrelated types for a bad directory
        raise InputError(where, f"not a saved Hugging Face dataset directory: {exc}") from None
    if isinstance(ds, datasets.DatasetDict):
        splits = list(ds)
        if len(splits) != 1:
            problem = f"dataset has splits {splits}; point to one split directory ({where}/<split>)"
            raise InputError(where, problem)
        ds = ds[splits[0]]
    row = 0
    for table in ds.with_format("arrow").iter(batch_size=batch_size):
        yield table, row, "row"
        row += table.num_rows


def _normalise(
    table: pa.Table,
    first_row: int,
    row_label: str,
    *,
    where: str,
    text_column: str,
    id_column: str,
    extra_columns: Sequence[str],
) -> pa.RecordBatch:
    """Validate one raw batch and return it as ``doc_id``, ``text`` (+ extra columns present).

    ``first_row`` numbers the table's first row in the file's own terms (``row_label``: a 0-based Parquet or
    dataset row, or a 1-based JSONL line) so that an error can point at it.
    """
    if text_column not in table.column_names:
        columns = sorted(table.column_names)
        raise InputError(where, f"missing text column {text_column!r} (columns: {columns})")
    text = table.column(text_column).combine_chunks()
    if pa.types.is_large_string(text.type):
        text = text.cast(pa.string())
    if not pa.types.is_string(text.type):
        raise InputError(where, f"text column {text_column!r} has type {text.type}, expected string")
    try:
        text.validate(full=True)
    except pa.ArrowInvalid as exc:
        raise InputError(where, f"text column {text_column!r} is not valid UTF-8: {exc}") from None
    blank = pc.or_(pc.equal(pc.utf8_length(text), 0), pc.utf8_is_space(text))
    bad = pc.fill_null(blank, True)
    if pc.any(bad).as_py():
        i = pc.index(bad, True).as_py()
        what = "null or missing" if text[i].as_py() is None else "empty"
        raise InputError(where, f"{row_label} {first_row + i}: {what} text in column {text_column!r}")
    if id_column in table.column_names:
        ids = table.column(id_column).combine_chunks()
        if ids.null_count:
            bad_id = pc.index(ids.is_null(), True).as_py()
            raise InputError(where, f"{row_label} {first_row + bad_id}: null id in column {id_column!r}")
        ids = ids.cast(pa.string())
    else:
        ids = pa.array([doc_hash(t)[:16] for t in text.to_pylist()], pa.string())
    arrays = [ids, text]
    names = ["doc_id", "text"]
    for name in extra_columns:
        if name in table.column_names and name not in (text_column, id_column):
            arrays.append(table.column(name).combine_chunks())
            names.append(name)
    return pa.RecordBatch.from_arrays(arrays, names=names)
