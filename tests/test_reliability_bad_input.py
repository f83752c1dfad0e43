"""Bad input matrix: each row one clear error naming the file or key, a non-zero exit and no partial artifact.

Config rows fail when the workflow is parsed (``snakemake -n``); data rows fail at run time in the first job
that reads the file (the target is that job's artifact, so only the data stage runs); points rows go through
the ``cpt-scaling fit`` command line.
"""

from __future__ import annotations

import gzip
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import make_workdir
from reliability_utils import check_no_false_complete, plan_output
from workflow_utils import run_snakemake

Edit = Callable[[dict[str, Any], Path], None]

POOL = "data/demo/pool/pool-01.jsonl.gz"


def _set(path: str, value: Any) -> Edit:
    """An edit that sets the config key at dotted ``path`` (created on the way) to ``value``."""
    def edit(cfg: dict[str, Any], _: Path) -> None:
        *parents, last = path.split(".")
        node = cfg
        for name in parents:
            node = node.setdefault(name, {})
        node[last] = value
    return edit


def _file_then(name: str, content: bytes, edit: Edit) -> Edit:
    """Write ``content`` to ``workdir/name`` before applying ``edit``."""
    def both(cfg: dict[str, Any], workdir: Path) -> None:
        (workdir / name).parent.mkdir(parents=True, exist_ok=True)
        (workdir / name).write_bytes(content)
        edit(cfg, workdir)
    return both


def _same_size_twice(cfg: dict[str, Any], _: Path) -> None:
    cfg["models"]["sizes"]["xs_again"] = dict(cfg["models"]["sizes"]["xs"])


def _tokenizer_not_a_tokenizer(cfg: dict[str, Any], workdir: Path) -> None:
    """A tokenizer directory whose tokenizer.json is not JSON: its vocabulary is read when the config is parsed."""
    (workdir / "tok").mkdir()
    (workdir / "tok" / "tokenizer.json").write_text("{not json")
    cfg["tokenizer"]["path"] = "tok"


CONFIG_CASES: list[tuple[str, Edit, str]] = [
    ("tokenizer-dir-not-a-tokenizer", _tokenizer_not_a_tokenizer, "tok/tokenizer.json"),
    ("ratio-above-1", _set("domains.legal.ratios", [0.0, 0.5, 1.5]), "domains.legal.ratios[2]"),
    ("ratio-below-0", _set("domains.legal.ratios", [-0.5, 0.5]), "domains.legal.ratios[0]"),
    ("unknown-domain", _set("domains.finance", {"ratios": [0.5]}), "domains.finance"),
    ("same-ratio-twice", _set("domains.legal.ratios", [0.0, 0.5, "5e-1"]), "domains.legal.ratios"),
    ("same-budget-twice", _set("cpt.tokens", [4096, 4096.0]), "cpt.tokens"),
    ("same-model-twice", _same_size_twice, "models.sizes.xs_again"),
    ("unknown-split-domain", _set("studies.split.domains", ["finance"]), "studies.split.domains"),
    ("negative-budget", _set("cpt.tokens", [-4096]), "cpt.tokens[0]"),
    ("negative-pretrain-budget", _set("pretrain.tokens", -8192), "pretrain.tokens"),
    ("nan-in-config", _set("optimizer.lr", float("nan")), "optimizer.lr"),
    ("missing-pool-file", _set("data.pool", ["data/demo/pool/missing.jsonl.gz"]), "data.pool"),
    ("tokenizer-path-missing", _set("tokenizer.path", "no/such/tokenizer"), "tokenizer.path"),
    ("base-checkpoint-missing", _set("models.sizes.xs.base_checkpoint", "no/such/ckpt"),
     "models.sizes.xs.base_checkpoint"),
    ("artifacts-dir-not-writable", _file_then("a_file", b"", _set("artifacts_dir", "a_file/artifacts")),
     "artifacts_dir"),
]


def write_config(workdir: Path, edit: Edit) -> str:
    """An edited copy of the micro config in ``workdir``; returns its name."""
    cfg = yaml.safe_load((workdir / "micro.yaml").read_text())
    edit(cfg, workdir)
    (workdir / "bad.yaml").write_text(yaml.safe_dump(cfg))
    return "bad.yaml"


def assert_one_clear_error(result: subprocess.CompletedProcess[str], *names: str) -> str:
    """Non-zero exit; the output names every one of ``names`` and shows no Python traceback."""
    out = result.stdout + result.stderr
    assert result.returncode != 0, out[-3000:]
    for name in names:
        assert name in out, f"{name!r} not in output:\n{out[-3000:]}"
    assert "Traceback (most recent call last)" not in out, out[-3000:]
    return out


