"""Labels a user already has: an existing fastText classifier (installed with its report on the seeds), a label
column of the pool files, per-file labels; the plan then trains (or applies) no classifier where none is needed."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from workflow_utils import REPO

from cpt_scaling.config.load import normalise_config, read_config_file
from cpt_scaling.core.errors import InputError
from cpt_scaling.data.classify import classify_file, install_classifier, label_file, train_classifier
from cpt_scaling.plan.sweep import build_plan

DEMO = REPO / "data" / "demo"
CLASSES = ["accounting", "general", "legal", "medical"]
PARAMS = {"epoch": 10, "lr": 0.5, "word_ngrams": 1, "dim": 16, "min_count": 1, "validation_fraction": 0.25, "seed": 0}


def _seeds(classes: list[str] = CLASSES) -> dict[str, list[Path]]:
    return {c: [DEMO / "seeds" / f"{c}.jsonl.gz"] for c in classes}


def test_an_existing_classifier_is_installed_with_its_report_on_every_seed(tmp_path: Path) -> None:
    train_classifier(_seeds(), tmp_path / "theirs", **PARAMS)
    metrics = install_classifier(tmp_path / "theirs" / "model.bin", _seeds(), tmp_path / "ours")
    assert (tmp_path / "ours" / "model.bin").read_bytes() == (tmp_path / "theirs" / "model.bin").read_bytes()
    n_seeds = sum(len(gzip.decompress((DEMO / "seeds" / f"{c}.jsonl.gz").read_bytes()).splitlines()) for c in CLASSES)
    assert metrics["n_validation"] == n_seeds  # every seed document, none held out
    assert metrics["params"]["model"] == str(tmp_path / "theirs" / "model.bin")
    assert json.loads((tmp_path / "ours" / "metrics.json").read_text())["macro_f1"] == metrics["macro_f1"] > 0.8
    for name in ("confusion.pdf", "thresholds.json"):
        assert (tmp_path / "ours" / name).stat().st_size > 0
    # the installed model labels the pool exactly as the given one does
    classify_file(tmp_path / "theirs" / "model.bin", DEMO / "pool" / "pool-00.jsonl.gz", tmp_path / "a.parquet")
    classify_file(tmp_path / "ours" / "model.bin", DEMO / "pool" / "pool-00.jsonl.gz", tmp_path / "b.parquet")
    assert pq.read_table(tmp_path / "a.parquet").equals(pq.read_table(tmp_path / "b.parquet"))


def test_a_classifier_without_a_seed_class_is_refused_naming_it(tmp_path: Path) -> None:
    train_classifier(_seeds(["general", "legal"]), tmp_path / "theirs", **PARAMS)
    with pytest.raises(InputError) as info:
        install_classifier(tmp_path / "theirs" / "model.bin", _seeds(), tmp_path / "ours")
    assert str(info.value) == (f"{tmp_path / 'theirs' / 'model.bin'}: the classifier has no label(s) accounting, "
                               "medical (its labels: general, legal)")
    assert not (tmp_path / "ours").exists()


def test_labels_from_a_column_or_the_file(tmp_path: Path) -> None:
    pool = tmp_path / "pool.jsonl"
    docs = [{"id": f"d{i}", "text": f"text {i}", "topic": ["legal", "medical", None][i % 3]} for i in range(9)]
    pool.write_text("".join(json.dumps(d) + "\n" for d in docs))
    out = label_file(pool, tmp_path / "col.parquet", label_column="topic")
    table = pq.read_table(tmp_path / "col.parquet").to_pylist()
    assert [r["domain"] for r in table] == [d["topic"] for d in docs]
    assert {r["score"] for r in table} == {1.0} and out["counts"] == {"legal": 3, "medical": 3}
    label_file(pool, tmp_path / "file.parquet", label="legal")
    assert {r["domain"] for r in pq.read_table(tmp_path / "file.parquet").to_pylist()} == {"legal"}
    with pytest.raises(InputError) as info:
        label_file(pool, tmp_path / "bad.parquet", label_column="subject")
    assert str(info.value) == f"{pool}: no label column 'subject' (data.label_column)"
    assert not (tmp_path / "bad.parquet").exists()


@pytest.fixture
def micro(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.chdir(REPO)
    return read_config_file(REPO / "tests" / "configs" / "micro.yaml")


def _stages(cfg: dict[str, Any], tmp: Path) -> dict[str, int]:
    plan = build_plan(normalise_config(cfg, "micro.yaml"), tmp / "digests.json")
    counts: dict[str, int] = {}
    for art in plan.by_key.values():
        counts[art.stage] = counts.get(art.stage, 0) + 1
    return counts


def test_the_plan_trains_a_classifier_only_where_a_pool_file_needs_one(micro: dict[str, Any], tmp_path: Path
                                                                       ) -> None:
    assert _stages(micro, tmp_path)["classifier"] == 1
    pool = micro["data"]["pool"]
    micro["data"]["pool_labels"] = {"legal": [pool[0]]}
    assert _stages(micro, tmp_path)["classifier"] == 1  # the other file is still classified
    micro["data"]["pool_labels"] = {"legal": [pool[0]], "general": [pool[1]]}
    assert "classifier" not in _stages(micro, tmp_path)
    del micro["data"]["pool_labels"]
    micro["data"]["label_column"] = "domain"
    stages = _stages(micro, tmp_path)
    assert "classifier" not in stages and stages["classified"] == len(pool)


@pytest.mark.parametrize(("labels", "message"), [
    ({"law": ["data/demo/pool/pool-00.jsonl.gz"]}, "data.pool_labels.law: unknown class"),
    ({"legal": ["data/demo/pool/pool-03.jsonl.gz"]},
     "data.pool_labels.legal: 'data/demo/pool/pool-03.jsonl.gz' is not one of the data.pool files"),
    ({"legal": ["data/demo/pool/pool-00.jsonl.gz"], "medical": ["data/demo/pool/pool-00.jsonl.gz"]},
     "data.pool_labels.medical: 'data/demo/pool/pool-00.jsonl.gz' is already labelled 'legal'"),
])
def test_bad_per_file_labels_name_the_key(micro: dict[str, Any], labels: dict, message: str) -> None:
    micro["data"]["pool_labels"] = labels
    with pytest.raises(InputError) as info:
        normalise_config(micro, "micro.yaml")
    assert str(info.value).startswith(f"micro.yaml: {message}")


def test_a_missing_classifier_model_is_refused_at_parse_time(micro: dict[str, Any]) -> None:
    micro["classifier"] = {"model": "no/such/model.bin"}
    with pytest.raises(InputError, match=r"classifier.model: 'no/such/model.bin' is not a file"):
        normalise_config(micro, "micro.yaml")

