"""Training with real DeepSpeed on CPU: learning, mixture ratios, checkpoints, kill-and-resume."""

from __future__ import annotations

import itertools
import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file
from tiny_shards import SEQ_LEN, TRAIN_SCRIPT, VOCAB, make_shards, sequences, tiny_spec

from cpt_scaling.core.errors import InputError
from cpt_scaling.data.sequences import read_train_sequences
from cpt_scaling.data.shards import write_token_file
from cpt_scaling.train.mixture import MixtureSampler, _Source
from cpt_scaling.train.schedule import learning_rate
from cpt_scaling.train.spec_types import OptimizerSpec
from cpt_scaling.train.train_log import read_log
from cpt_scaling.train.trainer import train


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("shards")
    return make_shards(root / "general", domain=False), make_shards(root / "domain", domain=True, seed=1)


def step_records(out: Path) -> list[dict]:
    return [r for r in read_log(out / "train_log.jsonl") if r["event"] == "step"]


def test_tiny_run_learns_and_writes_requested_checkpoints(shards: tuple[Path, Path], tmp_path: Path) -> None:
    general, domain = shards
    per_step = 8 * SEQ_LEN
    spec = tiny_spec(general, domain, ratio=0.5, checkpoint_tokens=[0, 10 * per_step, 25 * per_step])
    result = train(spec, tmp_path / "run")

    final = 40 * per_step
    assert [c["tokens"] for c in result["checkpoints"]] == [0, 10 * per_step, 25 * per_step, final]
    assert result["final"] == f"checkpoints/tokens-{final:012d}"
    assert result["attention"] == "sdpa" and result["n_params"] > result["n_params_non_embedding"] > 0
    assert json.loads((tmp_path / "run" / "checkpoints.json").read_text()) == result
    for c in result["checkpoints"]:
        files = sorted(p.name for p in (tmp_path / "run" / c["path"]).iterdir())
        assert files == ["config.json", "digests.json", "generation_config.json", "model.safetensors"]  # no state left
    assert not [p for p in (tmp_path / "run" / "checkpoints").iterdir() if p.name.startswith(".")]

    records = read_log(tmp_path / "run" / "train_log.jsonl")
    assert records[0]["event"] == "start" and records[0]["resumed_from"] is None
    steps = step_records(tmp_path / "run")
    assert steps[-1]["step"] == 40 and steps[-1]["tokens"] == final
    assert steps[0]["loss"] > math.log(VOCAB) - 0.2
    assert steps[-1]["loss"] < steps[0]["loss"] - 1.0
    assert all(r["mfu"] is None and r["tokens_per_s"] > 0 for r in steps)

    # A rerun of a finished run does nothing; another spec in the same directory is refused.
    assert train(spec, tmp_path / "run") == result
    with pytest.raises(InputError, match="another spec"):
        train({**spec, "seed": 1}, tmp_path / "run")


