"""End-to-end properties of the content-addressed workflow, on real Snakemake runs of the micro sweep."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml
from workflow_utils import plan_in, planned_jobs, run_snakemake

pytestmark = pytest.mark.slow


def edit_config(workdir: Path, edit) -> str:
    """Write an edited copy of the micro config next to it and return its name."""
    cfg = yaml.safe_load((workdir / "micro.yaml").read_text())
    edit(cfg)
    (workdir / "edited.yaml").write_text(yaml.safe_dump(cfg))
    return "edited.yaml"


def new_artifacts(workdir: Path, old: str, new: str) -> set[str]:
    """Output paths of artifacts whose keys exist in the plan of ``new`` but not in that of ``old``."""
    before, after = plan_in(workdir, old).by_key, plan_in(workdir, new).by_key
    return {a.output for k, a in after.items() if k not in before}


def test_finished_run_has_products_and_nothing_left(micro_run: Path) -> None:
    for product in ["results/figures/dcpt_legal.pdf", "results/figures/dcpt_medical.pdf",
                    "results/tables/eval.csv", "results/laws/dcpt_legal.json"]:
        assert (micro_run / product).stat().st_size > 0, product
    for spec in (micro_run / "artifacts").glob("*/*/"):
        assert (spec / "spec.json").is_file(), f"{spec} has no spec.json"
    assert planned_jobs(micro_run, "micro.yaml") == []


def test_checkpoint_index_points_at_every_evaluated_checkpoint(micro_run: Path) -> None:
    """results/checkpoints.csv: one row per evaluated checkpoint (run, D, annealed), each a loadable HF directory."""
    import pandas as pd

    index = pd.read_csv(micro_run / "results" / "checkpoints.csv")
    evals = pd.read_csv(micro_run / "results" / "tables" / "eval.csv")
    losses = evals[evals["metric"] == "loss"]
    assert len(index) == len(losses[["run", "D"]].drop_duplicates()) > 0
    for row in index.itertuples():
        assert (micro_run / row.checkpoint / "config.json").is_file(), row.checkpoint
        assert (micro_run / row.checkpoint / "model.safetensors").is_file(), row.checkpoint
    assert index.groupby("run")["annealed"].sum().eq(1).all()  # cosine runs: the last checkpoint is annealed
    assert index.loc[index["annealed"], "D"].tolist() == index.groupby("run")["D"].max().loc[
        index.loc[index["annealed"], "run"]].tolist()


def test_touching_every_file_plans_nothing(micro_copy: Path) -> None:
    for path in micro_copy.rglob("*"):
        if path.is_file() and ".snakemake" not in path.parts:
            os.utime(path)
    assert planned_jobs(micro_copy, "micro.yaml") == []


def test_changing_one_domain_reruns_only_that_domain(micro_copy: Path) -> None:
    edited = edit_config(micro_copy, lambda c: c["domains"]["legal"]["ratios"].append(0.25))
    jobs = planned_jobs(micro_copy, edited)
    expected = new_artifacts(micro_copy, "micro.yaml", edited)
    assert expected, "the edit must create new artifacts"
    assert all("legal" in p for p in expected), expected
    keyed = {out for rule, out in jobs if out.startswith("artifacts/")}
    assert keyed == {p for p in expected}
    aggregates = sorted(rule for rule, out in jobs if not out.startswith("artifacts/"))
    # The cross-domain law learns from every domain's runs, legal's included.
    # The training curves: the table, and legal's figure only (a figure reads its own group's logs).
    assert aggregates == ["all", "eval_table", "figures_cross_domain", "figures_dcpt", "figures_train_curves",
                          "fit_cross_domain", "fit_dcpt", "seed_findings", "train_curves"]
    assert [out for rule, out in jobs if rule == "fit_dcpt"] == ["results/laws/dcpt_legal.json"]
    assert not any("medical" in out for _, out in jobs)


def test_changing_a_threshold_reruns_only_that_domain(micro_copy: Path) -> None:
    edited = edit_config(micro_copy, lambda c: c["domains"]["legal"].update(threshold=0.6))
    jobs = planned_jobs(micro_copy, edited)
    rules = {rule for rule, _ in jobs}
    assert "shards" in rules and "train" in rules
    assert not any("medical" in out for _, out in jobs)
    assert [out for rule, out in jobs if rule == "shards"] and all(
        re.search(r"/legal-[0-9a-f]{16}/", out) for rule, out in jobs if rule == "shards")
    keyed = {out for _, out in jobs if out.startswith("artifacts/")}
    assert keyed == new_artifacts(micro_copy, "micro.yaml", edited)
    assert "fit_chinchilla" not in rules  # the pretraining runs do not read domain data


def test_revert_after_running_a_change_recomputes_nothing_keyed(micro_copy: Path) -> None:
    edited = edit_config(micro_copy, lambda c: c["domains"]["legal"]["ratios"].append(0.25))
    result = run_snakemake(micro_copy, edited)
    assert result.returncode == 0, result.stderr[-4000:]
    jobs = planned_jobs(micro_copy, "micro.yaml")
    assert all(not out.startswith("artifacts/") for _, out in jobs), jobs
    assert {rule for rule, _ in jobs} <= {"all", "eval_table", "fit_dcpt", "figures_dcpt", "fit_cross_domain",
                                          "figures_cross_domain", "train_curves", "figures_train_curves",
                                          "seed_findings"}


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        (lambda c: c["domains"]["legal"]["ratios"].append(1.5), "domains.legal.ratios[3]"),
        (lambda c: c["models"]["sizes"]["xs"].pop("n_heads"), "models.sizes.xs"),
        (lambda c: c["domains"].update(finance={"ratios": [0.5]}), "domains.finance"),
        (lambda c: c["cpt"].update(tokens=[-5]), "cpt.tokens[0]"),
    ],
)
def test_schema_violation_fails_at_parse_time_naming_the_key(tmp_path: Path, edit, key: str) -> None:
    from conftest import make_workdir

    workdir = make_workdir(tmp_path / "w")
    edited = edit_config(workdir, edit)
    result = run_snakemake(workdir, edited, "--dry-run")
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert key in output and "edited.yaml" in output, output[-3000:]
    assert not (workdir / "artifacts").exists()
