"""fastText domain classifier on the demo seeds: quality, determinism, output schema, bad inputs."""

from __future__ import annotations

import gzip
import itertools
import json
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cpt_scaling.core.errors import InputError
from cpt_scaling.data.classify import classify_file, preprocess, train_classifier
from cpt_scaling.data.classify_report import threshold_report
from cpt_scaling.data.docs_io import read_documents

DEMO = Path(__file__).resolve().parents[1] / "data" / "demo"
DOMAINS = ["accounting", "general", "legal", "medical"]
PARAMS = {
    "epoch": 20,
    "lr": 0.5,
    "word_ngrams": 2,
    "dim": 32,
    "min_count": 1,
    "validation_fraction": 0.25,
    "seed": 0,
}
# Measured with PARAMS on the demo seeds (351 train / 129 validation docs, preprocessing: lowercase + newlines to
# spaces): macro-F1 0.970 for seed 0 (four general/medical confusions), 0.956-0.963 for seeds 1-4. The floor leaves
# room for a few more errors across platforms and still sits far above chance (0.25) and the shuffled-label runs
# (measured 0.08-0.18 for shuffles 0-4 under the earlier punctuation-splitting rule).
MACRO_F1_FLOOR = 0.90
SHUFFLED_CEILING = 0.40
# Pool sources -> the domain the classifier should give them (the pool's `source` is kept only for audits).
SOURCE_DOMAIN = {"gutenberg": "general", "us-": "general", "india": "legal", "scotus": "legal"}
SOURCE_DOMAIN |= {"medquad": "medical", "tat-qa": "accounting"}


def seed_files() -> dict[str, list[Path]]:
    return {d: [DEMO / "seeds" / f"{d}.jsonl.gz"] for d in DOMAINS}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("cls") / "classifier"
    return out, train_classifier(seed_files(), out, **PARAMS)


def test_preprocess_rule() -> None:
    text = "Hello,   World!\nIt’s “quoted” — U.S. $5.00\t(ok)"
    assert preprocess(text) == "hello,   world! it’s “quoted” — u.s. $5.00\t(ok)"
    assert preprocess("It's U.S.-made!\n") == "it's u.s.-made! "  # the docstring's example
    assert preprocess(" a\n\nb\r\nc") == " a  b\r c"  # only newlines change: fastText splits on the rest
    assert preprocess("हिन्दी ÉCOLE") == "हिन्दी école"


def test_macro_f1_above_floor(trained: tuple[Path, dict]) -> None:
    out, metrics = trained
    files = ["confusion.pdf", "metrics.json", "model.bin", "thresholds.json", "thresholds.pdf"]
    assert sorted(p.name for p in out.iterdir()) == files
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert metrics["macro_f1"] >= MACRO_F1_FLOOR
    counts = metrics["label_counts"]
    assert sum(counts["train"].values()) + sum(counts["validation"].values()) == 4 * 120
    assert min(counts["validation"].values()) > 10
    assert sum(counts["predicted"].values()) == metrics["n_validation"]
    confusion = metrics["confusion"]
    assert sorted(confusion) == DOMAINS and all(sorted(row) == DOMAINS for row in confusion.values())
    assert sum(sum(row.values()) for row in confusion.values()) == metrics["n_validation"]
    assert set(metrics["per_label"]["legal"]) == {"precision", "recall", "f1", "support"}
    assert metrics["params"]["word_ngrams"] == 2 and metrics["params"]["seed"] == 0


def test_shuffled_labels_score_far_below(tmp_path: Path) -> None:
    records = []
    for d in DOMAINS:
        with gzip.open(DEMO / "seeds" / f"{d}.jsonl.gz", "rt") as fh:
            records += [json.loads(line) for line in fh]
    labels = [r["label"] for r in records]
    random.Random(0).shuffle(labels)
    files = {}
    for d in DOMAINS:
        path = tmp_path / f"{d}.jsonl"
        rows = [
            {"id": r["id"], "text": r["text"]} for r, lab in zip(records, labels, strict=True) if lab == d
        ]
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
        files[d] = [path]
    metrics = train_classifier(files, tmp_path / "shuffled", **PARAMS)
    assert metrics["macro_f1"] < SHUFFLED_CEILING


def test_training_is_deterministic(trained: tuple[Path, dict], tmp_path: Path) -> None:
    out, metrics = trained
    again = train_classifier(seed_files(), tmp_path / "again", **PARAMS)
    assert again == metrics
    for name in ("model.bin", "thresholds.json"):
        assert (tmp_path / "again" / name).read_bytes() == (out / name).read_bytes(), name


