"""Bad inputs to the data stage, through the real workflow adaptor: one clear error naming the file or key, exit
status 1, and no output left behind (no file, no temporary)."""

from __future__ import annotations

import gzip
import json
import runpy
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from workflow_utils import REPO

from cpt_scaling.config.load import normalise_config, read_config_file
from cpt_scaling.core.errors import InputError
from cpt_scaling.data.classify import train_classifier

DEMO = REPO / "data" / "demo"
POOL = DEMO / "pool" / "pool-00.jsonl.gz"
SCRIPT = REPO / "workflow_scripts" / "classify.py"
CLASSIFIER = {"epoch": 5, "lr": 0.5, "word_ngrams": 1, "dim": 8, "min_count": 1, "validation_fraction": 0.25,
              "seed": 0}
COLUMNS = {"text_column": "text", "id_column": "id"}


class _Outputs(list):
    """Snakemake's ``output``: a list with named attributes."""


def run_rule(rule: str, job: dict[str, Any], outputs: dict[str, Path]) -> None:
    """Run the classify adaptor as Snakemake would, with a stand-in ``snakemake`` object."""
    output = _Outputs(str(p) for p in outputs.values())
    for name, path in outputs.items():
        setattr(output, name, str(path))
    smk = SimpleNamespace(rule=rule, log=[], threads=1, params=SimpleNamespace(job=json.dumps(job)), output=output,
                          wildcards={"key": "0" * 16})
    runpy.run_path(str(SCRIPT), init_globals={"snakemake": smk})


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cls") / "classifier"
    seeds = {d: [DEMO / "seeds" / f"{d}.jsonl.gz"] for d in ("general", "legal")}
    train_classifier(seeds, out, **CLASSIFIER)
    return out / "model.bin"


