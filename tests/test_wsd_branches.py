"""Warmup-stable-decay trunks and branches on CPU: a branch off a trunk is the separate WSD run, bit for bit."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tiny_shards import SEQ_LEN, make_shards, tiny_spec

from cpt_scaling.train.train_log import read_log
from cpt_scaling.train.trainer import train

STEP = 8 * SEQ_LEN  # tokens per optimizer step of tiny_spec
WSD = {"lr": 3e-3, "min_lr_ratio": 0.1, "weight_decay": 0.1, "beta1": 0.9, "beta2": 0.95, "warmup_steps": 3,
       "schedule": "wsd", "decay_fraction": 0.25, "decay_shape": "1-sqrt", "grad_clip": 1.0}
TRUNK = {**{k: v for k, v in WSD.items() if k not in ("decay_fraction", "decay_shape")}, "schedule": "constant"}


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("shards")
    return make_shards(root / "general", domain=False), make_shards(root / "domain", domain=True, seed=1)


def final_weights(run: Path, result: dict) -> dict[str, torch.Tensor]:
    return load_file(str(run / result["final"] / "model.safetensors"))


def last_loss(run: Path) -> float:
    return [r for r in read_log(run / "train_log.jsonl") if r["event"] == "step"][-1]["loss"]


def test_branch_from_a_trunk_equals_the_separate_wsd_run_bitwise(shards: tuple[Path, Path], tmp_path: Path) -> None:
    general, domain = shards
    steps, branch_at = 16, 12  # decay over the last quarter
    separate = train(tiny_spec(general, domain, ratio=0.5, tokens=steps * STEP, optimizer=WSD),
                     tmp_path / "separate")

    # The trunk in two segments (a later budget extends it), keeping its state at each branch point.
    seg1 = tiny_spec(general, domain, ratio=0.5, tokens=8 * STEP, optimizer=TRUNK, keep_final_state=True)
    train(seg1, tmp_path / "trunk-8")
    seg2 = {**seg1, "tokens": branch_at * STEP,
            "init": {"kind": "state", "path": str(tmp_path / "trunk-8" / "checkpoints" / f"tokens-{8 * STEP:012d}")}}
    trunk = train(seg2, tmp_path / "trunk-12")
    assert (tmp_path / "trunk-12" / trunk["final"] / "train_state" / "state.json").is_file()

    branch_spec = tiny_spec(general, domain, ratio=0.5, tokens=steps * STEP, optimizer=WSD,
                            init={"kind": "state", "path": str(tmp_path / "trunk-12" / trunk["final"])})
    branch = train(branch_spec, tmp_path / "branch")
    records = read_log(tmp_path / "branch" / "train_log.jsonl")
    assert records[0]["resumed_from"] == branch_at * STEP
    assert next(r["step"] for r in records if r["event"] == "step") == branch_at + 1  # only the decay is trained

    a, b = final_weights(tmp_path / "separate", separate), final_weights(tmp_path / "branch", branch)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert last_loss(tmp_path / "branch") == last_loss(tmp_path / "separate")


def test_continuing_a_checkpoint_without_train_state_is_refused(shards: tuple[Path, Path], tmp_path: Path) -> None:
    from cpt_scaling.core.errors import InputError

    general, domain = shards
    done = train(tiny_spec(general, domain, ratio=0.5, tokens=4 * STEP), tmp_path / "plain")
    spec = tiny_spec(general, domain, ratio=0.5, tokens=8 * STEP,
                     init={"kind": "state", "path": str(tmp_path / "plain" / done["final"])})
    with pytest.raises(InputError, match="train state"):
        train(spec, tmp_path / "branch")
