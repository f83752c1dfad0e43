"""WSD trunks and branches in the workflow: adding a budget extends the trunk and adds one branch, nothing else
keyed reruns; kills during a trunk segment or a branch resume to the uninterrupted bytes."""

from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from reliability_utils import assert_same_products, kill_group, resume, start_snakemake, wait_until
from workflow_utils import plan_in, planned_jobs, run_snakemake

from cpt_scaling.evaluate.tables import read_eval_tables
from cpt_scaling.studies.chinchilla import chinchilla_points
from cpt_scaling.studies.common import annealed_points
from cpt_scaling.studies.dcpt import dcpt_points
from cpt_scaling.studies.split import split_points
from cpt_scaling.train.schedule import wsd_decay_start
from cpt_scaling.train.spec_types import InitSpec

pytestmark = pytest.mark.slow

TABLE = "results/tables/eval.csv"
CURVES = "results/tables/train_curves.csv"
BUDGETS = [65536, 262144]  # 128 and 512 optimizer steps of 512 tokens; branch points at 64 and 256
SPEC_TOKENS = 4096  # the split study's D': 8 steps off each pretraining trunk state (P = 1024, 2048, 4096)


def branch_config(micro: dict, budgets: list[int]) -> dict:
    """The micro sweep's data (same classifier and shards keys) with one size, one ratio and WSD branches (for
    pretraining too), and the split study on legal off the pretraining trunk."""
    return {**micro, "domains": {"legal": {"threshold": 0.5, "ratios": [0.5]}},
            "models": {"sizes": {"xs": micro["models"]["sizes"]["xs"]}},
            "pretrain": {**micro["pretrain"], "budgets": "branches"},
            "cpt": {"tokens": budgets, "decay_fraction": 0.5, "checkpoints": 3},
            "studies": {"split": {"enabled": True, "domains": ["legal"], "spec_tokens": [SPEC_TOKENS]}}}


def write_config(workdir: Path, name: str, budgets: list[int]) -> str:
    micro = yaml.safe_load((workdir / "micro.yaml").read_text())
    (workdir / name).write_text(yaml.safe_dump(branch_config(micro, budgets)))
    return name


