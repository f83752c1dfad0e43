"""End to end through a real one-node SLURM: profiles/slurm runs part of the micro sweep as SLURM jobs.

The session fixture starts the cluster with tests/slurm/cluster.sh (installing slurm-wlm and munge when
missing) and skips only where SLURM cannot be installed here (no root, no apt, a foreign slurm.conf). The
cluster records each finished job in a JobCompType=jobcomp/filetxt log (no slurmdbd, so no `sacct`): those
records are what the test checks, next to `squeue --states=all`.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import make_workdir
from workflow_utils import REPO, planned_jobs, run_snakemake

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

CLUSTER = REPO / "tests" / "slurm" / "cluster.sh"
TEST_PROFILE = REPO / "tests" / "slurm" / "profile"
TARGET = "results/figures/chinchilla.pdf"
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


def run_on_slurm(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_snakemake(workdir, "micro.yaml", TARGET, *args, "--workflow-profile", str(TEST_PROFILE),
                         profile="slurm", timeout=1800)


def test_micro_sweep_on_slurm_then_a_rerun_submits_nothing(slurm_cluster: Path, tmp_path: Path) -> None:
    workdir = make_workdir(tmp_path / "w")
    expected = planned_jobs(workdir, "micro.yaml", TARGET)
    assert expected, "the target must need jobs"
    offset = slurm_cluster.stat().st_size if slurm_cluster.exists() else 0

    result = run_on_slurm(workdir)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-6000:]
    assert (workdir / TARGET).stat().st_size > 0
    assert (workdir / "results" / "laws" / "chinchilla.json").is_file()

    submitted = re.findall(r"submitted with SLURM jobid (\d+)", log)
    assert len(submitted) == len(expected), log[-3000:]
    records = [r for r in job_records(slurm_cluster, offset) if r.get("JobId") in submitted]
    assert sorted(r["JobId"] for r in records) == sorted(submitted), "every submitted job is recorded once"
    assert {r["JobState"] for r in records} == {"COMPLETED"}, records
    squeue = ["squeue", "--states=all", "--noheader", "--format=%i|%T", "--jobs", ",".join(submitted)]
    states = subprocess.run(squeue, capture_output=True, text=True, check=True).stdout.split()
    assert {s.split("|")[1] for s in states} == {"COMPLETED"}, states
    # Training jobs asked SLURM for the cost model's resources (CPU-only config: no GPU request).
    train_logs = list((workdir / ".snakemake" / "slurm_logs" / "rule_train").rglob("*.log"))
    assert train_logs, "training ran as SLURM jobs"

    size_after = slurm_cluster.stat().st_size
    rerun = run_on_slurm(workdir)
    assert rerun.returncode == 0, (rerun.stdout + rerun.stderr)[-3000:]
    assert "submitted with SLURM jobid" not in rerun.stdout + rerun.stderr
    assert slurm_cluster.stat().st_size == size_after, "a rerun submits nothing"