@pytest.mark.slow
@pytest.mark.parametrize(("case", "edit", "key"), CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_bad_config_fails_at_parse_time(tmp_path: Path, case: str, edit: Edit, key: str) -> None:
    workdir = make_workdir(tmp_path / "w")
    result = run_snakemake(workdir, write_config(workdir, edit), "--dry-run")
    out = assert_one_clear_error(result, "bad.yaml", key)
    errors = [line for line in out.splitlines() if " in file " in line and "Error" in line.split()[0]]
    assert errors and all(line.startswith("InputError") for line in errors), errors
    assert not (workdir / "artifacts").exists()


def _gzip_truncated(workdir: Path) -> bytes:
    data = (workdir / POOL).read_bytes()
    return data[: len(data) // 2]


def _parquet(table: pa.Table) -> Callable[[Path], bytes]:
    def make(workdir: Path) -> bytes:
        pq.write_table(table, workdir / "tmp.parquet")
        return (workdir / "tmp.parquet").read_bytes()
    return make


def _truncated_base_checkpoint(cfg: dict[str, Any], workdir: Path) -> None:
    """The finished xs pretraining run's final weights, cut in half, as the base checkpoint of size xs."""
    final = max(workdir.glob("artifacts/train/pt-xs-*/checkpoints/tokens-*"))
    ckpt = workdir / "base_ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_bytes((final / "config.json").read_bytes())
    weights = (final / "model.safetensors").read_bytes()
    (ckpt / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    cfg["models"]["sizes"]["xs"]["base_checkpoint"] = "base_ckpt"


# (case, pool file name, its bytes (or a function of the workdir), extra config edit, target stage, expected texts)
DATA_CASES: list[tuple[str, str, Any, Edit | None, str, tuple[str, ...]]] = [
    ("empty-pool-file", "empty.jsonl", b"", None, "classified", ("empty.jsonl", "no documents")),
    ("corrupt-gzip", "cut.jsonl.gz", _gzip_truncated, None, "classified", ("cut.jsonl.gz",)),
    ("non-utf8-text", "latin1.jsonl.gz", gzip.compress(b'{"id": "a", "text": "caf\xe9 au lait"}\n'), None,
     "classified", ("latin1.jsonl.gz", "UTF-8")),
    ("parquet-wrong-schema", "wrong.parquet", _parquet(pa.table({"id": ["a"], "body": ["some text"]})), None,
     "classified", ("wrong.parquet", "'text'")),
    ("parquet-text-not-string", "ints.parquet", _parquet(pa.table({"id": ["a"], "text": [7]})), None,
     "classified", ("ints.parquet", "int64")),
    ("corrupt-parquet", "junk.parquet", b"PAR1 this is not parquet PAR1", None, "classified", ("junk.parquet",)),
    ("truncated-base-checkpoint", None, None, _truncated_base_checkpoint, "train",
     ("base_ckpt/model.safetensors", "truncated")),
]


def _target(workdir: Path, configfile: str, stage: str, pool_file: str | None) -> str:
    """Main output of the artifact of ``stage`` that reads ``pool_file`` (or of an xs CPT run, for training)."""
    match = {"classified": f"a.job.pool_file == {pool_file!r}", "train": "a.name.startswith('cpt-xs-')"}
    expr = f"next(a.output for a in plan.by_key.values() if a.stage == {stage!r} and {match.get(stage, 'True')})"
    return plan_output(workdir, configfile, expr)


@pytest.mark.slow
@pytest.mark.parametrize(("case", "name", "content", "edit", "stage", "expected"), DATA_CASES,
                         ids=[c[0] for c in DATA_CASES])
def test_bad_data_fails_in_its_job(micro_copy: Path, case: str, name: str | None, content: Any,
                                   edit: Edit | None, stage: str, expected: tuple[str, ...]) -> None:
    pool_file = None
    if name is not None:
        pool_file = f"data/demo/pool/{name}"
        data = content(micro_copy) if callable(content) else content
        (micro_copy / pool_file).write_bytes(data)

    def edit_all(cfg: dict[str, Any], workdir: Path) -> None:
        if pool_file:
            cfg["data"]["pool"] = ["data/demo/pool/pool-00.jsonl.gz", pool_file]
        if edit:
            edit(cfg, workdir)

    configfile = write_config(micro_copy, edit_all)
    target = _target(micro_copy, configfile, stage, pool_file)
    result = run_snakemake(micro_copy, configfile, target)
    out = assert_one_clear_error(result, *expected)
    assert "ERROR: " in out, out[-3000:]
    artifact = (micro_copy / target).parent
    assert not (micro_copy / target).exists() and not (artifact / "spec.json").exists()
    assert not [p for p in artifact.parent.rglob(".*.tmp")], "temporary files left behind"
    check_no_false_complete(micro_copy)


def _points(rows: list[dict[str, float]]) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        pd.DataFrame(rows).to_csv(tmp / "points.csv", index=False)
        return tmp / "points.csv"
    return make


def _bytes(name: str, content: bytes) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        (tmp / name).write_bytes(content)
        return tmp / name
    return make


GOOD = [{"N": n, "D": d, "loss": 2 + 1e3 / n + 1e3 / d} for n in (1e6, 4e6, 1.6e7) for d in (1e7, 4e7, 1.6e8)]
POINTS_CASES = [
    ("nan-loss", _points([*GOOD[:-1], {**GOOD[-1], "loss": float("nan")}]), "points.csv"),
    ("inf-tokens", _points([*GOOD[:-1], {**GOOD[-1], "D": float("inf")}]), "points.csv"),
    ("missing-column", _points([{"N": r["N"], "loss": r["loss"]} for r in GOOD]), "points.csv"),
    ("empty-file", _bytes("empty.csv", b""), "empty.csv"),
    ("corrupt-parquet", _bytes("junk.parquet", b"PAR1 junk PAR1"), "junk.parquet"),
    ("missing-file", lambda tmp: tmp / "absent.csv", "absent.csv"),
]


@pytest.mark.parametrize(("case", "make", "name"), POINTS_CASES, ids=[c[0] for c in POINTS_CASES])
def test_bad_points_file_for_fit_cli(tmp_path: Path, case: str, make: Callable[[Path], Path], name: str) -> None:
    data = make(tmp_path)
    out = tmp_path / "law.json"
    result = subprocess.run([sys.executable, "-m", "cpt_scaling.cli", "fit", "chinchilla", "--data", str(data),
                             "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("cpt-scaling: error: ") and name in lines[0], lines
    assert not out.exists() and not list(tmp_path.glob(".law.json*"))
