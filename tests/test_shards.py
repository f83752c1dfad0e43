"""Domain shards: selection, dedup, held-out isolation, exact packing, counts, and bad inputs."""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tqdm import tqdm

from cpt_scaling.core.errors import InputError
from cpt_scaling.data import POOL
from cpt_scaling.data.classify import classify_file, train_classifier
from cpt_scaling.data.docs_io import hash_fraction, read_documents
from cpt_scaling.data.sequences import read_sequences, read_train_sequences
from cpt_scaling.data.shards import build_shards, write_sequences
from cpt_scaling.data.tokenizer import load_tokenizer, train_tokenizer

DEMO = Path(__file__).resolve().parents[1] / "data" / "demo"
DOMAINS = ["accounting", "general", "legal", "medical"]
POOLS = [DEMO / "pool" / f"pool-0{i}.jsonl.gz" for i in range(4)]
CLS_PARAMS = {"epoch": 20, "lr": 0.5, "word_ngrams": 2, "dim": 32, "min_count": 1}
SHARD_PARAMS = {
    "domain": "legal",
    "threshold": 0.5,
    "seq_len": 64,
    "heldout_fraction": 0.2,
    "heldout_max_sequences": 40,
    "shard_max_sequences": 700,
}


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A real classifier, the classified demo pool and a small trained tokenizer."""
    root = tmp_path_factory.mktemp("shards")
    seeds = {d: [DEMO / "seeds" / f"{d}.jsonl.gz"] for d in DOMAINS}
    train_classifier(seeds, root / "cls", validation_fraction=0.25, seed=0, **CLS_PARAMS)
    model = root / "cls" / "model.bin"
    classified = []
    for pool in POOLS:
        classified.append(root / f"{pool.name}.parquet")
        classify_file(model, pool, classified[-1])
    train_tokenizer(POOLS, root / "tok", vocab_size=1024)
    return {"root": root, "model": model, "classified": classified, "tokenizer": root / "tok"}


@pytest.fixture(scope="module")
def built(setup: dict[str, Any]) -> tuple[Path, dict[str, Any]]:
    out = setup["root"] / "legal"
    manifest = build_shards(
        out,
        pool_files=POOLS,
        classified_files=setup["classified"],
        tokenizer_path=setup["tokenizer"],
        **SHARD_PARAMS,
    )
    return out, manifest


def test_tokenizer_saved_for_transformers(setup: dict[str, Any], tmp_path: Path) -> None:
    from transformers import PreTrainedTokenizerFast

    tok_dir = setup["tokenizer"]
    assert {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"} <= {
        p.name for p in tok_dir.iterdir()
    }
    tok = PreTrainedTokenizerFast.from_pretrained(str(tok_dir))
    assert tok.eos_token == "<|endoftext|>" and tok.eos_token_id == 0 and tok.pad_token_id == 0
    assert len(tok) == 1024
    text = "The Court held that § 1983 applies; naïve café."
    assert tok.decode(tok(text)["input_ids"]) == text
    train_tokenizer(POOLS, tmp_path / "again", vocab_size=1024)
    assert (tmp_path / "again" / "tokenizer.json").read_bytes() == (tok_dir / "tokenizer.json").read_bytes()
    with pytest.raises(InputError, match="not found"):
        load_tokenizer(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="not a tokenizer"):
        load_tokenizer(tmp_path / "empty")


def test_manifest_counts_match_parquet(built: tuple[Path, dict[str, Any]]) -> None:
    out, manifest = built
    assert json.loads((out / "manifest.json").read_text()) == manifest
    seq_len = SHARD_PARAMS["seq_len"]
    total = 0
    for shard in manifest["train"]["shards"]:
        table = pq.read_table(out / shard["file"])
        assert table.schema.field("input_ids").type == pa.list_(pa.int32())
        seqs = read_sequences(out / shard["file"])
        assert seqs.shape == (shard["n_sequences"], seq_len) and seqs.dtype == np.int64
        assert shard["n_tokens"] == seqs.size <= SHARD_PARAMS["shard_max_sequences"] * seq_len
        total += seqs.size
    assert len(manifest["train"]["shards"]) >= 2  # the cap split the stream
    assert manifest["train"]["n_tokens"] == total == manifest["train"]["n_sequences"] * seq_len
    heldout = read_sequences(out / manifest["heldout"]["file"])
    assert heldout.shape == (manifest["heldout"]["n_sequences"], seq_len)
    assert manifest["heldout"]["n_tokens"] == heldout.size
    assert 0 < len(heldout) <= SHARD_PARAMS["heldout_max_sequences"]
    expected_files = {"manifest.json", "heldout.parquet", "validation.parquet", "documents.parquet"}
    expected_files |= {s["file"] for s in manifest["train"]["shards"]}
    expected_files |= {"train.u32", "validation.u32", "heldout.u32"}
    assert {p.name for p in out.iterdir()} == expected_files


def test_token_store_holds_each_split_as_memory_mappable_uint32(
    built: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    """Each split's token file is its Parquet rows as raw uint32; the manifest's row count and max id are exact."""
    out, manifest = built
    seq_len = SHARD_PARAMS["seq_len"]
    assert manifest["token_dtype"] == "uint32"
    parquet = {
        "train": np.concatenate([read_sequences(out / s["file"]) for s in manifest["train"]["shards"]]),
        "validation": read_sequences(out / manifest["validation"]["file"]),
        "heldout": read_sequences(out / manifest["heldout"]["file"]),
    }
    for split, rows in parquet.items():
        entry = manifest[split]
        path = out / entry["token_file"]
        assert path.stat().st_size == entry["n_sequences"] * seq_len * 4
        stored = np.fromfile(path, dtype="<u4").reshape(-1, seq_len)
        assert np.array_equal(stored, rows) and len(rows) > 0
        assert entry["max_token_id"] == int(rows.max())
    mapped = read_train_sequences(out, seq_len, manifest["vocab_size"])
    assert isinstance(mapped, np.memmap) and not mapped.flags.writeable
    assert np.array_equal(mapped, parquet["train"])
    # Bad stores are refused from the manifest and the file size alone: an id past the vocabulary, a short file.
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "train.u32").write_bytes((out / "train.u32").read_bytes())
    wrong = {**manifest, "train": {**manifest["train"], "max_token_id": manifest["vocab_size"]}}
    (bad / "manifest.json").write_text(json.dumps(wrong))
    with pytest.raises(InputError, match="max_token_id"):
        read_train_sequences(bad, seq_len, manifest["vocab_size"])
    (bad / "manifest.json").write_text(json.dumps(manifest))
    (bad / "train.u32").write_bytes((out / "train.u32").read_bytes()[:-4])
    with pytest.raises(InputError, match="bytes"):
        read_train_sequences(bad, seq_len, manifest["vocab_size"])


def test_heldout_documents_never_reach_training(setup: dict[str, Any], built: tuple[Path, dict]) -> None:
    out, manifest = built
    docs = pq.read_table(out / "documents.parquet").to_pylist()
    train_hashes = {d["doc_hash"] for d in docs if d["split"] == "train"}
    heldout_hashes = set(manifest["heldout_doc_hashes"])
    assert heldout_hashes and train_hashes and not heldout_hashes & train_hashes
    assert heldout_hashes == {d["doc_hash"] for d in docs if d["split"] in ("heldout", "validation")}
    assert all(hash_fraction(h) < SHARD_PARAMS["heldout_fraction"] for h in heldout_hashes)
    assert all(hash_fraction(h) >= SHARD_PARAMS["heldout_fraction"] for h in train_hashes)
    # Independent of the bookkeeping: decode the training stream and look for held-out passages in it. Some
    # passages are shared boilerplate (e.g. the SCOTUS syllabus notice), so only passages that occur in no
    # training document count; training passages are found (the positive control shows the check can fire).
    tok = load_tokenizer(setup["tokenizer"])
    shards = [read_sequences(out / f["file"]) for f in manifest["train"]["shards"]]
    stream = "".join(tok.decode(row) for seqs in shards for row in seqs)
    texts = {}
    for pool in POOLS:
        texts |= dict(zip(*read_documents(pool).to_pydict().values(), strict=True))
    train_texts = [texts[d["doc_id"]] for d in docs if d["split"] == "train"]
    heldout_texts = [texts[d["doc_id"]] for d in docs if d["split"] != "train"]
    passages = [t[i : i + 80] for t in heldout_texts for i in range(0, len(t) - 80, 400)]
    distinctive = [p for p in passages if not any(p in t for t in train_texts)]
    assert len(distinctive) > 0.9 * len(passages) > 50
    assert not [p for p in distinctive if p in stream]
    assert all(t[100:180] in stream for t in train_texts[:-1])


def test_pool_shards_take_every_label_and_none_of_any_corpus_heldout(
    setup: dict[str, Any], built: tuple[Path, dict], tmp_path: Path
) -> None:
    """The unfiltered pool (the seed's generalist data) keeps documents of every label, whatever their score, and
    holds out exactly the documents any corpus holds out: its training split never sees a domain's test suite."""
    legal_out, legal_manifest = built
    params = {**SHARD_PARAMS, "domain": POOL, "threshold": 0.0}
    manifest = build_shards(tmp_path / "pool", pool_files=POOLS, classified_files=setup["classified"],
                            tokenizer_path=setup["tokenizer"], **params)
    docs = pq.read_table(tmp_path / "pool" / "documents.parquet").to_pylist()
    labels = pa.concat_tables([pq.read_table(f, columns=["doc_id", "domain"]) for f in setup["classified"]])
    label_of = dict(zip(labels.column("doc_id").to_pylist(), labels.column("domain").to_pylist(), strict=True))
    assert {label_of[d["doc_id"]] for d in docs if d["split"] == "train"} == set(DOMAINS)
    assert manifest["n_selected"] == labels.num_rows  # every pool document, duplicates counted then dropped
    pool_train = {d["doc_hash"] for d in docs if d["split"] == "train"}
    legal_docs = pq.read_table(legal_out / "documents.parquet").to_pylist()
    legal_heldout = set(legal_manifest["heldout_doc_hashes"])
    assert legal_heldout and not legal_heldout & pool_train
    assert legal_heldout <= set(manifest["heldout_doc_hashes"])
    assert {d["doc_hash"] for d in legal_docs if d["split"] == "train"} <= pool_train


def test_packing_is_exact(setup: dict[str, Any], built: tuple[Path, dict]) -> None:
    """Training sequences are the documents' tokens, each followed by EOS, in pool order, cut at seq_len."""
    out, manifest = built
    tok = load_tokenizer(setup["tokenizer"])
    docs = pq.read_table(out / "documents.parquet").to_pylist()
    texts = {}
    for pool in POOLS:
        texts |= dict(zip(*read_documents(pool).to_pydict().values(), strict=True))
    expected: list[int] = []
    for d in docs:
        if d["split"] == "train":
            ids = tok(texts[d["doc_id"]], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
            assert d["n_tokens"] == len(ids)
            expected += ids
    stored = np.concatenate([read_sequences(out / s["file"]).ravel() for s in manifest["train"]["shards"]])
    assert len(expected) - len(stored) < SHARD_PARAMS["seq_len"]
    assert stored.tolist() == expected[: len(stored)]
    assert manifest["train"]["n_docs"] == sum(d["split"] == "train" for d in docs)


def test_a_bos_adding_tokenizer_packs_each_document_as_the_base_saw_it(
    setup: dict[str, Any], tmp_path: Path
) -> None:
    """A Llama-family tokenizer that adds ``<s>``: every document is ``<s> tokens </s>`` in the store (the format
    the base model was pretrained on); this project's own BPE (and Qwen's) add no prefix."""
    from hf_checkpoints import make_llama_tokenizer

    from cpt_scaling.data.tokenizer import document_prefix

    tok = make_llama_tokenizer(tmp_path / "llama_tok", [DEMO / "seeds" / f"{d}.jsonl.gz" for d in DOMAINS])
    assert document_prefix(tok) == [tok.bos_token_id] == [1]
    assert document_prefix(load_tokenizer(setup["tokenizer"])) == []
    manifest = build_shards(tmp_path / "legal", pool_files=POOLS, classified_files=setup["classified"],
                            tokenizer_path=tmp_path / "llama_tok", **SHARD_PARAMS)
    assert manifest["document_prefix_ids"] == [1] and manifest["eos_token_id"] == 2
    docs = [d for d in pq.read_table(tmp_path / "legal" / "documents.parquet").to_pylist() if d["split"] == "train"]
    stored = np.concatenate([read_sequences(tmp_path / "legal" / s["file"]).ravel()
                             for s in manifest["train"]["shards"]]).tolist()
    start = 0
    for d in docs:
        doc = stored[start : start + d["n_tokens"]]
        if len(doc) < d["n_tokens"]:
            break  # the remainder cut at the last sequence
        assert doc[0] == 1 and doc[-1] == 2 and 1 not in doc[1:-1] and 2 not in doc[1:-1]
        start += d["n_tokens"]
    assert start > 0 and tok.decode(stored[:5]).startswith("<s>")


def test_a_long_document_is_encoded_in_pieces_with_the_tokens_of_the_whole(
    setup: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tokenizer calls take at most ENCODE_CHARS characters (memory bound); a document cut in pieces before
    whitespace gets exactly the byte-level BPE tokens of the whole document."""
    from cpt_scaling.data import shards

    tok = load_tokenizer(setup["tokenizer"])
    texts = read_documents(POOLS[0]).column("text").to_pylist()
    long_doc = "\n\n".join(texts[:40])  # ~ tens of thousands of characters, spaces and newlines
    monkeypatch.setattr(shards, "ENCODE_CHARS", 1000)
    calls: list[int] = []
    backend = tok.backend_tokenizer

    class Counting:
        def encode_batch_fast(self, pieces: list[str], add_special_tokens: bool) -> Any:
            calls.append(sum(map(len, pieces)))
            return backend.encode_batch_fast(pieces, add_special_tokens=add_special_tokens)

    flat, lengths = shards._encode_docs(Counting(), [("a", "h", long_doc), ("b", "h", texts[41])], 7, [])
    whole = [*tok(long_doc, add_special_tokens=False)["input_ids"], 7, *tok(texts[41],
                                                                          add_special_tokens=False)["input_ids"], 7]
    assert flat.tolist() == whole and lengths.sum() == len(whole)
    assert len(calls) > len(long_doc) // 1000 and max(calls) <= 1000


def test_build_is_deterministic(setup: dict[str, Any], built: tuple[Path, dict], tmp_path: Path,
                                caplog: pytest.LogCaptureFixture) -> None:
    out, manifest = built
    caplog.set_level(logging.INFO, logger="cpt_scaling.data.shards")
    again = build_shards(
        tmp_path / "again",
        pool_files=POOLS,
        classified_files=setup["classified"],
        tokenizer_path=setup["tokenizer"],
        **SHARD_PARAMS,
    )
    assert again == manifest
    for name in [s["file"] for s in manifest["train"]["shards"]] + ["heldout.parquet"]:
        assert np.array_equal(read_sequences(tmp_path / "again" / name), read_sequences(out / name))
    for name in ("train.u32", "validation.u32", "heldout.u32"):
        assert (tmp_path / "again" / name).read_bytes() == (out / name).read_bytes()
    # The log ends the scan with a progress line over every classified document (the total from their metadata).
    n_docs = sum(pq.read_metadata(f).num_rows for f in setup["classified"])
    assert n_docs == manifest["n_scanned"] > 1000
    ends = [r.getMessage() for r in caplog.records if r.getMessage().startswith("legal shards: ")]
    docs, selected = tqdm.format_sizeof(n_docs), tqdm.format_sizeof(manifest["n_selected"])
    assert len(ends) == 1 and f"legal shards: {docs}/{docs} documents (100%) in " in ends[0], ends
    assert f"documents/s, ETA 00:00, selected {selected}, train tokens " in ends[0], ends


def test_exact_duplicates_removed(setup: dict[str, Any], tmp_path: Path) -> None:
    with gzip.open(POOLS[0], "rt") as fh:
        records = [json.loads(line) for line in fh]
    copies = [{**r, "id": f"copy-{r['id']}"} for r in records[:120]]
    pool = tmp_path / "dup.jsonl"
    pool.write_text("".join(json.dumps(r) + "\n" for r in records + copies))
    classified = tmp_path / "dup.parquet"
    classify_file(setup["model"], pool, classified)
    labels = pq.read_table(classified).to_pylist()
    params = SHARD_PARAMS | {"seq_len": 32, "heldout_fraction": 0.1}
    manifest = build_shards(
        tmp_path / "out",
        pool_files=[pool],
        classified_files=[classified],
        tokenizer_path=setup["tokenizer"],
        **params,
    )
    selected = [lab for lab in labels if lab["domain"] == "legal" and lab["score"] >= params["threshold"]]
    n_copies_selected = sum(lab["doc_id"].startswith("copy-") for lab in selected)
    assert n_copies_selected > 0
    assert manifest["n_duplicates_removed"] == n_copies_selected
    assert manifest["n_selected"] == len(selected)
    kept = pq.read_table(tmp_path / "out" / "documents.parquet").to_pylist()
    assert len({d["doc_hash"] for d in kept}) == len(kept) == len(selected) - n_copies_selected
    assert not any(d["doc_id"].startswith("copy-") for d in kept)  # the first occurrence is kept


def _bad_cases(setup: dict[str, Any], tmp: Path) -> dict[str, tuple[dict[str, Any], str]]:
    """Bad inputs: name -> (build_shards keyword overrides, the file the error must name).

    Names starting with "domain:" are errors about the domain's data, which must also name the domain.
    """
    cls = setup["classified"]
    cls_names = ", ".join(str(p) for p in cls)
    bad_gzip = tmp / "bad.jsonl.gz"
    bad_gzip.write_bytes(POOLS[0].read_bytes()[:3000])
    bad_parquet = tmp / "bad.parquet"
    bad_parquet.write_bytes(b"PAR1 not parquet")
    return {
        "domain: no document selected": ({"domain": "poetry"}, cls_names),
        "domain: threshold above every score": ({"threshold": 1.01}, cls_names),
        "domain: too few tokens for one sequence": (
            {"seq_len": 10_000_000, "heldout_fraction": 0.0},
            cls_names,
        ),
        "domain: empty held-out suite": ({"heldout_fraction": 1e-9}, cls_names),
        "misaligned classified file": ({"classified_files": [cls[1], cls[0], cls[2], cls[3]]}, str(cls[1])),
        "missing pool file": (
            {"pool_files": [tmp / "absent.jsonl.gz", *POOLS[1:]]},
            str(tmp / "absent.jsonl.gz"),
        ),
        "corrupt pool file": ({"pool_files": [bad_gzip, *POOLS[1:]]}, str(bad_gzip)),
        "missing classified file": (
            {"classified_files": [tmp / "absent.parquet", *cls[1:]]},
            "absent.parquet",
        ),
        "corrupt classified file": ({"classified_files": [bad_parquet, *cls[1:]]}, str(bad_parquet)),
        "missing tokenizer": ({"tokenizer_path": tmp / "no-tok"}, str(tmp / "no-tok")),
        "unpaired files": ({"classified_files": cls[:3]}, str(cls[0])),
    }


def test_bad_inputs_raise_and_leave_nothing(setup: dict[str, Any], tmp_path: Path) -> None:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    work = tmp_path / "work"
    for name, (overrides, where) in _bad_cases(setup, inputs).items():
        kwargs = {
            "pool_files": POOLS,
            "classified_files": setup["classified"],
            "tokenizer_path": setup["tokenizer"],
            **SHARD_PARAMS,
            **overrides,
        }
        with pytest.raises(InputError) as info:
            build_shards(work / "out", **kwargs)
        assert where in str(info.value), (name, str(info.value))
        if name.startswith("domain:"):
            assert repr(kwargs["domain"]) in str(info.value), name
        assert not work.exists() or not list(work.iterdir()), name  # no output dir, no temporary left


def test_read_sequences_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        read_sequences(tmp_path / "absent.parquet")
    pq.write_table(pa.table({"tokens": [[1, 2]]}), tmp_path / "other.parquet")
    with pytest.raises(InputError, match="input_ids"):
        read_sequences(tmp_path / "other.parquet")
    pq.write_table(pa.table({"input_ids": [[1, 2], [3]]}), tmp_path / "ragged.parquet")
    with pytest.raises(InputError, match="unequal"):
        read_sequences(tmp_path / "ragged.parquet")
    pq.write_table(pa.table({"input_ids": [[1, 2], [3, 4]]}), tmp_path / "list.parquet")
    assert read_sequences(tmp_path / "list.parquet").tolist() == [[1, 2], [3, 4]]
    write_sequences(tmp_path / "empty.parquet", np.empty(0, np.int32), 16)
    assert read_sequences(tmp_path / "empty.parquet").shape == (0, 16)  # width kept in the schema metadata
