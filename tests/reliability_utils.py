"""Helpers of the reliability tests: snakemake in its own process group, polling, kills, artifact checks."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
from safetensors import safe_open
from workflow_utils import REPO, SNAKEMAKE, run_snakemake

from cpt_scaling.core.digests import STAMPS
from cpt_scaling.plan.artifact import MAIN_OUTPUT

# Files whose bytes legitimately differ between two runs of the same sweep (compared by content instead): the
# training log records wall-clock throughput (tokens_per_s, mfu) and, after a kill, one more "start" record.
# Everything else under artifacts/ and results/ is byte-identical between two clean runs on one machine
# (measured: 261 files, PDFs included - figures are saved without creation dates).
#: Files a resume changes beyond their content's meaning: training logs (a resumed process also logs its first
#: step) and what is drawn from them, the training curves (compared row by row below; their figures not at all).
NONDETERMINISTIC = ("train_log.jsonl", "train_curves.csv")


def start_snakemake(workdir: Path, configfile: str, *args: str, log_name: str = "snakemake") -> subprocess.Popen:
    """Start snakemake in a new session (its own process group) with output to ``workdir/<log_name>.out``."""
    cmd = [SNAKEMAKE, *args, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--profile", str(REPO / "profiles" / "local"), "--configfile", configfile]
    out = (workdir / f"{log_name}.out").open("w")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(cmd, cwd=workdir, stdout=out, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL snakemake and every job it started (the whole process group), then reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)


def wait_until(condition: Callable[[], object], proc: subprocess.Popen | None, what: str,
               timeout: float = 600, interval: float = 0.05) -> object:
    """Poll ``condition`` until it returns a truthy value; fail if ``proc`` exits first or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"snakemake exited ({proc.returncode}) before {what}")
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def log_says(workdir: Path, pattern: str, text: str) -> Path | None:
    """The first log file under ``workdir/logs`` matching ``pattern`` that contains ``text``."""
    for path in sorted((workdir / "logs").glob(pattern)):
        try:
            if text in path.read_text(errors="replace"):
                return path
        except OSError:
            continue
    return None


def unlock(workdir: Path, configfile: str) -> None:
    """``snakemake --unlock``: release the lock a killed snakemake left (its lock files outlive it)."""
    result = run_snakemake(workdir, configfile, "--unlock")
    assert result.returncode == 0, result.stderr[-3000:]


def resume(workdir: Path, configfile: str, *args: str) -> subprocess.CompletedProcess[str]:
    """What a user does after the head process was killed: release its stale lock, then run again."""
    unlock(workdir, configfile)
    return run_snakemake(workdir, configfile, *args)


