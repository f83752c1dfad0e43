"""Reading documents from JSONL(.gz), Parquet and saved datasets; every bad input is a clear InputError."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cpt_scaling.core.errors import InputError
from cpt_scaling.data.docs_io import count_documents, doc_hash, hash_fraction, read_documents

DEMO = Path(__file__).resolve().parents[1] / "data" / "demo"


def write_jsonl(path: Path, records: list[dict]) -> Path:
    """Write records as JSON lines (gzipped when the name ends in .gz)."""
    data = "".join(json.dumps(r) + "\n" for r in records).encode()
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


def test_doc_hash_is_sha256_of_utf8() -> None:
    assert doc_hash("héllo") == hashlib.sha256("héllo".encode()).hexdigest()
    assert 0.0 <= hash_fraction(doc_hash("x")) < 1.0


def test_reads_demo_seeds() -> None:
    table = read_documents(DEMO / "seeds" / "legal.jsonl.gz")
    assert table.schema == pa.schema([("doc_id", pa.string()), ("text", pa.string())])
    assert table.num_rows == 120
    with gzip.open(DEMO / "seeds" / "legal.jsonl.gz", "rt") as fh:
        first = json.loads(fh.readline())
    assert table.slice(0, 1).to_pylist() == [{"doc_id": first["id"], "text": first["text"]}]


def test_formats_agree(tmp_path: Path) -> None:
    import datasets

    records = [{"id": i, "body": f"document number {i}\nwith two lines"} for i in range(5)]
    expected = [{"doc_id": str(i), "text": r["body"]} for i, r in enumerate(records)]
    jsonl = write_jsonl(tmp_path / "d.jsonl", records)
    gz = write_jsonl(tmp_path / "d.jsonl.gz", records)
    parquet = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist(records), parquet)
    hf_dir = tmp_path / "hf"
    datasets.Dataset.from_list(records).save_to_disk(str(hf_dir))
    for path in (jsonl, gz, parquet, hf_dir):
        assert read_documents(path, text_column="body").to_pylist() == expected, path
    # The totals progress lines use: from metadata where there is one; JSON lines only reading counts.
    (tmp_path / "folder" / "a").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(records * 2), tmp_path / "folder" / "a" / "x.parquet")
    pq.write_table(pa.Table.from_pylist(records), tmp_path / "folder" / "y.parquet")
    counts = [count_documents(p) for p in (parquet, hf_dir, tmp_path / "folder", jsonl, gz, tmp_path / "none.parquet")]
    assert counts == [5, 5, 15, None, None, None]


def test_missing_id_column_uses_text_hash(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": "alpha"}, {"text": "beta"}])
    ids = read_documents(path).column("doc_id").to_pylist()
    assert ids == [doc_hash("alpha")[:16], doc_hash("beta")[:16]]


def test_mixed_id_types_become_strings(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [{"id": 7, "text": "a"}, {"id": "x", "text": "b"}])
    assert read_documents(path).column("doc_id").to_pylist() == ["7", "x"]


def test_blank_lines_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"id": "a", "text": "one"}\n\n   \n{"id": "b", "text": "two"}\n')
    assert read_documents(path).column("doc_id").to_pylist() == ["a", "b"]


def _bad_inputs(tmp: Path) -> dict[str, tuple[Path, str]]:
    """Bad inputs: name -> (path, a phrase the error must contain)."""
    cases: dict[str, tuple[Path, str]] = {"missing file": (tmp / "absent.jsonl", "not found")}
    (tmp / "empty.jsonl").write_bytes(b"")
    cases["empty file"] = (tmp / "empty.jsonl", "no documents")
    (tmp / "blank.jsonl.gz").write_bytes(gzip.compress(b"\n\n"))
    cases["only blank lines"] = (tmp / "blank.jsonl.gz", "no documents")
    cases["no text column"] = (write_jsonl(tmp / "notext.jsonl", [{"id": "a", "body": "x"}]), "'text'")
    (tmp / "latin1.jsonl").write_bytes('{"id": "a", "text": "caf\xe9"}\n'.encode("latin-1"))
    cases["non-UTF-8"] = (tmp / "latin1.jsonl", "line 1: not valid UTF-8")
    (tmp / "notgzip.jsonl.gz").write_bytes(b"this is not gzip data at all")
    cases["corrupt gzip"] = (tmp / "notgzip.jsonl.gz", "corrupt")
    whole = gzip.compress(b'{"id": "a", "text": "x"}\n' * 2000)
    (tmp / "truncated.jsonl.gz").write_bytes(whole[: len(whole) // 2])
    cases["truncated gzip"] = (tmp / "truncated.jsonl.gz", "corrupt")
    (tmp / "bad.parquet").write_bytes(b"PAR1 definitely not parquet")
    cases["corrupt parquet"] = (tmp / "bad.parquet", "Parquet")
    nulls = [{"id": "a", "text": "ok"}, {"id": "b", "text": None}]
    cases["null text"] = (write_jsonl(tmp / "null.jsonl", nulls), "line 2: null or missing text")
    empties = [{"id": "a", "text": "ok"}, {"id": "b", "text": "  \n"}]
    cases["empty text"] = (write_jsonl(tmp / "emptytext.jsonl", empties), "line 2: empty text")
    cases["number text"] = (write_jsonl(tmp / "num.jsonl", [{"id": "a", "text": 3}]), "not a string")
    (tmp / "badjson.jsonl").write_text('{"id": "a", "text": "ok"}\n{"id": \n')
    cases["invalid JSON"] = (tmp / "badjson.jsonl", "line 2: invalid JSON")
    (tmp / "list.jsonl").write_text('["not", "an", "object"]\n')
    cases["not an object"] = (tmp / "list.jsonl", "JSON object")
    pq.write_table(pa.table({"id": ["a", "b"], "text": ["ok", None]}), tmp / "null.parquet")
    cases["null text parquet"] = (tmp / "null.parquet", "row 1: null or missing text")
    pq.write_table(pa.table({"id": [None], "text": ["ok"]}), tmp / "nullid.parquet")
    cases["null id"] = (tmp / "nullid.parquet", "row 0: null id")
    pq.write_table(pa.table({"id": ["a"], "text": [b"\xff\xfe"]}), tmp / "binary.parquet")
    cases["binary text parquet"] = (tmp / "binary.parquet", "expected string")
    invalid = pa.array([b"ok", b"caf\xe9"]).view(pa.string())
    pq.write_table(pa.table({"text": invalid}), tmp / "latin1.parquet")
    cases["non-UTF-8 parquet"] = (tmp / "latin1.parquet", "not valid UTF-8")
    (tmp / "docs.csv").write_text("id,text\na,b\n")
    cases["unsupported format"] = (tmp / "docs.csv", "unsupported format")
    return cases


def test_bad_inputs_raise_input_error_naming_file(tmp_path: Path) -> None:
    for name, (path, phrase) in _bad_inputs(tmp_path).items():
        with pytest.raises(InputError) as info:
            read_documents(path)
        message = str(info.value)
        assert str(path) in message, name
        assert phrase in message, (name, message)


def test_dataset_dict_with_several_splits_is_rejected(tmp_path: Path) -> None:
    import datasets

    split = datasets.Dataset.from_list([{"text": "a"}])
    datasets.DatasetDict({"train": split, "test": split}).save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(InputError, match="splits"):
        read_documents(tmp_path / "dd")
    assert read_documents(tmp_path / "dd" / "train").num_rows == 1
    with pytest.raises(InputError, match="folder holds no document files"):
        (tmp_path / "plain_dir").mkdir()
        read_documents(tmp_path / "plain_dir")