def bad_pool_files(tmp: Path) -> dict[str, tuple[Path, str]]:
    """Bad pool files: name -> (path, a phrase the error must contain)."""
    cases: dict[str, tuple[Path, str]] = {}
    lines = gzip.decompress(POOL.read_bytes()).splitlines(keepends=True)
    (tmp / "notext.jsonl").write_text(json.dumps({"id": "a", "body": "no text here"}) + "\n")
    cases["missing text column"] = (tmp / "notext.jsonl", "missing text column 'text'")
    (tmp / "empty.jsonl.gz").write_bytes(gzip.compress(b""))
    cases["empty file"] = (tmp / "empty.jsonl.gz", "no documents")
    latin1 = b"".join(lines[:3]) + '{"id": "x", "text": "caf\xe9"}\n'.encode("latin-1")
    (tmp / "latin1.jsonl.gz").write_bytes(gzip.compress(latin1))
    cases["non-UTF-8 bytes"] = (tmp / "latin1.jsonl.gz", "line 4: not valid UTF-8")
    (tmp / "notgzip.jsonl.gz").write_bytes(b"plain text, not gzip")
    cases["corrupt gzip"] = (tmp / "notgzip.jsonl.gz", "corrupt")
    # Big enough that the fast reader has passed whole batches on before it meets the damage.
    many = gzip.compress(b"".join(lines) * 40)
    damaged = bytearray(many)
    damaged[len(many) // 2 : len(many) // 2 + 64] = b"\x00" * 64
    (tmp / "damaged.jsonl.gz").write_bytes(bytes(damaged))
    cases["corrupt gzip after good batches"] = (tmp / "damaged.jsonl.gz", "")
    (tmp / "truncated.jsonl.gz").write_bytes(many[: len(many) // 2])
    cases["truncated gzip"] = (tmp / "truncated.jsonl.gz", "corrupt")
    pq.write_table(pa.table({"id": ["a"], "body": ["x"]}), tmp / "schema.parquet")
    cases["wrong Parquet schema"] = (tmp / "schema.parquet", "missing text column 'text'")
    pq.write_table(pa.table({"id": ["a"], "text": [3]}), tmp / "types.parquet")
    cases["wrong Parquet column type"] = (tmp / "types.parquet", "expected string")
    return cases


def test_bad_pool_files_exit_1_naming_the_file(model: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for name, (pool, phrase) in bad_pool_files(inputs).items():
        out = tmp_path / name.replace(" ", "_") / "labels.parquet"
        job = {"pool_file": str(pool), "model": str(model), **COLUMNS}
        with pytest.raises(SystemExit) as info:
            run_rule("classify_pool_file", job, {"labels": out, "spec": out.with_name("spec.json")})
        assert info.value.code == 1, name
        errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("ERROR: ")]
        assert len(errors) == 1 and errors[0].startswith(f"ERROR: {pool}: "), (name, errors)
        assert phrase in errors[0], (name, errors[0])
        assert not out.parent.exists() or not list(out.parent.iterdir()), name


def test_unknown_seed_label_exits_1_and_leaves_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seed = tmp_path / "legal.jsonl"
    seed.write_text("".join(json.dumps({"id": str(i), "text": f"court ruling {i}", "label": lab}) + "\n"
                            for i, lab in enumerate(["legal", "legal", "lawyering"])))
    out = tmp_path / "classifier"
    job = {"seed_files": {"general": [str(DEMO / "seeds" / "general.jsonl.gz")], "legal": [str(seed)]},
           **CLASSIFIER, **COLUMNS}
    with pytest.raises(SystemExit) as info:
        run_rule("train_classifier", job, {"model": out / "model.bin", "metrics": out / "metrics.json"})
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert f"ERROR: {seed}: unknown label 'lawyering'" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["legal.jsonl"]  # no classifier dir, no temporary


@pytest.fixture
def micro_raw(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The micro config as read from disk, with relative data paths resolving from the repository."""
    monkeypatch.chdir(REPO)
    return read_config_file(REPO / "tests" / "configs" / "micro.yaml")


@pytest.mark.parametrize(("key", "pattern"), [
    ("pool", "data/demo/pool/nothing-*.jsonl.gz"),
    ("pool", "data/demo/pool/absent.jsonl.gz"),
    ("seeds", "data/demo/seeds/nothing-*.jsonl.gz"),
])
def test_glob_matching_nothing_names_key_and_pattern(micro_raw: dict[str, Any], key: str, pattern: str) -> None:
    if key == "pool":
        micro_raw["data"]["pool"] = [*micro_raw["data"]["pool"], pattern]
        where = "data.pool"
    else:
        micro_raw["data"]["seeds"]["legal"] = [pattern]
        where = "data.seeds.legal"
    with pytest.raises(InputError) as info:
        normalise_config(micro_raw, "micro.yaml")
    assert str(info.value).startswith(f"micro.yaml: {where}: '{pattern}' matches no document file (formats: ")


def test_globs_expand_sorted_and_deduplicated(micro_raw: dict[str, Any]) -> None:
    micro_raw["data"]["pool"] = ["data/demo/pool/pool-0[12].jsonl.gz", "data/demo/pool/pool-*.jsonl.gz"]
    cfg = normalise_config(micro_raw, "micro.yaml")
    assert cfg["data"]["pool"] == [f"data/demo/pool/pool-0{i}.jsonl.gz" for i in (1, 2, 0, 3)]


def test_domain_without_seed_label_is_a_config_error(micro_raw: dict[str, Any]) -> None:
    micro_raw["domains"]["finance"] = {"threshold": 0.5, "ratios": [0.5]}
    with pytest.raises(InputError, match=r"^micro\.yaml: domains\.finance: unknown domain"):
        normalise_config(micro_raw, "micro.yaml")


@pytest.mark.parametrize(("case", "texts", "phrase"), [
    ("one document", ["a court ruled on the appeal"], "has 1 distinct document(s); a classifier needs at least 10"),
    ("identical documents", ["a court ruled on the appeal"] * 40, "has 1 distinct document(s)"),
    ("none left for validation", [f"court ruling number {i}" for i in range(12)], "no validation documents"),
])
def test_too_few_seed_documents_are_refused_naming_the_seed_file(tmp_path: Path, case: str, texts: list[str],
                                                                phrase: str) -> None:
    from cpt_scaling.data.docs_io import doc_hash, hash_fraction

    if case == "none left for validation":  # documents whose hashes all fall in training at fraction 0.2
        texts = [t for t in (f"court ruling number {i}" for i in range(200))
                 if hash_fraction(doc_hash(t)) >= CLASSIFIER["validation_fraction"]][:12]
    seed = tmp_path / "legal.jsonl"
    seed.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    seeds = {"general": [DEMO / "seeds" / "general.jsonl.gz"], "legal": [seed]}
    with pytest.raises(InputError) as info:
        train_classifier(seeds, tmp_path / "classifier", **CLASSIFIER)
    assert str(info.value).startswith(f"{seed}: label 'legal' ") and phrase in str(info.value), case
    assert not (tmp_path / "classifier").exists()
