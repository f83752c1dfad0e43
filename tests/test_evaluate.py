"""Held-out evaluation of a tiny trained run."""

from __future__ import annotations

import math
from pathlib import Path

import pyarrow as pa
import pytest
import torch
from tiny_shards import SEQ_LEN, VOCAB, make_shards, tiny_spec

from cpt_scaling.core.errors import InputError
from cpt_scaling.data.sequences import read_sequences
from cpt_scaling.evaluate.heldout import evaluate_run, schema
from cpt_scaling.train.model import load_model
from cpt_scaling.train.trainer import train


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    root = tmp_path_factory.mktemp("eval")
    general = make_shards(root / "general", domain=False)
    domain = make_shards(root / "domain", domain=True, seed=1)
    spec = tiny_spec(general, domain, ratio=0.5, checkpoint_tokens=[0, 20 * 8 * SEQ_LEN])
    train(spec, root / "run")
    return root / "run", {"general": general / "heldout.parquet", "domain": domain / "heldout.parquet"}


def test_losses_per_checkpoint_and_suite(run: tuple[Path, dict[str, Path]]) -> None:
    run_dir, suites = run
    table = evaluate_run(run_dir, suites, batch_size=5)
    assert table.schema == schema()
    rows = table.to_pylist()
    assert [(r["checkpoint_tokens"], r["suite"]) for r in rows] == [
        (t, s) for t in (0, 20 * 8 * SEQ_LEN, 40 * 8 * SEQ_LEN) for s in ("domain", "general")
    ]
    loss = {(r["checkpoint_tokens"], r["suite"]): r["loss"] for r in rows}
    for suite in suites:
        assert loss[(0, suite)] == pytest.approx(math.log(VOCAB), abs=0.2)  # untrained: near uniform
        assert loss[(40 * 8 * SEQ_LEN, suite)] < loss[(20 * 8 * SEQ_LEN, suite)] < loss[(0, suite)] - 0.8
        assert loss[(40 * 8 * SEQ_LEN, suite)] < loss[(0, suite)] - 1.0
    for r in rows:
        assert r["perplexity"] == pytest.approx(math.exp(r["loss"]))
        assert r["n_tokens"] == 16 * (SEQ_LEN - 1)
    # another batch size changes only float rounding
    other = evaluate_run(run_dir, suites, batch_size=16).column("loss").to_pylist()
    assert other == pytest.approx(table.column("loss").to_pylist(), rel=1e-5)


def test_loss_matches_the_model_own_loss(run: tuple[Path, dict[str, Path]]) -> None:
    run_dir, suites = run
    table = evaluate_run(run_dir, {"general": suites["general"]}, max_sequences=4)
    final = table.filter(pa.compute.equal(table["checkpoint_tokens"], 40 * 8 * SEQ_LEN)).to_pylist()[0]
    assert final["n_tokens"] == 4 * (SEQ_LEN - 1)
    model = load_model(run_dir / "checkpoints" / f"tokens-{40 * 8 * SEQ_LEN:012d}").eval()
    ids = torch.from_numpy(read_sequences(suites["general"])[:4])
    with torch.no_grad():
        reference = model(input_ids=ids, labels=ids).loss.item()
    assert final["loss"] == pytest.approx(reference, rel=1e-5)


def test_evaluation_is_deterministic(run: tuple[Path, dict[str, Path]]) -> None:
    run_dir, suites = run
    assert evaluate_run(run_dir, suites).equals(evaluate_run(run_dir, suites))


def test_unfinished_run_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"checkpoints\.json"):
        evaluate_run(tmp_path, {})
