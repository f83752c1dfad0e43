"""The decision target results/decisions/<decision>_<domain>.json on the finished micro sweep (its starting design
is the micro sweep's legal grid, so only the rounds' runs train): it runs two rounds of real toy training chosen by
the proposer, stops by its own rule (max_rounds), a rerun plans nothing; stopped after round 1 (the kill between
rounds) and rerun, it finishes; its rounds refitted from scratch on the same runs give the same decision JSON."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import make_workdir
from workflow_utils import plan_in, planned_jobs, run_snakemake

from cpt_scaling.studies.decide import STOPS

pytestmark = pytest.mark.slow

DECISION = "results/decisions/usage2_legal.json"
FIGURE = "results/figures/decision_usage2_legal.pdf"
ROUNDS = "results/decisions/usage2_legal"


def _write_config(workdir: Path) -> str:
    cfg = yaml.safe_load((workdir / "micro.yaml").read_text())
    cfg["fit"] = {**cfg["fit"], "bootstrap": 50, "bootstrap_starts": 1}
    # A width no toy fit reaches, so the rounds stop at max_rounds; the starting design is the micro sweep's legal
    # grid (its defaults: both sizes x ratios 0, 0.5, 1); two new ratios are the candidates.
    # usage 2 with half a CPT budget of domain text (with all of it, every ratio is 1 and the width 0)
    cfg["decide"] = {"decision": "usage2", "domain": "legal", "tokens": 2048, "target_width": 1e-6, "max_rounds": 2,
                     "candidate_ratios": [0.0, 0.25, 0.5, 0.75, 1.0], "simulations": 64, "budget_gpu_hours": 1.0}
    (workdir / "decide.yaml").write_text(yaml.safe_dump(cfg))
    # a round affords one new run of the smaller size (its base model is done: it costs its own training only)
    plan = plan_in(workdir, "decide.yaml")
    xs = plan.decide_price(["xs-r0-D4096", "xs-r0.25-D4096"]) - plan.decide_price(["xs-r0-D4096"])
    cfg["decide"]["round_gpu_hours"] = 1.5 * xs
    (workdir / "decide.yaml").write_text(yaml.safe_dump(cfg))
    return "decide.yaml"


def _new_runs(log: str) -> int:
    """Training jobs a snakemake log shows starting."""
    return sum(line.strip() in ("rule train:", "localrule train:") for line in log.splitlines())


def test_decision_rounds_stop_resume_and_reuse(micro_copy: Path) -> None:
    config = _write_config(micro_copy)
    # Round 0 fits the starting design (the micro sweep's legal runs, all done) and round 1 the runs round 0 chose:
    # stopping here is what a kill between rounds leaves behind.
    first = run_snakemake(micro_copy, config, f"{ROUNDS}/round1.json")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-5000:]
    round1 = json.loads((micro_copy / ROUNDS / "round1.json").read_text())
    assert round1["status"] is None, round1  # it chose runs for round 2
    assert not (micro_copy / DECISION).exists() and not (micro_copy / ROUNDS / "round2.json").exists()

    rest = run_snakemake(micro_copy, config, DECISION, FIGURE)
    assert rest.returncode == 0, rest.stdout[-3000:] + rest.stderr[-5000:]
    doc = json.loads((micro_copy / DECISION).read_text())
    assert doc["status"] == "max_rounds" and doc["stopped"] == STOPS["max_rounds"]
    assert doc["rounds"] == 2 and [h["round"] for h in doc["history"]] == [0, 1, 2]
    runs = [h["runs"] for h in doc["history"]]
    hours = [h["gpu_hours"] for h in doc["history"]]
    assert runs[0] == 6 and runs[0] < runs[1] < runs[2] == doc["runs_used"], runs  # each round trained runs
    assert hours[0] < hours[1] < hours[2] == doc["gpu_hours"], hours
    for k in (0, 1):  # each round within its GPU-hours, above its share only for the one run ranked first
        rec = json.loads((micro_copy / ROUNDS / f"round{k}.json").read_text())
        assert rec["next_gpu_hours"] <= rec["round_gpu_hours"] * (1 + 1e-9), rec
        assert rec["round_gpu_hours"] <= doc["round_gpu_hours"] * (1 + 1e-9) or (
            len(rec["next"]) == 1 and rec["next_gpu_hours"] == pytest.approx(rec["round_gpu_hours"])), rec
    assert [h["chosen_by"] for h in doc["history"]] == ["proposer", "proposer", None]  # usage 2: no bracket
    assert doc["lo"] <= doc["value"] <= doc["hi"] and doc["width"] == pytest.approx(doc["hi"] - doc["lo"])
    assert (micro_copy / FIGURE).stat().st_size > 0
    assert _new_runs(rest.stdout + rest.stderr) >= 1  # round 2's runs trained in this invocation

    assert planned_jobs(micro_copy, config, DECISION, FIGURE) == []  # a rerun plans nothing

    # The decision is a function of the runs: the rounds refitted from scratch choose the same runs (no training)
    # and write the same JSON.
    before = (micro_copy / DECISION).read_bytes()
    shutil.rmtree(micro_copy / ROUNDS)
    (micro_copy / DECISION).unlink()
    again = run_snakemake(micro_copy, config, DECISION)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-5000:]
    assert _new_runs(again.stdout + again.stderr) == 0
    assert (micro_copy / DECISION).read_bytes() == before


def test_decision_target_names_the_keys(tmp_path: Path) -> None:
    """A decision the config does not ask for fails in one line naming decide.decision and decide.domain."""
    workdir = make_workdir(tmp_path / "w")
    result = run_snakemake(workdir, "micro.yaml", DECISION, "--dry-run")
    assert result.returncode != 0
    assert "decide.decision" in result.stderr and "no decide: section" in result.stderr, result.stderr[-2000:]
