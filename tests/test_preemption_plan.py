"""Runtime caps in the cost model: submissions per run, limits never above cluster.max_runtime_minutes, the
warning signal and the stop margin, and `cpt-scaling cost` on paper_qwen under a 48-hour partition limit."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from workflow_utils import REPO

from cpt_scaling.cost import resources
from cpt_scaling.cost.resources import train_resources, train_schedule
from cpt_scaling.dryrun.cost_report import cost_report

CPU = {"gpus_per_job": 0, "nodes_per_job": 1, "peak_flops_per_gpu": 1e15, "expected_mfu": 0.4, "cpu_flops": 1e9,
       "mem_mb": 4000, "runtime_margin": 2.0, "cpus_per_gpu": 8}


def test_a_run_longer_than_the_cap_takes_several_submissions_of_at_most_the_cap() -> None:
    flops = 1e9 * 60 * 100  # 100 expected minutes, 200 with the margin, 205 as one job
    assert train_schedule(flops, CPU) == (205, 1)
    assert train_schedule(flops, CPU, {"max_runtime_minutes": 300}) == (205, 1)
    # 60-minute cap: each submission trains 60 - 5 (start-up, no state here) minutes: ceil(200 / 55) = 4.
    assert train_schedule(flops, CPU, {"max_runtime_minutes": 60}) == (60, 4)
    # Checkpoint I/O counts against every submission: 60 GB loaded and written at 1 GB/s is 2 more minutes.
    assert train_schedule(flops, CPU, {"max_runtime_minutes": 60}, state_bytes=60e9) == (60, math.ceil(200 / 53))
    # A tiny cap keeps half of each submission for training.
    assert train_schedule(flops, CPU, {"max_runtime_minutes": 1}) == (1, 400)
    res = train_resources(flops, CPU, {"max_runtime_minutes": 60}, state_bytes=60e9)
    assert res["runtime"] == 60 and res["submissions"] == 4
    assert res["stop_margin_s"] == 60 + resources.STOP_SLACK_SECONDS and res["slurm_extra"] == "--signal=TERM@180"
    multi = train_resources(flops, {**CPU, "gpus_per_job": 16, "nodes_per_job": 2}, {"max_runtime_minutes": 1})
    # A 1-minute job gets no warning signal (SLURM may send it a minute early): its own deadline stops it.
    assert multi["slurm_extra"] == "--ntasks-per-node=1" and multi["stop_margin_s"] == 15


def test_evaluation_jobs_are_capped_too() -> None:
    res = resources.eval_resources(1e9 * 60 * 100, 0.0, 0.0, CPU, {"max_runtime_minutes": 30})
    assert res["runtime"] == 30


@pytest.mark.slow
def test_paper_qwen_cost_under_a_48_hour_limit(tmp_path: Path) -> None:
    cap = tmp_path / "cap.yaml"
    cap.write_text("cluster: {max_runtime_minutes: 2880}\n")
    report = cost_report(snakefile=REPO / "Snakefile", workdir=REPO,
                         configfiles=[REPO / "config/examples/paper_qwen.yaml", cap], profile=REPO / "profiles/slurm")
    out = report.to_json()
    json.dumps(out)
    train = [j for j in out["jobs"] if j["kind"] == "train"]
    assert max(j["runtime_limit_min"] for j in out["jobs"]) <= 2880
    assert all(j["resources"]["runtime"] == j["runtime_limit_min"] for j in train)
    assert all(j["resources"]["submissions"] == j["submissions"] for j in train)
    long = [j for j in train if j["submissions"] > 1]
    assert long, "the 14B trunks need more than one 48-hour job"
    for j in long:  # each submission trains the cap less start-up and 2 x the train state at 1 GB/s
        work_min = j["hours"] * 60 * out["assumptions"]["runtime_margin"]
        assert (j["submissions"] - 1) * 2880 < work_min + 5 <= j["submissions"] * 2880, j
    assert out["totals"]["submissions"] == sum(j["submissions"] for j in out["jobs"])
    text = report.format_table(max_rows=5)
    assert "SLURM submissions:" in text and "cluster.max_runtime_minutes 2880" in text
    print(f"paper_qwen at 2880 min: {len(long)} of {len(train)} training jobs need >1 submission "
          f"(max {max(j['submissions'] for j in train)}), {out['totals']['submissions']} SLURM jobs, longest "
          f"limit {max(j['runtime_limit_min'] for j in out['jobs'])} min")
