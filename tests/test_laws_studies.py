"""The studies on a synthetic sweep table: every decision carries lo <= value <= hi from the bootstrap, every law
JSON a diagnostics block, decisions come from the fit on all sizes (the held-out fit is validation only)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from law_synth import eval_table

from cpt_scaling.studies.chinchilla import fit_chinchilla_study
from cpt_scaling.studies.cross_domain import fit_cross_domain_study
from cpt_scaling.studies.dcpt import fit_dcpt_study
from cpt_scaling.studies.specialization import fit_specialization_study
from cpt_scaling.studies.split import fit_split_study, read_split_findings

# The demo's structure (one CPT budget, cosine runs): like config/demo.yaml, the fits take intermediate points.
FIT = {"huber_delta": 1e-3, "bootstrap": 30, "seed": 0, "bootstrap_starts": 2, "extrapolation_limit": 100.0,
       "coarse_grid": True, "intermediate_points": True}
STUDY = {"general_tolerance": 0.03, "domain_tokens": None, "compute_budgets": []}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("studies")
    path = root / "eval.parquet"
    table = eval_table(seed=1, pretrain_branches=True)  # Chinchilla fits annealed points only: WSD branch ends
    table.to_parquet(path)
    # what the plan gives the legal D-CPT fit: the base models, the shared ratio-0 runs and legal's own runs
    table[table["domain"].isna() | (table["domain"] == "legal")].query("kind != 'split'").to_parquet(
        root / "legal.parquet")
    return root, path


@pytest.fixture(scope="module")
def results(sweep) -> dict[str, dict]:
    """Every study run once on the synthetic sweep; outputs under the sweep's directory."""
    root, path = sweep
    legal = root / "legal.parquet"
    return {
        "dcpt": fit_dcpt_study([legal], "legal", FIT, STUDY, 65536.0, root / "dcpt_law.json",
                               root / "dcpt_points.csv", root / "dcpt_usages.csv"),
        "spec": fit_specialization_study([legal], "legal", 1.0, FIT, root / "spec_law.json", root / "spec_table.csv",
                                         root / "spec_compute.csv"),
        "split": fit_split_study([path], "legal", {"ratio": 1.0}, FIT, root / "split_law.json",
                                 root / "split_points.csv", root / "split_decisions.csv",
                                 root / "split_findings_legal.csv"),
        "chin": fit_chinchilla_study([path], FIT, root / "chin.json", root / "chin_points.csv",
                                     root / "frontier.csv"),
        "cross2": fit_cross_domain_study([path], ["legal", "medical"], {**FIT, "bootstrap": 0}, root / "cross2.json",
                                         root / "cross2_points.csv"),
    }


def _bracketed(table: pd.DataFrame, value: str, lo: str, hi: str) -> None:
    rows = table[table[value].notna()]
    assert len(rows) and rows[lo].notna().all() and rows[hi].notna().all(), (value, rows)
    assert (rows[lo] <= rows[value] * (1 + 1e-12)).all() and (rows[value] <= rows[hi] * (1 + 1e-12)).all()


def test_dcpt_decisions_have_intervals_and_use_all_sizes(sweep, results) -> None:
    root, _ = sweep
    out = {k: root / f"dcpt_{k}" for k in ("law.json", "points.csv", "usages.csv")}
    result = results["dcpt"]
    usages = pd.read_csv(out["usages.csv"])
    assert set(usages["usage"]) == {1, 2, 3} and set(usages["decision"]) == {"ratio", "N"}
    _bracketed(usages, "value", "lo", "hi")
    assert (usages["extrapolation"] >= 1).all() and (usages.loc[usages["usage"] == 3, "extrapolation"] > 1).all()
    law = json.loads(out["law.json"].read_text())
    assert "diagnostics" in law and law["diagnostics"]["converged"] in (True, False)
    for target in ("domain_loss", "general_loss"):
        fit = law[target]
        assert fit["n_points"] == int((pd.read_csv(out["points.csv"])["target"] == target.split("_")[0]).sum())
        assert fit["points_held_out"] == [] and fit["validation"]["held_out_sizes"] == [3e5]
        assert fit["bootstrap_info"]["n_groups"] == 15 and fit["bootstrap_info"]["failed"] == 0
        assert set(fit["ci"]) == set(fit["params"]) and all(lo <= hi for lo, hi in fit["ci"].values())
    assert result["usages"][0]["note"].startswith("min domain loss")


