"""Running the real workflow from tests: snakemake subprocesses and the job list of a dry run."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from cpt_scaling.config.load import load_config
from cpt_scaling.plan.sweep import Plan, build_plan

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


def plan_in(workdir: Path, configfile: str) -> Plan:
    """The sweep plan of ``configfile`` as the workflow builds it in ``workdir`` (relative paths resolve there)."""
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        return build_plan(load_config(configfile))
    finally:
        os.chdir(cwd)


def run_snakemake(workdir: Path, configfile: str, *args: str, profile: str = "local",
                  timeout: int = 1200) -> subprocess.CompletedProcess[str]:
    """Run snakemake on the project's Snakefile in ``workdir`` (targets go in ``args``, before options)."""
    cmd = [SNAKEMAKE, *args, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--profile", str(REPO / "profiles" / profile), "--configfile", configfile]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=timeout, env=env)


def planned_jobs(workdir: Path, configfile: str, *targets: str) -> list[tuple[str, str]]:
    """(rule, first output) of every job a dry run would execute."""
    result = run_snakemake(workdir, configfile, *targets, "--dry-run")
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    jobs: list[tuple[str, str]] = []
    rule = None
    for line in (result.stdout + "\n" + result.stderr).splitlines():
        m = re.match(r"^(?:local)?rule (\w+):$", line.strip())
        if m:
            rule = m.group(1)
            continue
        if rule and line.strip().startswith("output:"):
            jobs.append((rule, line.split(":", 1)[1].split(",")[0].strip()))
            rule = None
        elif rule and line.strip().startswith("jobid:"):
            jobs.append((rule, ""))
            rule = None
    return jobs
