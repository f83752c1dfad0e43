"""End to end through a real one-node SLURM: profiles/slurm runs part of the micro sweep as SLURM jobs.

The session fixture starts the cluster with tests/slurm/cluster.sh (installing slurm-wlm and munge when
missing) and skips only where SLURM cannot be installed here (no root, no apt, a foreign slurm.conf). The
cluster records each finished job in a JobCompType=jobcomp/filetxt log (no slurmdbd, so no `sacct`): those
records are what the test checks, next to `squeue --states=all`.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import make_workdir
from workflow_utils import REPO, plan_in, planned_jobs, run_snakemake

from cpt_scaling.train.train_log import read_log

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

CLUSTER = REPO / "tests" / "slurm" / "cluster.sh"
TEST_PROFILE = REPO / "tests" / "slurm" / "profile"
TARGET = "results/figures/chinchilla_fit.pdf"
SWEEP = "sweep.yaml"  # written by sweep_config
#: cluster.sh exit statuses meaning "SLURM cannot be installed here" (not a failure of the project).
CANNOT_INSTALL = {3: "slurm-wlm/munge are missing and cannot be installed (not root, or apt-get failed)",
                  4: "/etc/slurm/slurm.conf belongs to another cluster; not overwriting it"}


def _cluster(command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(CLUSTER), command], capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[Path]:
    """A running one-node SLURM; yields its job-completion log. Stops it afterwards if it started it."""
    if not Path("/usr/bin/apt-get").exists() and not Path("/usr/sbin/slurmctld").exists():
        pytest.skip("SLURM is not installed and this is not a Debian/Ubuntu host (no apt-get) to install it")
    was_running = _cluster("status").returncode == 0
    started = _cluster("start")
    if started.returncode in CANNOT_INSTALL:
        pytest.skip(f"{CANNOT_INSTALL[started.returncode]}: {started.stderr.strip()[-500:]}")
    assert started.returncode == 0, started.stdout + started.stderr
    config = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, check=True).stdout
    jobcomp = Path(re.search(r"^JobCompLoc\s*=\s*(\S+)", config, re.M).group(1))
    yield jobcomp
    if not was_running:
        _cluster("stop")


def job_records(jobcomp: Path, offset: int) -> list[dict[str, str]]:
    """The cluster's completion records written after byte ``offset`` of its jobcomp log."""
    if not jobcomp.exists():
        return []
    with open(jobcomp) as f:
        f.seek(offset)
        lines = f.read().splitlines()
    return [dict(re.findall(r"(\w+)=(\S*)", line)) for line in lines if line.strip()]


def minutes(limit: str) -> int:
    """SLURM's time limit ``[D-][H:]M:S`` in minutes."""
    days, _, clock = limit.rpartition("-")
    parts = [int(x) for x in clock.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0)
    return int(days or 0) * 1440 + parts[0] * 60 + parts[1] + (parts[2] > 0)


def run_on_slurm(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_snakemake(workdir, SWEEP, TARGET, *args, "--workflow-profile", str(TEST_PROFILE),
                         profile="slurm", timeout=1800)


def sweep_config(workdir: Path) -> None:
    """The micro config with its pretraining as WSD branches (2 sizes x 3 budgets: 6 points for the law's 5
    parameters): the Chinchilla study fits annealed points only (micro.yaml's single cosine run has one per size)."""
    cfg = yaml.safe_load((workdir / "micro.yaml").read_text())
    cfg["pretrain"] = {**cfg["pretrain"], "budgets": "branches"}
    (workdir / SWEEP).write_text(yaml.safe_dump(cfg))


def test_micro_sweep_on_slurm_then_a_rerun_submits_nothing(slurm_cluster: Path, tmp_path: Path) -> None:
    workdir = make_workdir(tmp_path / "w")
    sweep_config(workdir)
    expected = planned_jobs(workdir, SWEEP, TARGET)
    assert expected, "the target must need jobs"
    offset = slurm_cluster.stat().st_size if slurm_cluster.exists() else 0

    result = run_on_slurm(workdir)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-6000:]
    assert (workdir / TARGET).stat().st_size > 0
    assert (workdir / "results" / "laws" / "chinchilla.json").stat().st_size > 0

    submitted = re.findall(r"submitted with SLURM jobid (\d+)", log)
    assert len(submitted) == len(expected), log[-3000:]
    records = [r for r in job_records(slurm_cluster, offset) if r.get("JobId") in submitted]
    assert sorted(r["JobId"] for r in records) == sorted(submitted), "every submitted job is recorded once"
    assert {r["JobState"] for r in records} == {"COMPLETED"}, records
    squeue = ["squeue", "--states=all", "--noheader", "--format=%i|%T|%k|%l|%m|%b",
              "--jobs", ",".join(submitted)]
    jobs = [line.split("|") for line in subprocess.run(squeue, capture_output=True, text=True,
                                                        check=True).stdout.split()]
    assert {j[1] for j in jobs} == {"COMPLETED"}, jobs
    # Training jobs got the cost model's runtime limit and memory, and no GPU request (CPU-only config).
    plan = plan_in(workdir, SWEEP)
    train = [j for j in jobs if j[2].startswith("rule_train_wildcards_")]
    assert len(train) == sum(rule == "train" for rule, _ in expected) > len(plan.pretrain), jobs  # trunk + branches
    for _, _, comment, limit, mem, gres in train:
        res = plan.train_resources(comment.rsplit("_", 1)[1])
        assert minutes(limit) == res["runtime"] and mem == f"{res['mem_mb']}M", (comment, limit, mem)
        assert "gpu" not in gres, gres

    size_after = slurm_cluster.stat().st_size
    rerun = run_on_slurm(workdir)
    assert rerun.returncode == 0, (rerun.stdout + rerun.stderr)[-3000:]
    assert "submitted with SLURM jobid" not in rerun.stdout + rerun.stderr
    assert slurm_cluster.stat().st_size == size_after, "a rerun submits nothing"