def test_specialization_sger_per_size_and_equivalent_size(sweep, results) -> None:
    root, _ = sweep
    law_out, table_out, compute_out = (root / f"spec_{k}" for k in ("law.json", "table.csv", "compute.csv"))
    result = results["spec"]
    table = pd.read_csv(table_out)
    spec = table[table["role"] == "specialist"]
    assert len(spec) == 3 and set(spec["sger_status"]) <= {"interpolated", "extrapolated", "> limit"}
    beyond = spec[spec["sger_status"] == "> limit"]  # the general model never gets there: a lower bound only
    assert beyond["sger"].isna().all() and (beyond["sger_lo"] > 0).all()
    if len(beyond) < len(spec):
        _bracketed(spec, "sger", "sger_lo", "sger_hi")
    _bracketed(spec, "compute_ratio_across_sizes", "compute_ratio_across_sizes_lo", "compute_ratio_across_sizes_hi")
    assert (table["compute_to_own_min"] > 0).all()
    for r in result["sger"]:  # C_general / C_specialist, both continued-pretraining compute to the same perplexity
        if r["sger"] is not None:
            assert r["sger"] == pytest.approx(r["C_general"] / r["C_specialist"])
    compute = pd.read_csv(compute_out)
    assert ((compute["N_lo"] <= compute["N"]) & (compute["N"] <= compute["N_hi"])).all()
    # a common budget grid: a decision only where two sizes or more reach the budget, among those that do
    assert len(compute) and (compute["candidates"].str.split(",").str.len() >= 2).all()
    assert all(best in cands.split(",") for best, cands in zip(compute["best_size"], compute["candidates"],
                                                               strict=True))
    reach = sorted(6.0 * table["N"].unique() * table["budget"].max())  # each size's curve ends at its budget
    assert (compute["compute"] <= reach[-2] * (1 + 1e-9)).all()  # beyond, only the largest size: no decision
    assert "diagnostics" in json.loads(law_out.read_text())


def test_split_points_include_unsplit_runs_and_decisions_have_intervals(sweep, results) -> None:
    root, _ = sweep
    law_out, points_out, dec_out = (root / f"split_{k}" for k in ("law.json", "points.csv", "decisions.csv"))
    points = pd.read_csv(points_out)
    assert (points["D_spec"] == 0).sum() == 3 * 4  # every pretraining checkpoint of every size, unsplit
    table = pd.read_csv(dec_out)
    _bracketed(table, "optimal_spec_fraction", "optimal_spec_fraction_lo", "optimal_spec_fraction_hi")
    finite = table[np.isfinite(table["multiplier"])]
    _bracketed(finite, "multiplier", "multiplier_lo", "multiplier_hi")
    assert (table["multiplier"] >= 1.0).all() and (table["extrapolation"] >= 1.0).all()
    law = json.loads(law_out.read_text())
    assert law["diagnostics"]["max_decision_extrapolation"] == pytest.approx(table["extrapolation"].max())
    # issue 24: every candidate's held-out error; K domains share one pretraining, so their multiplier is at most
    # one domain's; the D' extrapolation is part of the decision's; both findings with a verdict
    assert set(law["selection"]["heldout_mean_rel_error"]) == {"split_separable", "split_effective", "split_transfer_n"}
    assert (table["multiplier_k"] <= table["multiplier"] * (1 + 1e-6)).all() and (table["k_domains"] == 1).all()
    assert (table["extrapolation"] >= table["extrapolation_spec"]).all() and (table["extrapolation_spec"] >= 1).all()
    assert np.allclose(table["split_point"], table["total_tokens"] * (1 - table["optimal_spec_fraction"]))
    assert [f["verdict"] in ("reproduced", "not resolved", "contradicted") for f in law["findings"]] == [True, True]
    assert read_split_findings(root, "legal") == law["findings"]


