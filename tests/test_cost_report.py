"""The dry-run cost report: totals against a hand computation, and pricing only what is left to run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import make_workdir
from workflow_utils import REPO, planned_jobs, run_snakemake

from cpt_scaling.cli import main
from cpt_scaling.cost_report import schedule_wall_hours

EXAMPLE = REPO / "config" / "examples" / "paper_qwen.yaml"


def hand_flops_per_token(L: int, d: int, heads: int, kv_heads: int, ff: int, V: int, T: int) -> int:
    """6·(N + d·V) + 12·L·d·T with N = L·(2d² + 2·d·d_kv + 3·d·ff + 2d) + d, written out by hand."""
    d_kv = kv_heads * (d // heads)
    attention = d * d + d * d_kv + d * d_kv + d * d  # q, k, v, o projections
    mlp = d * ff * 3  # gate, up, down
    norms = 2 * d
    N = L * (attention + mlp + norms) + d  # plus the final norm
    return 6 * N + 6 * d * V + 12 * L * d * T


def test_example_totals_match_a_hand_computation(tmp_path: Path) -> None:
    workdir = make_workdir(tmp_path / "w")
    shutil.copy(EXAMPLE, workdir / "paper.yaml")
    out = tmp_path / "cost.json"
    assert main(["cost", "--directory", str(workdir), "--configfile", "paper.yaml", "--json", str(out), "-q",
                 "--profile", str(REPO / "profiles" / "slurm")]) == 0
    report = json.loads(out.read_text())

    # Qwen2.5 model cards: (layers, width, heads, kv heads, MLP width, embedding rows).
    sizes = [(28, 1536, 12, 2, 8960, 151936), (36, 2048, 16, 2, 11008, 151936),
             (28, 3584, 28, 4, 18944, 152064), (48, 5120, 40, 8, 13824, 152064)]
    budgets = [steps * 512 * 4096 for steps in (500, 1000, 2500, 5000)]  # optimizer steps x tokens/step
    runs_per_budget = 3 * 8 + 1  # 3 domains x 8 non-zero ratios, plus one shared ratio-0 run
    T, peak, mfu = 4096, 9.89e14, 0.4
    flops = sum(runs_per_budget * D * hand_flops_per_token(*s, T) for s in sizes for D in budgets)
    tokens = len(sizes) * runs_per_budget * sum(budgets)

    totals = report["totals"]
    assert totals["train_jobs"] == len(sizes) * len(budgets) * runs_per_budget == 400
    assert totals["tokens"] == tokens
    assert totals["flops"] == pytest.approx(flops, rel=1e-12)
    assert totals["gpu_hours"] == pytest.approx(flops / (peak * mfu) / 3600, rel=1e-12)
    assert totals["parallelism"] == 100  # profiles/slurm: jobs
    # One 14B run at the largest budget, by hand: 8 GPUs, so an eighth of its GPU-hours in wall-clock.
    f14 = budgets[-1] * hand_flops_per_token(*sizes[-1], T)
    top = max(report["jobs"], key=lambda j: j["flops"])
    assert top["flops"] == pytest.approx(f14, rel=1e-12)
    assert top["hours"] == pytest.approx(f14 / (8 * peak * mfu) / 3600, rel=1e-12)
    assert top["gpus"] == 8
    # Non-embedding parameters of Qwen2.5-7B: 6.53B on its model card (biases of q/k/v left out here).
    L, d, h, kv, ff, _ = sizes[2]
    assert 6.50e9 < L * (2 * d * d + 2 * d * kv * d // h + 3 * d * ff + 2 * d) + d < 6.54e9


def test_schedule_respects_dependencies_and_slots() -> None:
    hours = {0: 1.0, 1: 2.0, 2: 2.0, 3: 1.0}
    deps = {1: [0], 2: [0], 3: [1, 2]}
    assert schedule_wall_hours(hours, deps, slots=2) == pytest.approx(4.0)
    assert schedule_wall_hours(hours, deps, slots=1) == pytest.approx(6.0)
    assert schedule_wall_hours({i: 1.0 for i in range(10)}, {}, slots=4) == pytest.approx(3.0)
    assert schedule_wall_hours({}, {}, slots=3) == 0.0


@pytest.mark.slow
def test_after_a_partial_run_only_what_is_left_is_priced(tmp_path: Path) -> None:
    """Run the micro sweep's pretraining, then the report prices exactly the jobs a dry run still lists."""
    import os

    from cpt_scaling.config import load_config
    from cpt_scaling.plan import build_plan

    workdir = make_workdir(tmp_path / "w")
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        plan = build_plan(load_config("micro.yaml"))
    finally:
        os.chdir(cwd)
    pretrain = sorted(a.output for a in plan.pretrain.values())
    out = tmp_path / "before.json"
    assert main(["cost", "--directory", str(workdir), "--configfile", "micro.yaml", "--json", str(out),
                 "-q"]) == 0
    before = json.loads(out.read_text())
    assert set(pretrain) <= {j["output"] for j in before["jobs"]}

    result = run_snakemake(workdir, "micro.yaml", *pretrain)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    out = tmp_path / "after.json"
    assert main(["cost", "--directory", str(workdir), "--configfile", "micro.yaml", "--json", str(out), "-q",
                 "--profile", str(REPO / "profiles" / "local")]) == 0
    after = json.loads(out.read_text())
    priced = {j["output"] for j in after["jobs"]}
    assert not priced & set(pretrain)
    planned = planned_jobs(workdir, "micro.yaml")  # output-less jobs (rule all) have output ""
    assert len(after["jobs"]) == len(planned)
    assert {(j["rule"], j["output"]) for j in after["jobs"] if j["output"] != j["rule"]} == {
        (rule, out) for rule, out in planned if out}
    done = [j for j in before["jobs"] if j["output"] not in priced]
    left = before["totals"]["flops"] - sum(j["flops"] for j in done)
    assert after["totals"]["flops"] == pytest.approx(left)
    assert after["totals"]["parallelism"] == 2  # profiles/local: cores
