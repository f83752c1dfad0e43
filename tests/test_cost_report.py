"""The dry-run cost report: totals against a hand computation, and pricing only what is left to run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import make_workdir
from workflow_utils import REPO, plan_in, planned_jobs, run_snakemake

from cpt_scaling.cli.main import main
from cpt_scaling.dryrun.cost_report import schedule_wall_hours

EXAMPLE = REPO / "config" / "examples" / "paper_qwen.yaml"


def hand_n(L: int, d: int, heads: int, kv_heads: int, ff: int) -> int:
    """Qwen2 non-embedding parameters, written out by hand: q, k, v, o projections with q/k/v biases, gated MLP,
    two RMSNorms per block and the final norm."""
    d_kv = kv_heads * (d // heads)
    attention = d * d + d * d_kv + d * d_kv + d * d + (d + 2 * d_kv)  # q, k, v, o projections, q/k/v biases
    mlp = d * ff * 3  # gate, up, down
    norms = 2 * d
    return L * (attention + mlp + norms) + d  # plus the final norm


def hand_flops_per_token(L: int, d: int, heads: int, kv_heads: int, ff: int, V: int, T: int) -> int:
    """6·(N + d·V) + 12·L·d·T with N from :func:`hand_n`."""
    return 6 * hand_n(L, d, heads, kv_heads, ff) + 6 * d * V + 12 * L * d * T


def run_cost(workdir: Path, config: str, out: Path) -> int:
    return main(["cost", "--directory", str(workdir), "--configfile", config, "--json", str(out), "-q",
                 "--profile", str(REPO / "profiles" / "slurm")])


def test_example_totals_match_a_hand_computation(tmp_path: Path) -> None:
    """The paper example priced with one cosine run per budget (cpt.budgets: separate_runs)."""
    workdir = make_workdir(tmp_path / "w")
    (workdir / "paper.yaml").write_text(EXAMPLE.read_text().replace("\ncpt:\n", "\ncpt:\n  budgets: separate_runs\n"))
    out = tmp_path / "cost.json"
    assert run_cost(workdir, "paper.yaml", out) == 0
    report = json.loads(out.read_text())
    assert report["budgets"] is None

    # Qwen2.5 model cards: (layers, width, heads, kv heads, MLP width, embedding rows).
    sizes = [(28, 1536, 12, 2, 8960, 151936), (36, 2048, 16, 2, 11008, 151936),
             (28, 3584, 28, 4, 18944, 152064), (48, 5120, 40, 8, 13824, 152064)]
    budgets = [steps * 512 * 4096 for steps in (500, 1000, 2500, 5000)]  # optimizer steps x tokens/step
    # 3 domains x 8 non-zero ratios, one shared ratio-0 run and the specialisation study's pool generalist
    runs_per_budget = 3 * 8 + 1 + 1
    T, peak, mfu = 4096, 9.89e14, 0.4
    flops = sum(runs_per_budget * D * hand_flops_per_token(*s, T) for s in sizes for D in budgets)
    tokens = len(sizes) * runs_per_budget * sum(budgets)

    totals = report["totals"]
    train = [j for j in report["jobs"] if j["kind"] == "train"]
    evals = [j for j in report["jobs"] if j["kind"] == "eval"]
    assert totals["train_jobs"] == len(train) == len(sizes) * len(budgets) * runs_per_budget == 416
    assert sum(j["tokens"] for j in train) == tokens
    assert sum(j["flops"] for j in train) == pytest.approx(flops, rel=1e-12)
    assert sum(j["gpu_hours"] for j in train) == pytest.approx(flops / (peak * mfu) / 3600, rel=1e-12)
    assert totals["flops"] == pytest.approx(flops + sum(j["flops"] for j in evals), rel=1e-12)
    assert totals["gpu_hours"] == pytest.approx(sum(j["gpu_hours"] for j in report["jobs"]), rel=1e-12)
    assert totals["parallelism"] == 100  # profiles/slurm: jobs
    # One 14B run at the largest budget, by hand: 8 GPUs, so an eighth of its GPU-hours in wall-clock.
    f14 = budgets[-1] * hand_flops_per_token(*sizes[-1], T)
    top = max(train, key=lambda j: j["flops"])
    assert top["flops"] == pytest.approx(f14, rel=1e-12)
    assert top["hours"] == pytest.approx(f14 / (8 * peak * mfu) / 3600, rel=1e-12)
    assert top["gpus"] == 8
    # Its evaluation on its domain and the general suite (test and validation each): 5 checkpoints x 4 suite
    # files x at most 2048 sequences of 4096 tokens, forward FLOPs 2·(N + d·V) + 4·L·d·T per token, one GPU.
    run = top["output"].split("/")[-2].rsplit("-", 1)[0]  # <name>-<key> -> name
    ev = next(j for j in evals if f"/{run}--" in j["output"])
    L, d, h, kv, ff, V = sizes[-1]
    assert ev["tokens"] == 5 * 4 * 2048 * T and ev["gpus"] == 1
    assert ev["flops"] == pytest.approx(ev["tokens"] * (2 * (hand_n(L, d, h, kv, ff) + d * V) + 4 * L * d * T),
                                        rel=1e-12)
    # Non-embedding parameters of Qwen2.5-7B: 6.53B on its model card.
    assert 6.52e9 < hand_n(*sizes[2][:5]) < 6.54e9


def test_wsd_branches_price_the_example_below_065_of_separate_runs(tmp_path: Path) -> None:
    """Issue 14, must-show 1: the same sweep with budgets as WSD branches of one trunk per (size, domain, ratio).
    By hand: a trunk trains (1 - c)·max(D) and the branches c·ΣD, against ΣD for separate runs, at the same
    FLOPs per token; so the training price falls by ((1 - c)·max(D) + c·ΣD) / ΣD."""
    workdir = make_workdir(tmp_path / "w")
    shutil.copy(EXAMPLE, workdir / "paper.yaml")
    out = tmp_path / "cost.json"
    assert run_cost(workdir, "paper.yaml", out) == 0
    report = json.loads(out.read_text())
    budgets, c = [500, 1000, 2500, 5000], 0.1  # optimizer steps of the four budgets, cpt.decay_fraction
    hand = ((1 - c) * max(budgets) + c * sum(budgets)) / sum(budgets)
    b = report["budgets"]
    assert b["ratio"] == pytest.approx(hand, rel=1e-9) and hand <= 0.65
    train = [j for j in report["jobs"] if j["kind"] == "train"]
    assert sum(j["gpu_hours"] for j in train) == pytest.approx(b["branches_gpu_hours"], rel=1e-9)
    # 104 trunks (the pool generalist's among them) of 4 segments (one per branch point) and 4 branches each.
    assert len(train) == 4 * (3 * 8 + 1 + 1) * (4 + 4)
    assert report["totals"]["gpu_hours"] <= 0.65 * b["separate_runs_gpu_hours"]


def test_example_fits_80_gb_per_gpu_and_without_checkpointing_fails_naming_the_largest_size(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Must-show 4: every training job of the paper example fits 80 GB per GPU by the memory model; the same
    config with activation checkpointing off fails when the workflow is parsed, naming the 14B size."""
    workdir = make_workdir(tmp_path / "w")
    text = EXAMPLE.read_text()
    (workdir / "paper.yaml").write_text(text)
    out = tmp_path / "cost.json"
    assert run_cost(workdir, "paper.yaml", out) == 0
    train = [j for j in json.loads(out.read_text())["jobs"] if j["kind"] == "train"]
    assert len(train) >= 400 and all(0 < j["gpu_memory_gb"] <= 80 for j in train)
    assert {f"qwen2_5_{s}" for s in ("1_5b", "3b", "7b", "14b")} <= {j["output"].split("-")[1] for j in train}
    largest = max(train, key=lambda j: j["gpu_memory_gb"])
    assert "qwen2_5_14b" in largest["output"]
    print(f"paper_qwen: max training gpu_memory_gb {largest['gpu_memory_gb']:.1f}")
    # Issue 25, must-show 3: nothing a partition of 48 h and nodes of 8 x 80 GB GPUs would reject: each training
    # job's host memory (the host-memory model, its --mem with the margin) within the node's, its limit <= 48 h.
    node_gb = yaml.safe_load(text)["cost"]["node_memory_gb"]
    for j in train:
        assert j["host_memory_gb"] > 0 and j["resources"]["mem_mb"] * 2**20 <= node_gb * 2**30
        assert j["resources"]["mem_mb"] >= j["host_memory_gb"] * 1.2 * 1024
        assert j["runtime_limit_min"] <= 48 * 60 and j["resources"]["runtime"] <= 48 * 60
    print(f"paper_qwen: max training host_memory_gb {max(j['host_memory_gb'] for j in train):.1f}, longest limit "
          f"{max(j['runtime_limit_min'] for j in train)} min, {sum(j['submissions'] for j in train)} submissions")

    assert "activation_checkpointing: true" in text
    (workdir / "nock.yaml").write_text(text.replace("activation_checkpointing: true",
                                                    "activation_checkpointing: false"))
    capsys.readouterr()
    assert run_cost(workdir, "nock.yaml", tmp_path / "nock.json") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "nock.yaml" in err and "models.sizes.qwen2_5_14b" in err and "GiB per GPU" in err
    assert "training.activation_checkpointing: true" in err
    assert not (tmp_path / "nock.json").exists()
    print(err)


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
    workdir = make_workdir(tmp_path / "w")
    plan = plan_in(workdir, "micro.yaml")
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


def test_a_cpu_only_config_with_several_budgets_is_priced(tmp_path: Path, capsys) -> None:
    """cost.gpus_per_job 0 (the schema's default, the README's local setup) with WSD branches: 0 GPU-hours, and the
    branches-vs-separate-runs comparison in FLOPs (it divided GPU-hours by zero)."""
    workdir = make_workdir(tmp_path / "w")
    cfg = yaml.safe_load((workdir / "micro.yaml").read_text())
    cfg["cpt"]["tokens"] = [4096, 8192]
    (workdir / "several.yaml").write_text(yaml.safe_dump(cfg))
    assert run_cost(workdir, "several.yaml", tmp_path / "cost.json") == 0
    report = json.loads((tmp_path / "cost.json").read_text())
    b = report["budgets"]
    assert report["totals"]["gpu_hours"] == 0 and b["branches_gpu_hours"] == b["separate_runs_gpu_hours"] == 0
    assert 0 < b["branches_flops"] < b["separate_runs_flops"] and b["ratio"] == pytest.approx(
        b["branches_flops"] / b["separate_runs_flops"])
