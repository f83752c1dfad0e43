"""Retries and concurrency on one training job: a job killed mid-run succeeds on Snakemake's retry by resuming
from its checkpoint, and a second snakemake on the same directory is refused without harming the first.

The fault needs no production hook: the test SIGKILLs the training process itself once it has saved a
checkpoint, which is what preemption or the OOM killer does to a real job. A longer pretraining budget than the
micro sweep's gives the test time to act; only that run is a new artifact (the shards it reads are reused).
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import yaml
from reliability_utils import (
    check_no_false_complete,
    kill_group,
    plan_output,
    resume,
    start_snakemake,
    wait_until,
)
from workflow_utils import run_snakemake

pytestmark = pytest.mark.slow


def long_pretrain(workdir: Path) -> tuple[str, Path]:
    """A config whose xs pretraining runs 128 steps with 4 checkpoints; returns it and that run's directory."""
    cfg = yaml.safe_load((workdir / "micro.yaml").read_text())
    cfg["pretrain"] = {"tokens": 65536, "checkpoints": 4, "budgets": "single_run"}  # one run with 4 checkpoints
    (workdir / "long.yaml").write_text(yaml.safe_dump(cfg))
    return "long.yaml", workdir / plan_output(workdir, "long.yaml", "plan.pretrain['xs'].dir")


def _train_process(workdir: Path) -> int | None:
    """The pid of the training job's Python process (a Snakemake script job) of ``workdir``."""
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(str(workdir).encode() in part and part.endswith(b".train.py") for part in cmd):
            return int(proc.name)
    return None


def _starts(run_dir: Path) -> list[dict[str, object]]:
    records = [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]
    return [r for r in records if r["event"] == "start"]


def test_killed_training_job_resumes_on_retry(micro_copy: Path) -> None:
    configfile, run_dir = long_pretrain(micro_copy)
    target = str((run_dir / "checkpoints.json").relative_to(micro_copy))
    proc = start_snakemake(micro_copy, configfile, target, "--retries", "1")
    first = wait_until(lambda: sorted((run_dir / "checkpoints").glob("tokens-*")), proc, "the first checkpoint")
    pid = _train_process(micro_copy)
    assert pid is not None and not (run_dir / "checkpoints.json").exists()
    os.kill(pid, signal.SIGKILL)
    assert proc.wait(timeout=1200) == 0, (micro_copy / "snakemake.out").read_text()[-4000:]
    assert "Trying to restart job" in (micro_copy / "snakemake.out").read_text()

    starts = _starts(run_dir)
    assert len(starts) == 2, starts
    assert starts[0]["resumed_from"] is None
    resumed = starts[1]["resumed_from"]
    assert isinstance(resumed, int) and resumed >= int(first[0].name.split("-")[1]), starts
    listing = json.loads((run_dir / "checkpoints.json").read_text())
    assert [c["tokens"] for c in listing["checkpoints"]] == [8192, 16384, 32768, 65536]
    assert check_no_false_complete(micro_copy) == []


def test_second_snakemake_on_the_same_directory_is_refused(micro_copy: Path) -> None:
    configfile, run_dir = long_pretrain(micro_copy)
    target = str((run_dir / "checkpoints.json").relative_to(micro_copy))
    first = start_snakemake(micro_copy, configfile, target)
    pid = wait_until(lambda: _train_process(micro_copy), first, "the training job to start")
    # Freeze the training job so the first invocation surely still holds its lock while the second one starts
    # (the job alone takes about as long as a snakemake start-up); SIGCONT lets it finish undisturbed.
    os.kill(pid, signal.SIGSTOP)
    try:
        second = run_snakemake(micro_copy, configfile, target)
        assert first.poll() is None, "the second invocation must not stop the first"
    finally:
        os.kill(pid, signal.SIGCONT)
    out = second.stdout + second.stderr
    assert second.returncode != 0 and "cannot be locked" in out, out[-3000:]
    assert first.wait(timeout=1200) == 0, (micro_copy / "snakemake.out").read_text()[-4000:]
    assert len(_starts(run_dir)) == 1, "only the first invocation trained"
    assert check_no_false_complete(micro_copy) == []
    assert run_snakemake(micro_copy, configfile, target, "--dry-run").returncode == 0


def test_corrupt_checkpoint_of_an_interrupted_run_is_a_clear_error(micro_copy: Path) -> None:
    """Bad input row "corrupt checkpoint before a resume": the weights the trainer would resume from are cut."""
    configfile, run_dir = long_pretrain(micro_copy)
    target = str((run_dir / "checkpoints.json").relative_to(micro_copy))
    proc = start_snakemake(micro_copy, configfile, target)
    try:
        wait_until(lambda: sorted((run_dir / "checkpoints").glob("tokens-*")), proc, "the first checkpoint")
    finally:
        kill_group(proc)
    newest = max((run_dir / "checkpoints").glob("tokens-*/train_state/state.json")).parent.parent
    weights = newest / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    result = resume(micro_copy, configfile, target)
    out = result.stdout + result.stderr
    assert result.returncode != 0 and f"ERROR: {weights.relative_to(micro_copy)}: truncated" in out, out[-3000:]
    assert "Traceback (most recent call last)" not in out, out[-3000:]
    assert not (run_dir / "checkpoints.json").exists() and not (run_dir / "spec.json").exists()