def leftover_processes(workdir: Path) -> list[str]:
    """Command lines of live processes that mention ``workdir`` (snakemake or its jobs)."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = next((line for line in (proc / "status").read_text().splitlines() if line.startswith("State")), "")
        except OSError:
            continue
        if str(workdir) in cmd and "zombie" not in state:
            found.append(cmd)
    return found


def file_digests(workdir: Path, parts: tuple[str, ...] = ("artifacts", "results")) -> dict[str, str]:
    """sha256 of every file under ``workdir/<part>`` for each part, by relative path (the token stores' verified
    stamps, ``artifacts/.verified/``, excepted: they hold this copy's paths and inodes)."""
    digests = {}
    for part in parts:
        for path in sorted((workdir / part).rglob("*")):
            if path.is_file() and STAMPS not in path.relative_to(workdir).parts:
                digests[str(path.relative_to(workdir))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


def _step_records(path: Path) -> list[dict[str, object]]:
    """The step records of a training log without their wall-clock fields."""
    records = [json.loads(line) for line in path.read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in ("tokens_per_s", "mfu", "eta_s")} for r in records
            if r["event"] == "step"]


def assert_same_products(workdir: Path, reference: Path) -> None:
    """Every artifact and result of ``workdir`` equals the reference run's.

    The eval table's values and every law's parameters are compared first (readable failures); then the sha256
    of every file except those in ``NONDETERMINISTIC``: training logs must have the same step records (step,
    tokens, loss, lr, domain sequences).
    """
    import pandas as pd

    got, want = (pd.read_parquet(d / "results" / "tables" / "eval.parquet") for d in (workdir, reference))
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    for law in sorted((reference / "results" / "laws").glob("*.json")):
        assert json.loads((workdir / law.relative_to(reference)).read_text()) == json.loads(law.read_text()), law
    mine, theirs = file_digests(workdir), file_digests(reference)
    assert sorted(mine) == sorted(theirs), set(mine) ^ set(theirs)
    differ = [p for p in theirs if mine[p] != theirs[p]
              and not (p.endswith(NONDETERMINISTIC) or (p.endswith(".pdf") and "/train_curves_" in p))]
    assert not differ, f"{len(differ)} files differ, e.g. {differ[:10]}"
    for path in theirs:  # a resumed run also logs its first step after the resume: compare the steps both have
        if path.endswith("train_curves.csv"):
            keys = ["run", "segment", "step"]
            both = pd.read_csv(reference / path).merge(pd.read_csv(workdir / path), on=keys, how="left",
                                                      suffixes=("", "_got"))
            for column in ("tokens", "loss", "lr"):
                assert (both[column] == both[f"{column}_got"]).all(), (path, column)
        if path.endswith("train_log.jsonl"):
            mine_steps = {r["step"]: r for r in _step_records(workdir / path)}
            for record in _step_records(reference / path):
                assert mine_steps.get(record["step"]) == record, (path, record)


def plan_output(workdir: Path, configfile: str, expr: str) -> str:
    """Evaluate ``expr`` (over ``plan``, the sweep plan of ``configfile``) in a fresh Python in ``workdir``.

    A fresh process computes keys with the code on disk now, as snakemake will; the test process may hold
    modules imported before the source changed.
    """
    code = ("from cpt_scaling.config.load import load_config; from cpt_scaling.plan.sweep import build_plan; "
            f"plan = build_plan(load_config({configfile!r})); print({expr})")
    result = subprocess.run([sys.executable, "-c", code], cwd=workdir, capture_output=True, text=True, check=True)
    return result.stdout.strip()


def _check_file(path: Path) -> None:
    """Open a file in its format (raises when it is truncated or corrupt)."""
    if path.suffix == ".json":
        json.loads(path.read_text())
    elif path.suffix == ".parquet":
        pq.read_table(path)
    elif path.suffix == ".safetensors":
        with safe_open(str(path), "pt") as f:
            for name in f.keys():  # noqa: SIM118 - safe_open handles have keys(), not iteration
                f.get_tensor(name)


def check_no_false_complete(workdir: Path) -> list[str]:
    """Check that no artifact looks complete when it is not; return the artifact dirs that are unfinished.

    An artifact is complete when its ``spec.json`` exists (the adaptor writes it last): then its main output
    and every visible file in it must open in its format. In every artifact, finished or not, each visible
    checkpoint (``checkpoints/tokens-*``) must be loadable: the trainer resumes from them. An unfinished
    artifact may hold its main output (killed between the rename and ``spec.json``): Snakemake marked its
    outputs incomplete and ``--rerun-incomplete`` (set in the local profile) redoes the job.
    """
    unfinished = []
    for art in sorted((workdir / "artifacts").glob("*/*-*")):
        if not art.is_dir():
            continue
        stage = art.parent.name
        if (art / "spec.json").is_file():
            assert (art / MAIN_OUTPUT[stage]).is_file(), f"{art} has spec.json but no {MAIN_OUTPUT[stage]}"
            for path in art.rglob("*"):
                if path.is_file() and not path.name.startswith("."):
                    _check_file(path)
        else:
            unfinished.append(str(art.relative_to(workdir)))
        for ckpt in (art / "checkpoints").glob("tokens-*"):
            _check_file(ckpt / "config.json")
            _check_file(ckpt / "model.safetensors")
    for path in (workdir / "results").rglob("*.json"):
        _check_file(path)
    return unfinished
