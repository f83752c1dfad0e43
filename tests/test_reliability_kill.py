"""Kills lose nothing: SIGKILL the whole snakemake process group during classification, shard writing, training
and fitting, and snakemake alone during a later training (its orphaned jobs must stop by themselves), of one micro
sweep; after each kill no artifact looks complete when it is not, and the resumed sweep ends with the same
artifacts as the uninterrupted session run (``micro_run``)."""

from __future__ import annotations

import functools
import json
import os
import signal
from pathlib import Path

import pytest
from conftest import make_workdir
from reliability_utils import (
    assert_same_products,
    check_no_false_complete,
    kill_group,
    leftover_processes,
    log_says,
    resume,
    start_snakemake,
    unlock,
    wait_until,
)

pytestmark = pytest.mark.slow


def _training_midway(workdir: Path) -> Path | None:
    """A training run that has saved a checkpoint but not finished."""
    for run in sorted((workdir / "artifacts" / "train").glob("*-*")):
        if not (run / "checkpoints.json").exists() and list((run / "checkpoints").glob("tokens-*")):
            return run
    return None


STAGES = [
    ("classification", lambda w: log_says(w, "classified/*.log", "rule classify_pool_file")),
    # A shard job's temporary directory exists from its first write to its rename: the whole writing phase (its
    # "wrote train-" log line came too close to the rename; one CI run killed after it).
    ("shard writing", lambda w: sorted((w / "artifacts" / "shards").glob(".*.tmp"))),
    ("training", _training_midway),
    # `kill -9` of snakemake alone: its jobs are orphaned and must stop by themselves (a micro run's remaining
    # steps take ~0.1 s, so the orphan may also finish first; either way nothing may look complete when it is not)
    ("orphaned training", _training_midway),
    ("fitting", lambda w: log_says(w, "results/fit_*.log", "rule fit_")),
]


def test_kill_at_each_stage_then_resume_gives_the_uninterrupted_result(micro_run: Path, tmp_path: Path) -> None:
    workdir = make_workdir(tmp_path / "w")
    killed_train_run = None
    for i, (stage, in_progress) in enumerate(STAGES):
        if i:  # the previous attempt was killed: release its stale lock, as a user would
            unlock(workdir, "micro.yaml")
        proc = start_snakemake(workdir, "micro.yaml", log_name=f"attempt{i}")
        try:
            hit = wait_until(functools.partial(in_progress, workdir), proc, f"{stage} in progress", interval=0.01)
        finally:
            if stage == "orphaned training":  # `kill -9` of snakemake alone: its jobs must stop by themselves
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=60)
            else:
                kill_group(proc)
        if stage == "orphaned training":
            wait_until(lambda: not leftover_processes(workdir), None, "the orphaned jobs to stop", timeout=60)
            check_no_false_complete(workdir)
            continue
        assert not leftover_processes(workdir), f"jobs survived the kill during {stage}"
        unfinished = check_no_false_complete(workdir)
        if stage == "fitting":  # results are not keyed artifacts: the killed fit's law must be absent
            law = workdir / "results" / "laws" / f"{Path(str(hit)).stem.removeprefix('fit_')}.json"
            assert not law.exists(), f"the kill during fitting came after {law} was written"
        else:
            assert unfinished, f"the kill during {stage} left nothing unfinished: it came too late"
        if stage == "training":
            killed_train_run = hit
            assert isinstance(hit, Path) and not (hit / "checkpoints.json").exists()

    result = resume(workdir, "micro.yaml")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert check_no_false_complete(workdir) == []
    assert not list((workdir / "artifacts").rglob(".*.tmp")), "temporaries of killed jobs left behind"

    assert isinstance(killed_train_run, Path)
    starts = [json.loads(line) for line in (killed_train_run / "train_log.jsonl").read_text().splitlines()]
    starts = [r for r in starts if r["event"] == "start"]
    assert len(starts) == 2 and starts[0]["resumed_from"] is None and starts[1]["resumed_from"] > 0, starts

    assert_same_products(workdir, micro_run)
