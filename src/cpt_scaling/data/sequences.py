"""Read packed fixed-length token sequences: Parquet (column ``input_ids``), memory-mapped token files, manifests."""

from __future__ import annotations

import json
import mmap
from pathlib import Path
from typing import Any

import numpy as np

from cpt_scaling.core.digests import verify_file
from cpt_scaling.core.errors import InputError

COLUMN = "input_ids"
TOKEN_DTYPE = np.dtype("<u4")  # the token store of cpt_scaling.data.shards
TOKEN_BYTES = TOKEN_DTYPE.itemsize


def read_sequences(path: Path, *, seq_len: int | None = None, dtype: Any = np.int64) -> np.ndarray:
    """All sequences of one Parquet file (column ``input_ids``) as an ``(n, seq_len)`` array.

    Every row must have the same length (``seq_len`` when given). An empty file keeps the width its writer stored
    in the schema metadata (``seq_len``). A missing, corrupt or non-sequence file is an :class:`InputError`.
    """
    import pyarrow as pa  # here, not at the top: training reads token files only (no pyarrow on a bare GPU node)
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise InputError(str(path), "sequence file not found")
    try:
        table = pq.read_table(path, columns=[COLUMN])
    except (OSError, pa.ArrowException, KeyError) as exc:
        raise InputError(str(path), f"cannot read column {COLUMN!r} (corrupt or not a sequence file?): {exc}") from None
    column = table.column(COLUMN).combine_chunks()
    if pa.types.is_fixed_size_list(column.type):
        column = column.cast(pa.list_(column.type.value_type))
    if not pa.types.is_list(column.type) and not pa.types.is_large_list(column.type):
        raise InputError(str(path), f"column {COLUMN!r} must be a list of integers, got {column.type}")
    if column.null_count:
        raise InputError(str(path), f"null sequences in column {COLUMN!r}")
    n = len(column)
    if n == 0:
        width = seq_len if seq_len is not None else int((table.schema.metadata or {}).get(b"seq_len", 0))
        return np.zeros((0, width), dtype=dtype)
    lengths = np.diff(column.offsets.to_numpy())
    width = int(lengths[0]) if seq_len is None else seq_len
    if np.any(lengths != width):
        raise InputError(str(path), f"rows of {COLUMN!r} have unequal lengths {sorted(set(lengths.tolist()))[:5]}, "
                         f"expected all {width}")
    values = column.flatten().to_numpy(zero_copy_only=False)
    return values.astype(dtype, copy=False).reshape(n, width)


def read_manifest(shard_dir: Path) -> dict[str, Any]:
    """The ``manifest.json`` of a shard directory."""
    path = Path(shard_dir) / "manifest.json"
    if not path.is_file():
        raise InputError(str(path), "shard manifest does not exist")
    return json.loads(path.read_text())


def read_train_sequences(shard_dir: Path, seq_len: int, vocab_size: int) -> np.ndarray:
    """The training sequences of a shard directory as a read-only ``(n, seq_len)`` uint32 memory map.

    Opens the split's token file (``train.token_file`` in the manifest, written by :mod:`cpt_scaling.data.shards`)
    without reading it: the row count and the max token id come from the manifest, the file size is checked
    against them, so start-up time and resident memory do not grow with the corpus. Checks the manifest's
    ``seq_len`` and that its ``vocab_size`` and ``max_token_id`` fit the model's vocabulary.
    """
    shard_dir = Path(shard_dir)
    verify_file(shard_dir / "manifest.json")  # the token file itself: the trainer's BackgroundCheck
    manifest = read_manifest(shard_dir)
    where = str(shard_dir / "manifest.json")
    if int(manifest.get("seq_len", -1)) != seq_len:
        raise InputError(where, f"seq_len is {manifest.get('seq_len')}, the run needs {seq_len}")
    if int(manifest.get("vocab_size", 0)) > vocab_size:
        raise InputError(where, f"vocab_size {manifest.get('vocab_size')} exceeds the model's {vocab_size}")
    train = manifest.get("train")
    if not isinstance(train, dict) or not train.get("token_file") or "n_sequences" not in train:
        problem = "needs train.token_file and train.n_sequences (shards of an older version: rebuild them)"
        raise InputError(where, problem)
    if manifest.get("token_dtype", "uint32") != "uint32":
        raise InputError(where, f"token_dtype {manifest['token_dtype']!r} is not uint32")
    n = int(train["n_sequences"])
    if n <= 0:
        raise InputError(where, "the training shards hold no sequences")
    max_id = train.get("max_token_id")
    if max_id is None or not 0 <= int(max_id) < vocab_size:
        raise InputError(where, f"train.max_token_id {max_id} does not lie in [0, {vocab_size})")
    path = shard_dir / train["token_file"]
    if not path.is_file():
        raise InputError(str(path), "token file does not exist")
    expected = n * seq_len * TOKEN_BYTES
    if path.stat().st_size != expected:
        problem = f"holds {path.stat().st_size} bytes, the manifest says {n} × {seq_len} uint32 = {expected}"
        raise InputError(str(path), problem)
    return np.memmap(path, dtype=TOKEN_DTYPE, mode="r", shape=(n, seq_len))


def release_pages(data: np.ndarray) -> None:
    """Unmap the pages a read of a token memory map brought into this process (no-op for other arrays).

    The kernel maps file pages in large folios (up to MBs around each touched row), so random row reads would
    otherwise grow the resident set towards the file's size. The pages stay in the page cache; a later read
    maps them again.
    """
    mapping = getattr(data, "_mmap", None)
    if mapping is not None and hasattr(mmap, "MADV_DONTNEED"):
        mapping.madvise(mmap.MADV_DONTNEED)
