"""Read packed fixed-length token sequences (Parquet column ``input_ids``) and shard-directory manifests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cpt_scaling.errors import InputError

COLUMN = "input_ids"


def read_sequences(path: Path, *, seq_len: int | None = None, dtype: Any = np.int64) -> np.ndarray:
    """All sequences of one Parquet file as an ``(n, seq_len)`` array; every row must have the same length."""
    path = Path(path)
    if not path.is_file():
        raise InputError(str(path), "sequence file does not exist")
    if COLUMN not in pq.read_schema(path).names:
        raise InputError(str(path), f"no column {COLUMN!r}")
    column = pq.read_table(path, columns=[COLUMN]).column(COLUMN).combine_chunks()
    if pa.types.is_fixed_size_list(column.type):
        column = column.cast(pa.list_(column.type.value_type))
    if not pa.types.is_list(column.type) and not pa.types.is_large_list(column.type):
        raise InputError(str(path), f"column {COLUMN!r} must be a list of integers, got {column.type}")
    n = len(column)
    if n == 0:
        width = seq_len or 0
        return np.zeros((0, width), dtype=dtype)
    lengths = np.diff(column.offsets.to_numpy())
    width = int(lengths[0]) if seq_len is None else seq_len
    if np.any(lengths != width):
        raise InputError(str(path), f"rows of {COLUMN!r} must all have length {width}")
    values = column.flatten().to_numpy(zero_copy_only=False)
    return values.astype(dtype, copy=False).reshape(n, width)


def read_manifest(shard_dir: Path) -> dict[str, Any]:
    """The ``manifest.json`` of a shard directory."""
    path = Path(shard_dir) / "manifest.json"
    if not path.is_file():
        raise InputError(str(path), "shard manifest does not exist")
    return json.loads(path.read_text())


def read_train_sequences(shard_dir: Path, seq_len: int, vocab_size: int) -> np.ndarray:
    """All training sequences of a shard directory, in manifest order, as an int32 ``(n, seq_len)`` array.

    Checks the manifest's ``seq_len`` and that its ``vocab_size`` fits the model's.
    """
    shard_dir = Path(shard_dir)
    manifest = read_manifest(shard_dir)
    where = str(shard_dir / "manifest.json")
    if int(manifest.get("seq_len", -1)) != seq_len:
        raise InputError(where, f"seq_len is {manifest.get('seq_len')}, the run needs {seq_len}")
    if int(manifest.get("vocab_size", 0)) > vocab_size:
        raise InputError(where, f"vocab_size {manifest.get('vocab_size')} exceeds the model's {vocab_size}")
    try:
        files = [s["file"] for s in manifest["train"]["shards"]]
    except (KeyError, TypeError) as err:
        raise InputError(where, "needs train.shards: [{file, n_sequences, n_tokens}, ...]") from err
    if not files:
        raise InputError(where, "train.shards is empty")
    parts = [read_sequences(shard_dir / f, seq_len=seq_len, dtype=np.int32) for f in files]
    data = np.concatenate(parts) if len(parts) > 1 else parts[0]
    if len(data) == 0:
        raise InputError(where, "the training shards hold no sequences")
    if int(data.min()) < 0 or int(data.max()) >= vocab_size:
        raise InputError(where, f"token ids must lie in [0, {vocab_size})")
    return data
