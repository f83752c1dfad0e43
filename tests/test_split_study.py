"""The split study identified (issue 24): the N-dependent transfer form, the K-domain multiplier, extrapolation in
D′, the splitting paper's two findings with verdicts, and the refusal of a sweep whose D′ levels cannot identify it.
Coverage over seeds with known truth: bench/bench_split.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import make_workdir
from workflow_utils import plan_in

from cpt_scaling.fit import decisions as dec
from cpt_scaling.fit import split_decisions as sd
from cpt_scaling.laws import LAWS
from cpt_scaling.studies.split import spec_extrapolation, split_findings

TRUTH = {"E": 2.0, "A": 40.0, "alpha": 0.3, "B": 40.0, "beta": 0.28, "C": 200.0, "gamma": 0.42, "kappa": 1.0,
         "eta": 0.3}
SIZES = (3e4, 1.2e5, 4.8e5)
GRID = [(n, d, s) for n in SIZES for d in (32768, 90112, 262144) for s in (0, 8192, 24576, 65536)]


def law_json(name: str, params: dict[str, float], spread: float = 0.0, resamples: int = 0) -> dict:
    """A fitted-law JSON at ``params`` on the bench's design, with ``resamples`` parameter sets jittered by
    ``spread`` (relative, log scale) standing in for a bootstrap."""
    law = LAWS[name]
    out = {"law": name, "params": dict(params), "domain": "legal",
           "points_used": [{"N": n, "D": float(d), "D_spec": float(s)} for n, d, s in GRID]}
    if resamples:
        rng = np.random.default_rng(0)
        values = [[params[k] * (1 + rng.normal(0, spread)) if k not in law.linear else params[k] + rng.normal(0, spread)
                   for k in law.params] for _ in range(resamples)]
        out["bootstrap_samples"] = {"params": list(law.params), "values": values}
    return out


def test_transfer_n_is_a_split_candidate_whose_optimal_share_depends_on_n() -> None:
    law = law_json("split_transfer_n", TRUTH)
    shares = [sd.split_optimal_fraction(law, N=n, total_tokens=3e5)["fraction"] for n in SIZES]
    assert shares[0] > shares[1] > shares[2]  # larger models transfer more: specialise less
    additive = law_json("split_effective", {k: v for k, v in TRUTH.items() if k != "eta"} | {"kappa": 0.1})
    same = [sd.split_optimal_fraction(additive, N=n, total_tokens=3e5)["fraction"] for n in SIZES]
    assert same == pytest.approx([same[0]] * 3, abs=1e-6)  # additive in N: one share for every size


def test_k_domain_multiplier_shares_one_pretraining() -> None:
    """K = 1 is the per-domain multiplier; with K domains the optimum minimises L(N, T(1 − f), T·f/K) (checked by
    brute force), standard pretraining of multiplier·T tokens matches its loss, and sharing one pretraining among
    K specialisations can never beat one domain's split of the same budget (multiplier_K <= multiplier_1)."""
    law = law_json("split_transfer_n", TRUTH)
    n, total = 3e4, 3e5
    one = sd.split_compute_multiplier(law, N=n, total_tokens=total)
    assert one == sd.split_compute_multiplier(law, N=n, total_tokens=total, k=1)
    three = sd.split_compute_multiplier(law, N=n, total_tokens=total, k=3)
    f = np.linspace(0.0, 1 - 1e-6, 200001)
    brute = f[np.argmin(dec.law_loss(law, N=n, D=total * (1 - f), D_spec=total * f / 3))]
    assert three["fraction"] == pytest.approx(brute, abs=1e-4)
    assert three["D_spec"] == pytest.approx(total * three["fraction"] / 3)
    matched = float(dec.law_loss(law, N=n, D=three["multiplier"] * total, D_spec=0.0))
    assert matched == pytest.approx(three["loss"], rel=1e-9)
    assert 1.0 < three["multiplier"] < one["multiplier"]