def capped_config(workdir: Path) -> tuple[str, str]:
    """The micro config with a 1-minute partition limit and a pretraining run too long for one job on any
    machine this runs on; returns the config file and that run's key.

    Each submission trains for well under a minute (start-up, then the trainer stops 15 s before the limit).
    The run is compute-bound rather than overhead-bound so that its length does not depend on how fast Python
    is: a 2-layer, width-128 model (~31 ms a step on one quiet core here, 700-1,000 steps a submission; the micro
    size xs took ~5 ms a step, so a fast CI machine fit 6,000 of its steps in one job). ``cost.cpu_flops`` is set
    below the measured rate so that the cost model's submission count is an upper bound."""
    cfg = yaml.safe_load((workdir / "micro.yaml").read_text())
    cfg["models"]["sizes"]["xs"] = {"n_layers": 2, "d_model": 128, "n_heads": 4, "d_ff": 512}
    cfg["pretrain"] = {"tokens": 512 * 5000, "checkpoints": 3, "budgets": "single_run"}
    cfg["cost"] = {"cpu_flops": 1.5e10}
    cfg["cluster"] = {"max_runtime_minutes": 1}
    cfg["training"]["checkpoint_minutes"] = 0.1
    (workdir / "capped.yaml").write_text(yaml.safe_dump(cfg))
    return "capped.yaml", plan_in(workdir, "capped.yaml").pretrain["xs"].key


def test_a_run_longer_than_the_partition_limit_finishes_over_several_submissions(
    slurm_cluster: Path, tmp_path: Path
) -> None:
    workdir = make_workdir(tmp_path / "w")
    configfile, key = capped_config(workdir)
    plan = plan_in(workdir, configfile)
    res = plan.train_resources(key)
    assert res["runtime"] == 1 and res["submissions"] > 1, res
    run_dir = workdir / plan.artifact(key).dir
    target = str((run_dir / "checkpoints.json").relative_to(workdir))
    dry = run_snakemake(workdir, configfile, target, "--dry-run", "--workflow-profile", str(TEST_PROFILE),
                        profile="slurm")
    assert f"submissions={res['submissions']}" in dry.stdout + dry.stderr, (dry.stdout + dry.stderr)[-3000:]
    offset = slurm_cluster.stat().st_size if slurm_cluster.exists() else 0

    result = run_snakemake(workdir, configfile, target, "--workflow-profile", str(TEST_PROFILE), profile="slurm",
                           timeout=2400)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-6000:]
    submitted = re.findall(r"submitted with SLURM jobid (\d+)", log)
    squeue = ["squeue", "--states=all", "--noheader", "--format=%i|%T|%k|%l", "--jobs", ",".join(submitted)]
    jobs = [line.split("|") for line in subprocess.run(squeue, capture_output=True, text=True,
                                                        check=True).stdout.split()]
    train = sorted((j for j in jobs if j[2].endswith(key)), key=lambda j: int(j[0]))
    print("training submissions (squeue):", train)
    records = {r["JobId"]: r for r in job_records(slurm_cluster, offset)}
    print("jobcomp:", [(j[0], records.get(j[0], {}).get("JobState"), records.get(j[0], {}).get("ExitCode"))
                       for j in train])
    assert 2 <= len(train) <= res["submissions"], train
    assert all(minutes(limit) <= 1 for *_, limit in train), train
    assert [j[1] for j in train][-1] == "COMPLETED" and "Trying to restart job" in log
    starts = [r for r in read_log(run_dir / "train_log.jsonl") if r["event"] == "start"]
    stops = [r for r in read_log(run_dir / "train_log.jsonl") if r["event"] == "stop"]
    assert len(starts) == len(train), (starts, train)
    print("stops:", stops)
    assert not (run_dir / "resume").exists()

    # The same run uninterrupted, in one process: byte-identical checkpoints.
    reference = tmp_path / "reference"
    code = ("import json, sys; from cpt_scaling.config.load import load_config; "
            "from cpt_scaling.plan.sweep import build_plan; from cpt_scaling.train.trainer import train; "
            f"plan = build_plan(load_config({configfile!r})); "
            f"train({{**plan.artifact({key!r}).job.to_json(), 'threads': 1}}, sys.argv[1])")
    subprocess.run([sys.executable, "-c", code, str(reference)], cwd=workdir, check=True, capture_output=True)
    ours = {p.relative_to(run_dir): p.read_bytes() for p in (run_dir / "checkpoints").rglob("*") if p.is_file()}
    theirs = {p.relative_to(reference): p.read_bytes() for p in (reference / "checkpoints").rglob("*")
              if p.is_file()}
    assert ours.keys() == theirs.keys() and all(ours[k] == theirs[k] for k in theirs)
    assert (run_dir / "checkpoints.json").read_bytes() == (reference / "checkpoints.json").read_bytes()
