"""The three studies as named targets: every figure exists with the expected axes, the report renders, and asking
for one study's figure plans only that study's jobs."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import make_workdir
from workflow_utils import planned_jobs, run_snakemake

from cpt_scaling.figures import cross_domain, dcpt, specialization, split

pytestmark = pytest.mark.slow

EXPECTED = {
    "dcpt_legal.pdf", "dcpt_fit_legal.pdf", "dcpt_medical.pdf", "dcpt_fit_medical.pdf",
    "split_fraction_legal.pdf", "split_optimal_legal.pdf", "cross_domain.pdf",
    *(f"specialization_{w}_{d}.pdf" for w in ("ppl", "sger", "forgetting", "compute") for d in ("legal", "medical")),
}


def pdf_pages(path: Path) -> int:
    return len(re.findall(rb"/Type\s*/Page[^s]", path.read_bytes()))


def labels(fig) -> set[str]:
    return {t for ax in fig.axes for t in (ax.get_xlabel(), ax.get_ylabel())}


def test_every_study_figure_is_a_one_page_pdf(micro_run: Path) -> None:
    figures = micro_run / "results" / "figures"
    assert {p.name for p in figures.glob("*.pdf")} >= EXPECTED
    # One cosine pretraining run (pretrain.budgets: single_run): one annealed point per size, so no Chinchilla.
    assert not list(figures.glob("chinchilla_*")) and not (micro_run / "results" / "laws" / "chinchilla.json").exists()
    for name in EXPECTED:
        assert pdf_pages(figures / name) == 1, name


def test_figures_show_the_expected_axes_and_series(micro_run: Path) -> None:
    res = micro_run / "results"
    law = json.loads((res / "laws" / "dcpt_legal.json").read_text())
    points = pd.read_csv(res / "tables" / "dcpt_points_legal.csv")
    fig = dcpt.build_ratio_figure(law, points)
    assert {"legal mixture ratio r", "held-out legal loss (nats/token)"} <= labels(fig)
    n_curves = len(points["N"].unique()) * min(3, points["D"].nunique())
    assert all(len(ax.get_lines()) >= n_curves for ax in fig.axes)
    assert labels(dcpt.build_fit_figure(law, points)) >= {"observed domain loss", "predicted domain loss"}
    assert points["annealed"].dtype == bool and not points["annealed"].all()  # fit.intermediate_points: true
    assert law["unannealed_points"] == int((~points["annealed"]).sum())
    assert dcpt.UNANNEALED_LABEL in {t.get_text() for t in fig.axes[0].get_legend().get_texts()}
    spec = json.loads((res / "laws" / "specialization_legal.json").read_text())
    table = pd.read_csv(res / "tables" / "specialization_legal.csv")
    fig = specialization.build_ppl_figure(spec, table)
    assert {t.get_text().split(":")[0] for t in fig.axes[0].get_legend().get_texts()} == {"specialist", "general"}
    assert "forgetting: Δ general loss vs base (nats)" in labels(specialization.build_forgetting_figure(spec, table))
    split_law = json.loads((res / "laws" / "split_legal.json").read_text())
    fig = split.build_optimal_figure(split_law, pd.read_csv(res / "tables" / "split_decisions_legal.csv"))
    assert "optimal specialisation share f* (one domain)" in labels(fig)


def test_cross_domain_law_predicts_each_domain_from_the_others(micro_run: Path) -> None:
    res = micro_run / "results"
    law = json.loads((res / "laws" / "cross_domain.json").read_text())
    points = pd.read_csv(res / "tables" / "cross_domain_points.csv")
    assert set(law["probes"]) == set(points["domain"]) == {"legal", "medical"}
    assert all(p["k1"] > 0 and p["k2"] > 0 for p in law["probes"].values())
    # two domains: a fit on "the others" would see one domain, so leave-one-domain-out is not run, and said so
    assert law["leave_one_domain_out"] is None and law["leave_one_domain_out_status"] == "not identified"
    assert "needs at least 4 domains" in law["leave_one_domain_out_note"]
    assert law["identifiability"] == {**law["identifiability"], "n_domains": 2, "n_free_params": 3}
    assert points["lodo"].isna().all() and points["fit"].notna().all() and "diagnostics" in law
    fig = cross_domain.build_figure(law, points)
    assert labels(fig) == {"observed domain loss (nats/token)", "predicted domain loss (nats/token)"}
    assert [len(ax.collections) for ax in fig.axes] == [0, 2]  # the all-domain panel: one series per domain


def test_law_files_carry_uncertainty_and_held_out_points(micro_run: Path) -> None:
    law = json.loads((micro_run / "results" / "laws" / "dcpt_legal.json").read_text())
    for target in ("domain_loss", "general_loss"):
        fit = law[target]
        assert set(fit["ci"]) == set(fit["params"]) - set(fit["fixed_params"])
        assert all(v is None for v in fit["ci"].values())  # the micro config runs no bootstrap: no interval
        assert fit["n_points"] == len(fit["points_used"]) and 0.0 <= fit["r2"] <= 1.0
        assert fit["points_held_out"] == [] and "diagnostics" in fit  # decisions use the fit on all sizes
    assert {row["usage"] for row in law["usages"]} == {1, 2, 3} and "diagnostics" in law
    for name in ("split_legal", "specialization_legal", "cross_domain"):
        assert "diagnostics" in json.loads((micro_run / "results" / "laws" / f"{name}.json").read_text()), name


def test_report_renders(micro_copy: Path) -> None:
    result = run_snakemake(micro_copy, "micro.yaml", "--report", "results/report.html")
    assert result.returncode == 0, result.stderr[-3000:]
    html = (micro_copy / "results" / "report.html").read_text(errors="replace")
    assert "dcpt_legal.pdf" in html and "specialization_ppl_legal.pdf" in html


@pytest.mark.parametrize(
    ("target", "allowed", "forbidden"),
    [
        ("results/figures/chinchilla_fit.pdf", {"train_classifier", "classify_pool_file", "tokenizer", "shards",
                                                 "train", "evaluate", "fit_chinchilla", "figures_chinchilla"},
         ("cpt-", "legal", "medical")),
        # no split runs (-p<branch point>) and no mixture runs; the pool generalist (cpt-<size>-pool-...) is its own
        ("results/figures/specialization_ppl_legal.pdf", None, ("medical", r"-p\d", r"r0\.5")),
    ],
)
def test_one_figure_plans_only_its_study(tmp_path: Path, target: str, allowed: set[str] | None,
                                         forbidden: tuple[str, ...]) -> None:
    workdir = make_workdir(tmp_path / "w")
    if "chinchilla" in target:  # Chinchilla fits annealed points only: it needs pretraining branches (dry run)
        micro = yaml.safe_load((workdir / "micro.yaml").read_text())
        (workdir / "micro.yaml").write_text(yaml.safe_dump({**micro, "pretrain": {**micro["pretrain"],
                                                                                  "budgets": "branches"}}))
    jobs = planned_jobs(workdir, "micro.yaml", target)
    rules = {rule for rule, _ in jobs}
    if allowed is not None:
        assert rules == allowed
    assert not {"fit_dcpt", "fit_split", "eval_table"} & rules
    keyed = [out for _, out in jobs if out.startswith("artifacts/train/") or out.startswith("artifacts/eval/")]
    assert keyed and not [out for out in keyed for word in forbidden if re.search(word, out.split("/")[2])]
    if "specialization" in target:
        assert [out for out in keyed if "-pool-" in out]
    shutil.rmtree(workdir)


def test_the_generalist_continues_pretraining_on_the_unfiltered_pool(micro_run: Path) -> None:
    """The seed's generalist: one run per size on the pool shards (every label), scored on every domain; the
    specialisation study compares against it, not against the ratio-0 run on the general class."""
    res = micro_run / "results"
    spec = json.loads((res / "laws" / "specialization_legal.json").read_text())
    assert spec["generalist"] == "pool" and "unfiltered pool" in spec["generalist_definition"]
    evals = pd.read_parquet(res / "tables" / "eval.parquet")
    gen = evals[evals["kind"] == "generalist"]
    assert set(gen["size"]) == {"xs", "s"} and set(gen["suite"]) == {"general", "legal", "medical"}
    pools = list((micro_run / "artifacts" / "shards").glob("pool-*/manifest.json"))
    assert len(pools) == 1 and json.loads(pools[0].read_text())["n_selected"] > 0
    table = pd.read_csv(res / "tables" / "specialization_legal.csv")
    general = table[table["role"] == "general"]
    # the generalist's best checkpoint is its own (pool) run's: its losses are the generalist rows of eval.parquet
    best = general.iloc[0]
    rows = gen[(gen["size"] == best["size"]) & (gen["D"] == best["best_D"]) & (gen["budget"] == best["budget"])
               & (gen["suite"] == "legal") & (gen["split"] == "test")]
    assert len(rows) == 1
    assert float(rows["loss"].iloc[0]) == pytest.approx(best["domain_loss"])


def test_the_sweep_reports_every_seed_finding(micro_run: Path) -> None:
    """results/tables/seed_findings.csv: every finding of every domain with a verdict and its numbers; the micro
    sweep states no run noise (fit.run_noise), so no trend with size or r is resolved, and it says why."""
    from cpt_scaling.studies.findings import FINDINGS, NOT_RESOLVED, VERDICTS
    from cpt_scaling.studies.split import SPLIT_FINDINGS

    found = pd.read_csv(micro_run / "results" / "tables" / "seed_findings.csv")
    assert sorted(zip(found["domain"], found["finding"], strict=True)) == sorted(
        [(d, f) for d in ("legal", "medical") for f in FINDINGS] + [("legal", f) for f in SPLIT_FINDINGS])
    assert set(found["verdict"]) <= set(VERDICTS) and found["evidence"].str.contains(r"\d").all()
    trends = found[found["finding"].str.contains("falls_with_size|forgetting_rises")]
    assert (trends["verdict"] == NOT_RESOLVED).all() and trends["evidence"].str.contains("run_noise unset").all()
