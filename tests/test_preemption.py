"""Preemption and time limits in the trainer (real DeepSpeed on CPU): SIGUSR1/SIGTERM mid-run, its own deadline,
time-based resumable checkpoints; every stopped run resumes to the bytes of an uninterrupted one."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tiny_shards import SEQ_LEN, TRAIN_SCRIPT, make_shards, tiny_spec

from cpt_scaling.train import checkpoints as ckpt
from cpt_scaling.train.resubmit import RESUBMIT_EXIT_CODE, RESUBMIT_MARKER, Resubmit
from cpt_scaling.train.train_log import read_log
from cpt_scaling.train.trainer import train

PER_STEP = 8 * SEQ_LEN
STEPS = 120


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("shards")
    return make_shards(root / "general", domain=False), make_shards(root / "domain", domain=True, seed=1)


def spec_of(shards: tuple[Path, Path], zero_stage: int, **extra: object) -> dict:
    return tiny_spec(*shards, ratio=0.25, tokens=STEPS * PER_STEP, log_every=1,
                     checkpoint_tokens=[s * PER_STEP for s in (20, 100)], deepspeed={"zero_stage": zero_stage},
                     **extra)


_REFERENCES: dict[int, Path] = {}


def reference(shards: tuple[Path, Path], zero_stage: int, root: Path) -> Path:
    """An uninterrupted run of the same spec (once per ZeRO stage and module)."""
    if zero_stage not in _REFERENCES:
        out = root / f"reference-{zero_stage}"
        train(spec_of(shards, zero_stage), out)
        _REFERENCES[zero_stage] = out
    return _REFERENCES[zero_stage]


def digests(run: Path) -> dict[str, str]:
    """sha256 of every file of a run but its log (which records wall-clock throughput and the restarts)."""
    return {str(p.relative_to(run)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(run.rglob("*")) if p.is_file() and p.name != "train_log.jsonl"}


def steps_logged(run: Path) -> list[int]:
    return [r["step"] for r in read_log(run / "train_log.jsonl") if r["event"] == "step"]


def start(spec: dict, out: Path, tmp: Path) -> subprocess.Popen:
    spec_file = tmp / f"{out.name}.spec.json"
    spec_file.write_text(json.dumps(spec))
    err = (tmp / f"{out.name}.stderr").open("w")
    return subprocess.Popen([sys.executable, "-c", TRAIN_SCRIPT, str(spec_file), str(out)],
                            env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.DEVNULL, stderr=err)


def wait_for(condition, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, "the training process ended early"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.002)


@pytest.mark.parametrize(("zero_stage", "sig"), [(0, signal.SIGUSR1), (2, signal.SIGUSR1), (2, signal.SIGTERM)])
def test_signal_mid_run_checkpoints_within_a_step_and_the_rerun_is_byte_identical(
    shards: tuple[Path, Path], tmp_path: Path, zero_stage: int, sig: signal.Signals
) -> None:
    spec = spec_of(shards, zero_stage)
    out = tmp_path / "stopped"
    proc = start(spec, out, tmp_path)
    wait_for(lambda: (out / "checkpoints" / ckpt.checkpoint_name(20 * PER_STEP)).is_dir(), proc)
    wait_for(lambda: len(steps_logged(out)) >= 25, proc)  # mid-stretch between the two evaluation checkpoints
    at_signal = max(steps_logged(out))
    proc.send_signal(sig)
    assert proc.wait(timeout=120) == RESUBMIT_EXIT_CODE, (tmp_path / "stopped.stderr").read_text()[-3000:]

    resumable = ckpt.complete_checkpoints(out, ckpt.RESUME_DIR)
    assert len(resumable) == 1, resumable
    stopped_step = resumable[0][0] // PER_STEP
    # The step in progress when the signal came is finished (its log record may lag by one), no more; a signal
    # landing between a step's log record and its stop check stops right there (stopped_step == at_signal).
    assert at_signal <= stopped_step <= at_signal + 2, (at_signal, stopped_step)
    assert (resumable[0][1] / ckpt.TRAIN_STATE / "state.json").is_file()
    stop = [r for r in read_log(out / "train_log.jsonl") if r["event"] == "stop"]
    assert stop == [{"event": "stop", "step": stopped_step, "tokens": stopped_step * PER_STEP,
                     "reason": f"signal {sig.name}", "exit_code": RESUBMIT_EXIT_CODE}]
    assert json.loads((out / RESUBMIT_MARKER).read_text())["step"] == stopped_step
    assert not (out / "checkpoints.json").exists()
    # The evaluation checkpoint before it kept its weights but not its (superseded) train state.
    assert not (out / "checkpoints" / ckpt.checkpoint_name(20 * PER_STEP) / ckpt.TRAIN_STATE).exists()

    result = train(spec, out)  # the resubmission
    ref = reference(shards, zero_stage, tmp_path.parent)
    assert result == json.loads((ref / "checkpoints.json").read_text())
    assert [c["tokens"] for c in result["checkpoints"]] == [20 * PER_STEP, 100 * PER_STEP, STEPS * PER_STEP]
    assert digests(out) == digests(ref), "byte-identical to the uninterrupted run"
    assert not (out / ckpt.RESUME_DIR).exists() and not (out / RESUBMIT_MARKER).exists()
    starts = [r for r in read_log(out / "train_log.jsonl") if r["event"] == "start"]
    assert [s["resumed_from"] for s in starts] == [None, stopped_step * PER_STEP]


def test_own_deadline_stops_at_a_step_boundary_and_resumes(shards: tuple[Path, Path], tmp_path: Path,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    spec = spec_of(shards, 2)
    out = tmp_path / "deadline"
    caplog.set_level(logging.INFO, logger="cpt_scaling.train.trainer")
    with pytest.raises(Resubmit) as stopped:
        train({**spec, "stop_at": time.time()}, out)  # already due: stops after its first step
    assert stopped.value.code == RESUBMIT_EXIT_CODE and stopped.value.step == 1
    assert "deadline" in stopped.value.reason
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("step 1/")]
    assert line.endswith(" (this job stops for a resubmission in 0s)"), line  # its ETA says the deadline comes first
    assert [t for t, _ in ckpt.complete_checkpoints(out, ckpt.RESUME_DIR)] == [PER_STEP]
    train({**spec, "stop_at": time.time() + 3600}, out)  # a later deadline is not part of the spec's digest
    assert digests(out) == digests(reference(shards, 2, tmp_path.parent))


def test_time_checkpoints_bound_the_work_a_kill_loses(shards: tuple[Path, Path], tmp_path: Path) -> None:
    """SIGKILL (no warning): the newest resumable checkpoint is at most checkpoint_minutes plus one step and one
    save old; only one is kept, it is never listed, and the rerun is byte-identical."""
    interval = 0.2  # seconds
    spec = spec_of(shards, 0, checkpoint_minutes=interval / 60)
    out = tmp_path / "killed"
    proc = start(spec, out, tmp_path)
    wait_for(lambda: len(steps_logged(out)) >= 90, proc)
    proc.send_signal(signal.SIGKILL)
    killed_at = time.time()
    proc.wait()
    assert len(ckpt.complete_checkpoints(out, ckpt.RESUME_DIR)) == 1, "one resumable checkpoint, the newest"
    newest, state = ckpt.resumable_checkpoint(out)
    assert newest.parent.name == ckpt.RESUME_DIR
    lost_seconds = killed_at - (newest / ckpt.TRAIN_STATE / "state.json").stat().st_mtime
    lost_steps = max(steps_logged(out)) - state["step"]
    steps = [r for r in read_log(out / "train_log.jsonl") if r["event"] == "step"]
    step_seconds = PER_STEP / min(r["tokens_per_s"] for r in steps)
    print(f"lost work per kill: {lost_seconds:.2f} s ({lost_steps} steps) with checkpoint every {interval} s, "
          f"slowest step {step_seconds:.3f} s")
    assert 0 <= lost_seconds <= interval + 2 * step_seconds + 1.0, (lost_seconds, step_seconds)
    train(spec, out)
    listing = json.loads((out / "checkpoints.json").read_text())
    assert [c["tokens"] for c in listing["checkpoints"]] == [20 * PER_STEP, 100 * PER_STEP, STEPS * PER_STEP]
    assert digests(out) == digests(reference(shards, 0, tmp_path.parent))
