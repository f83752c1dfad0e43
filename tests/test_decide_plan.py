"""The decide: section and the decision target's plan: bad keys fail naming the key; candidate runs are the
sweep's own keyed artifacts; a larger budget of a WSD trunk is priced at its increment; the sweep (default target,
job counts, GPU-hours) is unchanged by the section."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from cpt_scaling.config.load import normalise_config
from cpt_scaling.core.errors import InputError
from cpt_scaling.plan.sweep import Plan, build_plan

REPO = Path(__file__).resolve().parents[1]


def _micro(decide: dict[str, Any] | None = None) -> dict[str, Any]:
    cfg = yaml.safe_load((REPO / "tests/configs/micro.yaml").read_text())
    cfg["fit"]["bootstrap"] = 50
    cfg["cpt"] = {"tokens": [2048, 4096], "checkpoints": 3}  # WSD branches of one trunk per (size, ratio)
    if decide is not None:
        cfg["decide"] = {"domain": "legal", "target_width": 0.05, **decide}
    return cfg


def _plan(tmp_path: Path, cfg: dict[str, Any]) -> Plan:
    if not (tmp_path / "data" / "demo").exists():
        shutil.copytree(REPO / "data" / "demo", tmp_path / "data" / "demo")
    old = Path.cwd()
    os.chdir(tmp_path)
    try:
        return build_plan(normalise_config(cfg, "micro.yaml"), cache_file=tmp_path / "digests.json")
    finally:
        os.chdir(old)


@pytest.mark.parametrize(("decide", "fit", "message"), [
    ({"domain": "law"}, {}, "decide.domain: 'law' is not one of the domains"),
    ({"size": "xl"}, {}, "decide.size: 'xl' is not one of models.sizes"),
    ({"start": {"sizes": ["xs", "m"]}}, {}, "decide.start.sizes: 'm'"),
    ({"start": {"ratios": [0.3]}}, {}, "decide.start.ratios: [0.3] are not candidate ratios"),
    ({"candidate_tokens": [2048, 3072, 4096]}, {}, "decide.candidate_tokens: 3072 is not in cpt.tokens"),
    ({"candidate_tokens": [4096, 8192]}, {}, "decide.candidate_tokens: must include every cpt.tokens"),
    ({"candidate_tokens": [2048, 4096, 4100]}, {}, "decide.candidate_tokens: 4100 is not a multiple"),
    ({"round_gpu_hours": 2.0, "budget_gpu_hours": 1.0}, {}, "decide.round_gpu_hours: 2.0 is more than"),
    ({}, {"bootstrap": 0}, "fit.bootstrap: the decision target"),
    ({"target_width": -1}, {}, "decide.target_width"),
])
def test_bad_decide_keys_fail_naming_the_key(decide: dict[str, Any], fit: dict[str, Any], message: str) -> None:
    cfg = _micro(decide)
    cfg["fit"].update(fit)
    with pytest.raises(InputError, match=r"micro\.yaml") as err:
        normalise_config(cfg, "micro.yaml")
    assert message in str(err.value)


def test_candidates_are_sweep_runs_and_priced_at_their_increment(tmp_path: Path) -> None:
    sweep = _plan(tmp_path, _micro())
    plan = _plan(tmp_path, _micro({"candidate_ratios": [0.0, 0.25, 0.5, 1.0], "candidate_tokens": [2048, 4096, 8192]}))
    # the sweep is untouched: the same artifacts, job counts and GPU-hours; the candidates come on top
    assert set(sweep.by_key) <= set(plan.by_key)
    assert plan.job_counts() == sweep.job_counts() and plan.train_gpu_hours() == sweep.train_gpu_hours()
    assert not set(plan.decide_evals) - set(sweep.by_key) & set(plan.evals)  # never in the default target
    # a candidate that is a sweep run is that run (same key), with its evaluations
    for (size, domain, ratio, tokens), run in sweep.cpt.items():
        if domain == "legal":
            cand = plan.decide_runs[f"{size}-r{ratio:g}-D{tokens}"]
            assert cand.run.key == run.key
    # defaults: the two smallest sizes x three of the domain's ratios x cpt.tokens; the decision at the largest
    dec = plan.cfg["decide"]
    assert dec["start"] == {"sizes": ["s", "xs"], "ratios": [0.0, 0.5, 1.0]} and dec["size"] == "s"
    assert len(plan.decide_start()) == 2 * 3 * 2
    # the larger budget extends the trunk: beyond the runs of the smaller budgets it needs its own trunk segment
    # and decay branch only
    done = ["xs-r0.5-D2048", "xs-r0.5-D4096"]
    longer = "xs-r0.5-D8192"
    new = set(plan.decide_runs[longer].needs) - {k for n in done for k in plan.decide_runs[n].needs}
    assert len(new) == 2 and plan.decide_runs[longer].run.key in new
    increment = plan.decide_price([*done, longer]) - plan.decide_price(done)
    assert 0 < increment < plan.decide_price([longer])
    b = plan.decide_budgets()
    grid = [f"{s}-r{r:g}-D{t}" for s in ("s", "xs") for r in (0.0, 0.5, 1.0) for t in (2048, 4096)]
    assert b["grid_gpu_hours"] == pytest.approx(plan.decide_price(grid)) == b["budget_gpu_hours"]
    assert b["round_gpu_hours"] == pytest.approx(0.05 * b["grid_gpu_hours"])
    assert "rounds: up to" in plan.decide_summary()


def test_dry_run_prices_the_first_round_and_bounds_the_rest(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """`cpt-scaling cost` and `explain` of the decision target: the starting design's jobs exactly (its runs and
    their base models, nothing else), the rounds as one line with their upper bound."""
    from cpt_scaling.cli.main import main

    shutil.copytree(REPO / "data" / "demo", tmp_path / "data" / "demo")
    cfg = _micro({"max_rounds": 3})
    (tmp_path / "decide.yaml").write_text(yaml.safe_dump(cfg))
    target = "results/decisions/usage2_legal.json"
    out = tmp_path / "cost.json"
    assert main(["cost", target, "--directory", str(tmp_path), "--configfile", "decide.yaml", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    plan = _plan(tmp_path, cfg)
    start = {k for n in plan.decide_start() for k in plan.decide_runs[n].needs}
    assert {j["output"].rsplit("/", 2)[-2].rsplit("-", 1)[1] for j in report["jobs"] if j["kind"] == "train"} == start
    assert "rounds: up to" in report["rounds"] and "decision target:     decision usage2_legal" in printed
    assert main(["explain", target, "--directory", str(tmp_path), "--configfile", "decide.yaml"]) == 0
    assert "rounds: up to" in capsys.readouterr().out