def test_chinchilla_and_cross_domain_json_have_diagnostics(sweep, results) -> None:
    root, path = sweep
    law = results["chin"]
    assert law["bootstrap_info"]["n_groups"] == 3 and "diagnostics" in law
    frontier = pd.read_csv(root / "frontier.csv")
    _bracketed(frontier, "N", "N_lo", "N_hi")
    assert frontier["extrapolation"].max() > 100  # the frontier table runs to 1e4 x; figures stop at the limit
    # four domains for three free domain-term parameters: each fit on the others sees three, as many as it pins
    four = root / "four_domains.parquet"
    eval_table(seed=2, domains=("legal", "medical", "accounting", "finance")).to_parquet(four)
    cross = fit_cross_domain_study([four], ["legal", "medical", "accounting", "finance"], {**FIT, "bootstrap": 0},
                                   root / "cross.json", root / "cross_points.csv")
    assert cross["identifiability"]["n_domains"] == 4 and cross["identifiability"]["n_free_params"] == 3
    assert cross["leave_one_domain_out"]["n_splits"] == 4 and "diagnostics" in cross
    assert cross["leave_one_domain_out_status"] == "identified"
    assert all(v is None for v in cross["ci"].values())  # no bootstrap, no interval
    assert all(p["k2_unit"] == "loss drop per 1e9 tokens" and math.isfinite(p["k2"]) for p in cross["probes"].values())
    # three domains (the demo's): each leave-one-out fit has two domains for three parameters, not identified
    three = fit_cross_domain_study([path], ["legal", "medical", "accounting"], {**FIT, "bootstrap": 0},
                                   root / "cross3.json", root / "cross3_points.csv")
    assert three["leave_one_domain_out"] is None and three["leave_one_domain_out_status"] == "not identified"
    assert "2 domain(s) for 3 free domain-term parameters" in three["leave_one_domain_out_note"]
    assert pd.read_csv(root / "cross3_points.csv")["lodo"].isna().all()
    two = results["cross2"]
    assert two["leave_one_domain_out"] is None and "needs at least 4 domains" in two["leave_one_domain_out_note"]


def test_figures_draw_from_the_study_outputs_and_stop_at_the_extrapolation_limit(sweep, results) -> None:
    """Each figure builds from what the studies wrote (intervals, statuses, null LODO), and the Chinchilla frontier
    and split decisions are not drawn beyond fit.extrapolation_limit of the sweep."""
    from cpt_scaling.figures import chinchilla, cross_domain, dcpt, specialization, split

    root, _ = sweep
    points = pd.read_csv(root / "dcpt_points.csv")
    assert "largest size held out" in dcpt.build_ratio_figure(results["dcpt"], points).axes[0].get_title()
    dcpt.build_fit_figure(results["dcpt"], points)
    chin, chin_points = results["chin"], pd.read_csv(root / "chin_points.csv")
    fig = chinchilla.build_frontier_figure(chin, pd.read_csv(root / "frontier.csv"), chin_points)
    c_max = float((6 * chin_points["N"] * chin_points["D"]).max())
    drawn = max(float(np.max(line.get_xdata())) for line in fig.axes[0].get_lines() if len(line.get_xdata()) > 2)
    assert c_max < drawn <= 100 * c_max * (1 + 1e-9)
    chinchilla.build_fit_figure(chin, chin_points)
    spec, table = results["spec"], pd.read_csv(root / "spec_table.csv")
    specialization.build_ppl_figure(spec, table)
    specialization.build_forgetting_figure(spec, table)
    specialization.build_sger_figure(spec)
    specialization.build_compute_figure(spec, table, pd.read_csv(root / "spec_compute.csv"))
    decisions = pd.read_csv(root / "split_decisions.csv")
    fig = split.build_optimal_figure(results["split"], decisions)
    assert fig.axes[1].get_ylabel() == "compute multiplier, one domain"
    limit_t = decisions.loc[decisions["extrapolation"] <= 100, "total_tokens"].max()
    assert max(float(np.max(line.get_xdata())) for line in fig.axes[0].get_lines()) <= limit_t
    split.build_fraction_figure(results["split"], pd.read_csv(root / "split_points.csv"))
    fig = cross_domain.build_figure(results["cross2"], pd.read_csv(root / "cross2_points.csv"))
    assert [len(ax.collections) for ax in fig.axes] == [0, 2]