def test_a_specialisation_budget_outside_the_fitted_levels_is_an_extrapolation() -> None:
    levels = np.array([8192.0, 24576.0, 65536.0])
    assert spec_extrapolation(levels, 0.0) == 1.0  # do not split: standard pretraining, a fitted point
    assert spec_extrapolation(levels, 20000.0) == 1.0
    assert spec_extrapolation(levels, 100.0) == pytest.approx(81.92)  # the optimum far below the only level
    assert spec_extrapolation(levels, 655360.0) == pytest.approx(10.0)


def test_findings_read_reproduced_not_resolved_or_contradicted_from_the_intervals() -> None:
    """Under the truth (η > 0, γ > β) both findings are reproduced; with the transfer falling with N (η < 0) the
    split point falls with N: contradicted; an additive form cannot resolve the size trend and says why; without
    resamples nothing is resolved."""
    rows = {r["finding"]: r for r in split_findings(law_json("split_transfer_n", TRUTH, 0.01, 64), "legal")}
    assert {r["verdict"] for r in rows.values()} == {"reproduced"}
    assert "N=4.8e+05" in rows["split_optimal_share_falls_with_budget"]["evidence"]
    falling = law_json("split_transfer_n", TRUTH | {"eta": -0.3, "kappa": 0.0175}, 0.01, 64)
    rows = {r["finding"]: r for r in split_findings(falling, "legal")}
    assert rows["split_point_rises_with_size"]["verdict"] == "contradicted"
    additive = law_json("split_effective", {k: v for k, v in TRUTH.items() if k != "eta"} | {"kappa": 0.1}, 0.01, 64)
    row = split_findings(additive, "legal")[1]
    assert row["verdict"] == "not resolved" and "additive in N" in row["evidence"]
    bare = split_findings(law_json("split_transfer_n", TRUTH), "legal")
    assert {r["verdict"] for r in bare} == {"not resolved"} and all("no bootstrap" in r["evidence"] for r in bare)


def test_one_specialisation_level_leaves_the_split_study_out_naming_the_key(tmp_path: Path) -> None:
    """One D′ level (split branches off pretraining trunks, one job each) does not identify the specialisation term:
    the study leaves the default target with a reason that names studies.split.spec_tokens; three levels spanning
    8x run it. (The shipped micro config identifies it through its cosine split runs' checkpoints, 512..4096.)"""
    workdir = make_workdir(tmp_path / "w")
    micro = yaml.safe_load((workdir / "micro.yaml").read_text())

    def variant(name: str, spec_tokens: list[int], design: str = "grid") -> str:
        cfg = {**micro, "pretrain": {**micro["pretrain"], "budgets": "branches"},
               "studies": {"split": {"enabled": True, "domains": ["legal"], "spec_tokens": spec_tokens,
                                     "design": design}}}
        (workdir / name).write_text(yaml.safe_dump(cfg))
        return name

    reason = plan_in(workdir, variant("one.yaml", [4096])).unavailable_studies()["split"]
    assert "studies.split.spec_tokens" in reason and "1 specialisation budget(s) D' (4096 tokens" in reason
    assert "split" in plan_in(workdir, variant("narrow.yaml", [1024, 2048, 4096])).unavailable_studies()
    one = plan_in(workdir, "one.yaml")
    assert "split" not in plan_in(workdir, variant("three.yaml", [512, 1536, 4096])).unavailable_studies()
    assert "split" not in plan_in(workdir, "micro.yaml").unavailable_studies()
    # The latin design: each (size, pretraining budget) one level, rotating; every size sees every level, and the
    # sweep has the jobs of the one-level config.
    latin = plan_in(workdir, variant("latin.yaml", [512, 1536, 4096], "latin"))
    assert "split" not in latin.unavailable_studies() and latin.job_counts() == one.job_counts()
    cells = {(size, point): level for size, _, point, level in latin.split}
    assert len(cells) == len(latin.split) == len(one.split)
    for size in ("xs", "s"):
        assert {level for (s, _), level in cells.items() if s == size} == {512, 1536, 4096}