@pytest.mark.parametrize("ratio", [0.0, 0.25, 0.5, 1.0])
def test_mixture_realises_the_domain_ratio(shards: tuple[Path, Path], tmp_path: Path, ratio: float) -> None:
    general, domain = shards
    steps, batch = 11, 6
    spec = tiny_spec(general, domain if ratio > 0 else None, ratio=ratio, tokens=steps * batch * SEQ_LEN,
                     batch_size=batch, micro_batch_size=3, log_every=1)
    train(spec, tmp_path / "run")
    logged = [r["domain_sequences"] for r in step_records(tmp_path / "run")]

    sampler = MixtureSampler(
        read_train_sequences(general, SEQ_LEN, VOCAB) if ratio < 1 else None,
        read_train_sequences(domain, SEQ_LEN, VOCAB) if ratio > 0 else None,
        ratio, batch, seed=0,
    )
    cumulative = 0
    for step in range(steps):
        rows = sampler.batch(step)
        assert rows.shape == (batch, SEQ_LEN)
        cumulative += int((rows[:, 0] >= VOCAB // 2).sum())  # domain rows use the vocabulary's upper half
        assert abs(cumulative - ratio * (step + 1) * batch) <= 0.5  # tracks r within a sequence at each step
        assert logged[step] == cumulative
    assert cumulative == math.floor(ratio * steps * batch + 0.5)


def test_sampler_is_seeded_and_wraps_around_epochs() -> None:
    data = sequences(10, domain=False, seed=0)
    source = _Source(data, seed=5, source_id=0)
    rows = source.draw(0, 30)
    for epoch in range(3):
        block = rows[epoch * 10:(epoch + 1) * 10]
        assert sorted(map(tuple, block.tolist())) == sorted(map(tuple, data.tolist()))  # permuted per epoch
    assert not np.array_equal(rows[:10], rows[10:20])
    assert np.array_equal(_Source(data, seed=5, source_id=0).draw(7, 9), rows[7:16])  # stateless


def _mapped_file_kb() -> int:
    status = Path("/proc/self/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("RssFile:")).split()[1])


def test_sampling_a_token_store_keeps_resident_memory_flat(tmp_path: Path) -> None:
    """Drawing batches from a memory-mapped store does not grow the resident set with what it has read."""
    seq_len, n_rows = 128, 64_000  # a 32 MB token file
    rows = np.random.default_rng(0).integers(0, 2**16, size=(n_rows, seq_len), dtype=np.uint32)
    store = tmp_path / "store"
    store.mkdir()
    entry = write_token_file(store / "train.u32", rows)
    manifest = {"seq_len": seq_len, "vocab_size": 2**16, "train": {"n_tokens": rows.size, **entry}}
    (store / "manifest.json").write_text(json.dumps(manifest))
    data = read_train_sequences(store, seq_len, 2**16)
    sampler = MixtureSampler(data, None, 0.0, 16, seed=0)
    before = _mapped_file_kb()
    for step in range(400):  # 6,400 random rows: without releasing them, most of the file ends up mapped
        batch = sampler.batch(step, 4, 12)
        assert np.array_equal(batch, rows[sampler.general.rows(step * 16 + 4, 8)])
    assert _mapped_file_kb() - before < 8 * 1024


def test_schedules() -> None:
    opt = OptimizerSpec(lr=1.0, weight_decay=0.0, beta1=0.9, beta2=0.95, schedule="cosine", min_lr_ratio=0.1,
                        warmup_fraction=0.1)
    lrs = [learning_rate(s, 100, opt) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0) and lrs[10] == pytest.approx(1.0)
    assert lrs[-1] == pytest.approx(0.1) and all(a >= b for a, b in itertools.pairwise(lrs[10:]))
    wsd = [learning_rate(s, 100, replace(opt, schedule="wsd")) for s in range(100)]
    assert wsd[10:80] == [1.0] * 70 and wsd[-1] == pytest.approx(0.1)
    assert [learning_rate(s, 100, replace(opt, schedule="constant")) for s in (10, 99)] == [1.0, 1.0]


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"tokens": 1000}, "tokens"),
        ({"checkpoint_tokens": [100]}, "checkpoint_tokens"),
        ({"ratio": 0.5, "domain_shards": None}, "domain_shards"),
        ({"ratio": 1.5}, "ratio"),
        ({"micro_batch_size": 3}, "batch_size"),
        ({"deepspeed": {"zero_stage": 4}}, "zero_stage"),
        ({"deepspeed": {"zero_stage": 0, "offload_optimizer": True}}, "offload_optimizer"),
        ({"deepspeed": {"zero_stage": 2, "grad_accum_dtype": "fp16"}}, "grad_accum_dtype"),
        ({"chekpoint_tokens": [0]}, "unknown keys \\['chekpoint_tokens'\\]"),
    ],
)
def test_bad_specs_name_the_key(shards: tuple[Path, Path], tmp_path: Path, change: dict, key: str) -> None:
    spec = {**tiny_spec(*shards, ratio=0.5), **change}
    with pytest.raises(InputError, match=key):
        train(spec, tmp_path / "run")


@pytest.mark.parametrize("zero_stage", [0, 2])
def test_sigkill_then_resume_is_bitwise_identical(
    shards: tuple[Path, Path], tmp_path: Path, zero_stage: int
) -> None:
    general, domain = shards
    per_step = 8 * SEQ_LEN
    steps = 150
    spec = tiny_spec(general, domain, ratio=0.25, tokens=steps * per_step,
                     checkpoint_tokens=[s * per_step for s in (20, 40, 80, 120)],
                     deepspeed={"zero_stage": zero_stage})
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(spec))
    out = tmp_path / "killed"
    command = [sys.executable, "-c", TRAIN_SCRIPT, str(spec_file), str(out)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    stderr = tmp_path / "killed.stderr"
    with stderr.open("w") as err:
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=err)
    first = out / "checkpoints" / f"tokens-{20 * per_step:012d}"
    deadline = time.monotonic() + 120
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert first.exists(), stderr.read_text()[-3000:]
    assert not (out / "checkpoints.json").exists(), "the run finished before it could be killed"

    train(spec, out)  # the rerun, as a fresh call in this process
    reference = train(spec, tmp_path / "reference")

    final = reference["final"]
    resumed_weights = load_file(out / final / "model.safetensors")
    reference_weights = load_file(tmp_path / "reference" / final / "model.safetensors")
    assert resumed_weights.keys() == reference_weights.keys()
    for name, tensor in reference_weights.items():
        assert np.array_equal(tensor.numpy(), resumed_weights[name].numpy()), name

    starts = [r for r in read_log(out / "train_log.jsonl") if r["event"] == "start"]
    assert [s["resumed_from"] is None for s in starts] == [True, False]
    assert 20 * per_step <= starts[1]["resumed_from"] < steps * per_step
    logged_steps = [r["step"] for r in step_records(out)]
    assert logged_steps == sorted(set(logged_steps))  # the killed run's records past the checkpoint are gone
    resumed_losses = {r["step"]: r["loss"] for r in step_records(out)}
    reference_losses = {r["step"]: r["loss"] for r in step_records(tmp_path / "reference")}
    assert {s: resumed_losses[s] for s in reference_losses} == reference_losses