def test_report_figures_and_threshold_effect(trained: tuple[Path, dict]) -> None:
    out, metrics = trained
    for name in ("confusion.pdf", "thresholds.pdf"):
        assert (out / name).read_bytes().startswith(b"%PDF"), name
    report = json.loads((out / "thresholds.json").read_text())
    assert report["thresholds"] == [round(0.05 * i, 2) for i in range(20)]
    assert report["n_validation"] == metrics["n_validation"] and sorted(report["per_label"]) == DOMAINS
    for lab, row in report["per_label"].items():
        # At threshold 0 everything predicted is kept: the report's precision and recall are metrics.json's.
        assert row["n_kept"][0] == metrics["label_counts"]["predicted"][lab] and row["yield"][0] == 1.0
        assert row["precision"][0] == pytest.approx(metrics["per_label"][lab]["precision"])
        assert row["recall"][0] == pytest.approx(metrics["per_label"][lab]["recall"])
        assert row["n_kept"] == sorted(row["n_kept"], reverse=True)  # a higher threshold keeps a subset
        assert all((p is None) == (n == 0) for p, n in zip(row["precision"], row["n_kept"], strict=True))
        # Measured on the demo seeds 0-4: accounting, legal and medical stay at precision 1.0; general climbs
        # from 0.86-0.91 to 1.0 before nothing is kept, with one dip of 0.005 (0.946 -> 0.941, seed 0) when a
        # correct document drops out. So: non-decreasing up to 0.02 per step, and higher at the end.
        defined = [p for p in row["precision"] if p is not None]
        assert all(b >= a - 0.02 for a, b in itertools.pairwise(defined)), (lab, defined)
        assert defined[-1] >= defined[0], (lab, defined)
    assert report["per_label"]["general"]["yield"][-1] < 0.5  # a 0.95 threshold would cut most general text


def test_threshold_report_counts() -> None:
    truth = ["a", "a", "b", "b", "a"]
    pred = ["a", "a", "a", "b", "b"]
    scores = np.array([0.9, 0.4, 0.6, 0.8, 0.3])
    report = threshold_report(["a", "b"], truth, pred, scores, grid=[0.0, 0.5, 0.95])
    assert report["per_label"]["a"] == {
        "n_kept": [3, 2, 0],
        "yield": [1.0, 2 / 3, 0.0],
        "precision": [2 / 3, 0.5, None],
        "recall": [2 / 3, 1 / 3, 0.0],
    }
    assert report["per_label"]["b"]["precision"] == [0.5, 1.0, None]


def test_seed_label_column_must_match_key(tmp_path: Path) -> None:
    wrong = tmp_path / "medical.jsonl"
    wrong.write_text(json.dumps({"id": "x", "text": "a court held", "label": "legal"}) + "\n")
    files = seed_files() | {"medical": [wrong]}
    out = tmp_path / "cls"
    with pytest.raises(InputError) as info:
        train_classifier(files, out, **PARAMS)
    assert str(wrong) in str(info.value) and "'legal'" in str(info.value)
    assert list(tmp_path.iterdir()) == [wrong]


def test_missing_seed_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl.gz"
    with pytest.raises(InputError, match=r"nope\.jsonl\.gz"):
        train_classifier(seed_files() | {"legal": [missing]}, tmp_path / "cls", **PARAMS)
    assert not (tmp_path / "cls").exists()


def test_classify_file_schema_and_determinism(trained: tuple[Path, dict], tmp_path: Path) -> None:
    model = trained[0] / "model.bin"
    pool = DEMO / "pool" / "pool-00.jsonl.gz"
    summary = classify_file(model, pool, tmp_path / "a.parquet", batch_size=100)
    classify_file(model, pool, tmp_path / "b.parquet")
    a = pq.read_table(tmp_path / "a.parquet")
    assert a.schema == pa.schema(
        [("doc_id", pa.string()), ("domain", pa.string()), ("score", pa.float32()), ("n_chars", pa.int32())]
    )
    assert a.equals(pq.read_table(tmp_path / "b.parquet"))  # batch size does not change the output
    assert pq.read_metadata(tmp_path / "a.parquet").row_group(0).column(0).compression == "ZSTD"
    docs = read_documents(pool)
    assert a.column("doc_id").to_pylist() == docs.column("doc_id").to_pylist()
    assert a.column("n_chars").to_pylist() == [len(t) for t in docs.column("text").to_pylist()]
    scores = a.column("score").to_pylist()
    assert all(0.0 < s <= 1.0 for s in scores)
    assert summary["n_docs"] == a.num_rows == 265
    assert sorted(summary["counts"]) == DOMAINS
    assert sum(summary["counts"].values()) == 265
    # Audit against the pool's hidden source: the classifier should agree on the vast majority.
    with gzip.open(pool, "rt") as fh:
        sources = [json.loads(line)["source"] for line in fh]
    expected = [next(d for prefix, d in SOURCE_DOMAIN.items() if s.startswith(prefix)) for s in sources]
    agree = sum(e == d for e, d in zip(expected, a.column("domain").to_pylist(), strict=True))
    assert agree / len(expected) > 0.9


def test_classify_file_bad_inputs(trained: tuple[Path, dict], tmp_path: Path) -> None:
    model = trained[0] / "model.bin"
    pool = DEMO / "pool" / "pool-00.jsonl.gz"
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"not a fasttext model")
    corrupt = tmp_path / "corrupt.jsonl.gz"
    corrupt.write_bytes(pool.read_bytes()[:5000])
    cases = [
        (tmp_path / "absent.bin", pool),
        (garbage, pool),
        (model, corrupt),
        (model, tmp_path / "no.jsonl"),
    ]
    for model_path, pool_path in cases:
        out = tmp_path / "out" / "classified.parquet"
        with pytest.raises(InputError) as info:
            classify_file(model_path, pool_path, out)
        assert str(model_path) in str(info.value) or str(pool_path) in str(info.value)
        assert not out.parent.exists() or not list(out.parent.iterdir())
