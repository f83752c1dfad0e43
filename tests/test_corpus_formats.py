"""Corpora in the layouts they are downloaded in: compressed JSON lines (DCLM .jsonl.zst, Dolma .json.gz, .bz2),
Parquet folders in the Hugging Face hub layout (FineWeb's data/<dump>/*.parquet), recursive globs in data.pool;
each with a damaged file that fails with one line naming it."""

from __future__ import annotations

import bz2
import gzip
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cpt_scaling.config.load import expand_globs
from cpt_scaling.core.errors import InputError
from cpt_scaling.data.docs_io import document_format, read_documents

RECORDS = [{"id": f"d{i}", "text": f"document {i}: a sentence about tokens and sequences."} for i in range(7)]
EXPECTED = [{"doc_id": r["id"], "text": r["text"]} for r in RECORDS]


def _jsonl_bytes(records: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode()


def _zstd(data: bytes) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.CompressedOutputStream(sink, "zstd") as out:
        out.write(data)
    return sink.getvalue().to_pybytes()


WRITERS = {
    "docs.jsonl": lambda b: b,
    "docs.json": lambda b: b,
    "docs.ndjson": lambda b: b,
    "docs.jsonl.gz": gzip.compress,
    "docs.json.gz": gzip.compress,  # Dolma
    "docs.jsonl.zst": _zstd,  # DCLM
    "docs.jsonl.zstd": _zstd,
    "docs.jsonl.bz2": bz2.compress,
}


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_json_lines_in_every_compression_read_alike(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(WRITERS[name](_jsonl_bytes(RECORDS)))
    assert document_format(path) == "jsonl"
    assert read_documents(path).to_pylist() == EXPECTED


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_a_damaged_json_lines_file_is_one_error_naming_it(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    good = WRITERS[name](_jsonl_bytes(RECORDS))
    if name.endswith((".json", ".jsonl", ".ndjson")):
        damaged = good + b'{"id": "x", "text": broken\n'  # invalid JSON on line 8
        expected = "line 8: invalid JSON"
    else:
        damaged = good[: len(good) // 2]  # truncated download
        expected = "corrupt or truncated"
    path.write_bytes(damaged)
    with pytest.raises(InputError) as info:
        read_documents(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and expected in message and "\n" not in message


def test_hub_layout_parquet_folder_reads_every_file_in_path_order(tmp_path: Path) -> None:
    root = tmp_path / "fineweb"
    (root / "data" / "CC-MAIN-2024-10").mkdir(parents=True)
    (root / "data" / "CC-MAIN-2023-50").mkdir(parents=True)
    (root / "README.md").write_text("# dataset card\n")
    (root / ".cache").mkdir()
    pq.write_table(pa.Table.from_pylist(RECORDS[4:]), root / "data" / "CC-MAIN-2024-10" / "000_00000.parquet")
    pq.write_table(pa.Table.from_pylist(RECORDS[:2]), root / "data" / "CC-MAIN-2023-50" / "000_00000.parquet")
    pq.write_table(pa.Table.from_pylist(RECORDS[2:4]), root / "data" / "CC-MAIN-2023-50" / "001_00000.parquet")
    pq.write_table(pa.Table.from_pylist(RECORDS[:1]), root / ".cache" / "stale.parquet")
    assert document_format(root) == "folder"
    assert read_documents(root).to_pylist() == EXPECTED
    # data.pool: the folder and a recursive glob both expand to the three data files, one classify job each
    files = [str(p) for p in sorted((root / "data").rglob("*.parquet"))]
    assert expand_globs([str(root)], "cfg.yaml", "data.pool") == files
    assert expand_globs([str(root / "**" / "*.parquet")], "cfg.yaml", "data.pool") == files


def test_a_damaged_parquet_file_in_a_folder_is_named(tmp_path: Path) -> None:
    root = tmp_path / "pool"
    root.mkdir()
    pq.write_table(pa.Table.from_pylist(RECORDS), root / "a.parquet")
    (root / "b.parquet").write_bytes((root / "a.parquet").read_bytes()[:100])
    with pytest.raises(InputError) as info:
        read_documents(root)
    assert str(info.value).startswith(f"{root / 'b.parquet'}: ")


def test_saved_dataset_directory_is_one_source_not_a_folder(tmp_path: Path) -> None:
    import datasets

    datasets.Dataset.from_list(RECORDS).save_to_disk(str(tmp_path / "saved"))
    assert document_format(tmp_path / "saved") == "dataset"
    assert expand_globs([str(tmp_path / "saved")], "cfg.yaml", "data.pool") == [str(tmp_path / "saved")]
    assert read_documents(tmp_path / "saved").to_pylist() == EXPECTED


def test_a_folder_or_glob_without_documents_names_the_key_and_the_formats(tmp_path: Path) -> None:
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("no documents here")
    for pattern in (str(tmp_path / "notes"), str(tmp_path / "**" / "*.txt")):
        with pytest.raises(InputError) as info:
            expand_globs([pattern], "cfg.yaml", "data.pool")
        assert str(info.value).startswith(f"cfg.yaml: data.pool: '{pattern}' matches no document file (formats: ")