@pytest.fixture(scope="session")
def branch_run(micro_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The finished micro sweep plus a finished branch sweep on its data (do not modify; copy it)."""
    workdir = tmp_path_factory.mktemp("branches") / "w"
    shutil.copytree(micro_run, workdir, symlinks=True)
    write_config(workdir, "branches.yaml", BUDGETS)
    result = run_snakemake(workdir, "branches.yaml", TABLE, CURVES)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return workdir


def train_dirs(workdir: Path, prefix: str) -> list[Path]:
    return sorted((workdir / "artifacts" / "train").glob(f"{prefix}-*"))


def test_budgets_are_one_trunk_of_segments_and_a_branch_per_budget(branch_run: Path) -> None:
    segments = train_dirs(branch_run, "trunk-cpt-xs-legal-r0.5")
    names = [p.name.rsplit("-", 1)[0] for p in segments]
    assert names == ["trunk-cpt-xs-legal-r0.5-t131072", "trunk-cpt-xs-legal-r0.5-t32768"]
    branches = [run for d in BUDGETS for run in train_dirs(branch_run, f"cpt-xs-legal-r0.5-d{d}")]
    assert len(branches) == 2
    for run in branches:  # a branch trains only its decay, from its trunk segment's state
        start = json.loads((run / "train_log.jsonl").read_text().splitlines()[0])
        budget = int(run.name.rsplit("-", 1)[0].rsplit("-d", 1)[1])
        assert start["resumed_from"] == budget // 2
    # In the eval table the branch ends are the points of one run, the trunk's curve, of the longest budget.
    evals = pd.read_csv(branch_run / TABLE)
    curve = evals[(evals["run"] == "cpt-xs-legal-r0.5") & (evals["split"] == "test")]
    assert sorted(set(curve["D"])) == BUDGETS and set(curve["budget"]) == {max(BUDGETS)}
    assert curve["annealed"].all()
    # Pretraining too: every checkpoint the Chinchilla study would fit is an annealed branch end.
    pre = evals[(evals["kind"] == "pretrain") & (evals["split"] == "test")]
    assert set(pre["run"]) == {"pt-xs"} and sorted(set(pre["D"])) == [2048, 4096, 8192] and pre["annealed"].all()


def test_train_curves_run_continuously_from_the_trunk_segments_into_each_branch(branch_run: Path) -> None:
    """Must-show 3: a branch's curve in train_curves.csv is its trunk segments' logged steps up to its branch
    point, then its own: one row per logged step, tokens strictly increasing, the trunk part ending at the branch
    point (the state the branch continues) and the branch part starting one step after it; every row equal to the
    record of the job that logged it."""
    curves = pd.read_csv(branch_run / CURVES)
    step_tokens = 512
    for budget in BUDGETS:
        run = curves[curves["run"] == f"cpt-xs-legal-r0.5-d{budget}"]
        assert list(run["phase"]) == sorted(run["phase"], key=["trunk", "branch"].index)  # trunk rows first
        tokens = run["tokens"].to_numpy()
        assert (tokens[1:] > tokens[:-1]).all() and tokens[-1] == budget
        point = budget // 2  # decay_fraction 0.5
        trunk, branch = run[run["phase"] == "trunk"], run[run["phase"] == "branch"]
        assert trunk["tokens"].max() == point and branch["tokens"].min() == point + step_tokens
        assert set(run["family"]) == {"cpt-xs-legal-r0.5"}
        for segment, rows in run.groupby("segment"):
            [job] = train_dirs(branch_run, segment)
            logged = {r["tokens"]: r for r in map(json.loads, (job / "train_log.jsonl").read_text().splitlines())
                      if r["event"] == "step"}
            for tokens_at, loss, lr in zip(rows["tokens"], rows["loss"], rows["lr"], strict=True):
                assert loss == pytest.approx(logged[tokens_at]["loss"], rel=1e-5)
                assert lr == pytest.approx(logged[tokens_at]["lr"], rel=1e-5)
    # The trunk is shared: the short branch's trunk rows are the first rows of the long branch's.
    short, long = (curves[(curves["run"] == f"cpt-xs-legal-r0.5-d{b}") & (curves["phase"] == "trunk")] for b in BUDGETS)
    assert short["tokens"].tolist() == long["tokens"].tolist()[:len(short)]


def test_split_curves_continue_the_pretraining_trunk_state_and_its_points_include_unsplit_runs(
        branch_run: Path) -> None:
    """Pretraining budgets 2,048, 4,096 and 8,192 tokens decay over their last half (cpt.decay_fraction 0.5):
    trunk states at P = 1,024, 2,048 and 4,096. Each split curve continues one of them (weights, optimizer, step)
    on legal data for D' = 4,096 tokens in one job (a single D': no segment to share), at constant LR and then
    decaying over the last half of P + D' (from P = 4,096, where that decay starts at P, all of it)."""
    plan = plan_in(branch_run, "branches.yaml")
    assert sorted(p for (_, _, p, _) in plan.split) == [1024, 2048, 4096]
    for point in (1024, 2048, 4096):
        total = point + SPEC_TOKENS
        [branch] = train_dirs(branch_run, f"split-xs-p{point}-legal-r1-d{total}")
        first = json.loads((branch / "train_log.jsonl").read_text().splitlines()[0])
        assert first["resumed_from"] == point, (branch.name, first)
        [trunk_state] = train_dirs(branch_run, f"trunk-pt-xs-t{point}")
        job = plan.split[("xs", "legal", point, SPEC_TOKENS)].job
        assert job.init == InitSpec("run_state", run_dir=str(trunk_state.relative_to(branch_run))), job
        steps = total // 512
        assert wsd_decay_start(steps, job.optimizer) == max(point // 512, steps // 2)
    assert not train_dirs(branch_run, "trunk-split-")
    points = split_points(read_eval_tables([branch_run / p for p in plan.split_evals("legal")]), "legal", 1.0)
    split = points[points["D_spec"] > 0]
    assert sorted(split["D"]) == [1024, 2048, 4096] and set(split["D_spec"]) == {SPEC_TOKENS}
    unsplit = points[points["D_spec"] == 0]
    assert sorted(unsplit["D"]) == [2048, 4096, 8192], points  # the annealed pretraining branch ends


def test_adding_a_budget_plans_only_a_trunk_extension_and_its_branch(branch_run: Path, tmp_path: Path) -> None:
    workdir = tmp_path / "w"
    shutil.copytree(branch_run, workdir, symlinks=True)
    more = write_config(workdir, "more.yaml", [*BUDGETS, 1048576])
    jobs = planned_jobs(workdir, more, TABLE)
    keyed = sorted((rule, Path(out).parent.name.rsplit("-", 1)[0]) for rule, out in jobs if "/artifacts/" in out
                   or out.startswith("artifacts/"))
    assert keyed == [("evaluate", "cpt-xs-legal-r0.5-d1048576--legal+general"),
                     ("train", "cpt-xs-legal-r0.5-d1048576"), ("train", "trunk-cpt-xs-legal-r0.5-t524288")], jobs
    assert sorted(rule for rule, _ in jobs if rule not in ("evaluate", "train")) == ["eval_table"]
    # Removing it again: nothing keyed to do.
    back = write_config(workdir, "back.yaml", BUDGETS)
    assert planned_jobs(workdir, back, TABLE) == []


def _step_logged(run_glob: str, workdir: Path) -> Path | None:
    """A training job of ``run_glob`` that has logged a step and not finished."""
    for run in (workdir / "artifacts" / "train").glob(run_glob):
        log = run / "train_log.jsonl"
        if not (run / "checkpoints.json").exists() and log.is_file() and '"event": "step"' in log.read_text():
            return run
    return None


@pytest.mark.parametrize("killed", ["trunk-cpt-xs-legal-r0.5-t131072", "cpt-xs-legal-r0.5-d262144"])
def test_kill_during_a_trunk_segment_or_a_branch_resumes_to_the_same_bytes(
        branch_run: Path, tmp_path: Path, killed: str) -> None:
    workdir = tmp_path / "w"
    shutil.copytree(branch_run, workdir, symlinks=True)
    # Redo the last trunk segment (between the branch points) and the branch off it, or only the branch; and
    # what reads them (Snakemake leaves deleted intermediate files alone while the final table is up to date).
    evals = sorted((workdir / "artifacts" / "eval").glob("cpt-xs-legal-r0.5-d262144--*"))
    for run in {*train_dirs(workdir, killed), *train_dirs(workdir, "cpt-xs-legal-r0.5-d262144"), *evals}:
        shutil.rmtree(run)
    for table in (workdir / "results" / "tables").glob("eval.*"):
        table.unlink()
    proc = start_snakemake(workdir, "branches.yaml", TABLE)
    try:
        wait_until(functools.partial(_step_logged, f"{killed}-*", workdir), proc, f"{killed} training", interval=0.01)
    finally:
        kill_group(proc)
    result = resume(workdir, "branches.yaml", TABLE)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    [run] = train_dirs(workdir, killed)
    starts = [r for r in map(json.loads, (run / "train_log.jsonl").read_text().splitlines()) if r["event"] == "start"]
    assert len(starts) == 2, "the kill came after the job finished"
    assert_same_products(workdir, branch_run)


def test_chinchilla_on_a_single_cosine_pretraining_run_is_left_out_and_dcpt_points_are_flagged(
        micro_run: Path) -> None:
    """The micro sweep pretrains with pretrain.budgets: single_run (one annealed point per size): Chinchilla,
    which fits annealed points only, is left out. Its one CPT budget of cosine runs is fitted with
    fit.intermediate_points: true: the points table flags the intermediate checkpoints, the law counts them."""
    assert not (micro_run / "results" / "laws" / "chinchilla.json").exists()
    assert "pretrain.budgets: branches" in plan_in(micro_run, "micro.yaml").unavailable_studies()["chinchilla"]
    for domain in ("legal", "medical"):
        law = json.loads((micro_run / "results" / "laws" / f"dcpt_{domain}.json").read_text())
        points = pd.read_csv(micro_run / "results" / "tables" / f"dcpt_points_{domain}.csv")
        assert (points["annealed"] == (points["D"] == points["budget"])).all()
        assert law["unannealed_points"] == int((~points["annealed"]).sum()) == 2 * 2 * 3 * 3  # targets, sizes, r, ckpt
        assert any("not annealed" in w for w in law["diagnostics"]["warnings"])
    cross = pd.read_csv(micro_run / "results" / "tables" / "cross_domain_points.csv")
    assert not cross["annealed"].all()
    split = pd.read_csv(micro_run / "results" / "tables" / "split_points_legal.csv")
    assert "annealed" in split.columns


def test_with_branches_every_dcpt_and_chinchilla_point_is_annealed(branch_run: Path) -> None:
    """Two CPT budgets as WSD branches and pretraining branches: every candidate point is annealed, so
    fit.intermediate_points: false (the default) leaves none out and refuses no D-CPT study. (Chinchilla is left
    out for its point count alone: one size gives 3 annealed points for the law's 5 parameters; split for its one
    specialisation budget D', which does not identify its specialisation term.)"""
    plan = plan_in(branch_run, "branches.yaml")
    unavailable = plan.unavailable_studies()
    assert set(unavailable) == {"chinchilla", "split"} and "= 1 x 3" in unavailable["chinchilla"], unavailable
    assert "studies.split.spec_tokens" in unavailable["split"]
    assert plan.dcpt_enabled
    df = read_eval_tables([branch_run / p for p in plan.dcpt_evals("legal")])
    points = dcpt_points(df, "legal")
    assert sorted(set(points["D"])) == BUDGETS and points["annealed"].all()
    assert len(annealed_points(points, {"intermediate_points": False}, "legal")) == len(points)
    chin = chinchilla_points(read_eval_tables([branch_run / p for p in plan.pretrain_evals()]))
    assert sorted(chin["D"]) == [2048, 4096, 8192] and chin["annealed"].all()
