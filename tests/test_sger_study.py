"""SGER from annealed, budget-matched curves with known truth, the generalist's annealed branches in the plan, and
the SGER figure's size axis."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from workflow_utils import REPO, plan_in

from cpt_scaling.figures.specialization import build_compute_figure, build_sger_figure
from cpt_scaling.plan.train_stage import generalist_budgets
from cpt_scaling.studies.findings import REPRODUCED, size_findings
from cpt_scaling.studies.sger import annealed_sger
from cpt_scaling.studies.specialization import sger_per_size

BUDGET = 65536
MULTIPLES = (1, 2, 4, 8)  # the generalist's annealed branch ends, in specialist budgets
SIZES = {"xs": 3e4, "s": 1e5, "m": 3e5}
RUN_NOISE = 0.002  # relative sd of each annealed point's loss: the data's and the bootstrap's
SEEDS = 40


def _generalist_loss(n: float, d: np.ndarray | float) -> np.ndarray:
    """An annealed generalist's domain loss (nats) after d tokens: a power law in d, lower for larger n."""
    return 2.5 + 40.0 / n**0.25 + 90.0 / np.asarray(d, dtype=float) ** 0.3


def _family(true_sger: dict[str, float], seed: int) -> pd.DataFrame:
    """One sweep of a family: per size, the specialist's annealed loss at BUDGET equals the generalist's at
    true_sger x BUDGET; every annealed point gets relative noise RUN_NOISE. Returns the SGER rows of the study."""
    rng = np.random.default_rng(seed)
    rows = []
    for size, n in SIZES.items():
        gen_d = BUDGET * np.array(MULTIPLES, dtype=float)
        gen = _generalist_loss(n, gen_d) * (1 + RUN_NOISE * rng.standard_normal(len(gen_d)))
        spec = _generalist_loss(n, true_sger[size] * BUDGET) * (1 + RUN_NOISE * rng.standard_normal())
        out = annealed_sger(np.array([6 * n * BUDGET]), np.array([spec]), 6 * n * gen_d, gen,
                            general_start_loss=float(_generalist_loss(n, BUDGET / 16)), run_noise=RUN_NOISE,
                            bootstrap=200, seed=seed)
        rows.append({"size": size, "N": n, "role": "specialist", "true": true_sger[size], **out})
    return pd.DataFrame(rows)


def _verdicts(rows: pd.DataFrame) -> dict[str, str]:
    """The SGER findings of a family's sweep (the other columns of the specialisation table are not read)."""
    spec = rows.assign(domain_loss=5.0, general_loss=5.0, forgetting=0.1)
    general = spec.assign(role="general")
    found = size_findings(pd.concat([spec, general], ignore_index=True), RUN_NOISE)
    return {r["finding"]: r["verdict"] for r in found if r["finding"].startswith("sger")}


def test_sger_recovers_known_truth_and_reads_rising_only_for_the_rising_family() -> None:
    families = {"rising": {"xs": 1.5, "s": 2.6, "m": 5.0}, "flat": {"xs": 2.6, "s": 2.6, "m": 2.6}}
    for name, truth in families.items():
        covered, rising, above = [], 0, 0
        for seed in range(SEEDS):
            rows = _family(truth, seed)
            assert (rows["status"] == "interpolated").all()
            assert (rows["sger_lo"] <= rows["sger"]).all() and (rows["sger"] <= rows["sger_hi"]).all()
            covered += list((rows["sger_lo"] <= rows["true"]) & (rows["true"] <= rows["sger_hi"]))
            verdicts = _verdicts(rows)
            rising += verdicts["sger_rises_with_size"] == REPRODUCED
            above += verdicts["sger_above_one"] == REPRODUCED
        # nominal 95 %; measured 0.88-0.89 here, 0.92 over 300 seeds (log-log interpolation between branch ends a
        # factor 2 apart leaves a ~1 % bias)
        assert np.mean(covered) >= 0.85, (name, np.mean(covered))
        assert above == SEEDS, name  # every true SGER is well above 1
        if name == "rising":
            assert rising >= 0.95 * SEEDS, rising
        else:
            assert rising <= 0.05 * SEEDS, rising


def test_sger_without_run_noise_states_an_uncalibrated_bracket() -> None:
    n = 1e5
    gen_d = BUDGET * np.array(MULTIPLES, dtype=float)
    out = annealed_sger(np.array([6 * n * BUDGET]), np.array([float(_generalist_loss(n, 3 * BUDGET))]),
                        6 * n * gen_d, _generalist_loss(n, gen_d), general_start_loss=None, run_noise=None)
    assert out["sger_lo"] == 2.0 and out["sger_hi"] == 4.0 and "not calibrated" in out["sger_interval"]
    assert 2.0 < out["sger"] < 4.0


def test_the_demo_generalist_is_a_wsd_trunk_with_annealed_branches_at_the_sger_multiples() -> None:
    assert generalist_budgets([65536], 4, 2048) == [65536, 131072, 262144]
    assert generalist_budgets([32768, 65536], 3, 2048) == [32768, 65536, 131072, 196608]
    assert generalist_budgets([65536], 1, 2048) == [65536]
    plan = plan_in(REPO, "config/demo.yaml")
    for size in ("xs", "s", "m"):
        runs = {tokens: plan.generalist[(size, tokens)] for tokens in (65536, 131072, 262144)}
        assert {t for s, t in plan.generalist if s == size} == set(runs)
        # every generalist run is a decay branch of one trunk: its end is annealed, its points one curve
        assert {plan.curve_of[a.key] for a in runs.values()} == {f"cpt-{size}-pool-r0"}
        assert all(a.key in plan.branch_point for a in runs.values())
        assert all(a.job.optimizer.schedule == "wsd" for a in runs.values())


def test_sger_figure_orders_sizes_by_n_on_a_log_axis() -> None:
    law = {"domain": "legal", "sger": [
        {"size": "m", "N": 3e5, "sger": 2.3, "sger_lo": 2.0, "sger_hi": 2.8, "sger_status": "interpolated"},
        {"size": "s", "N": 1e5, "sger": 1.9, "sger_lo": 1.5, "sger_hi": 2.2, "sger_status": "interpolated"},
        {"size": "xs", "N": 3e4, "sger": 1.4, "sger_lo": 1.1, "sger_hi": 1.8, "sger_status": "interpolated"}]}
    ax = build_sger_figure(law).axes[0]
    assert ax.get_xscale() == "log" and ax.get_xlabel().startswith("model size N")
    x = [float(line.get_xdata()[0]) for line in ax.get_lines() if len(line.get_xdata()) == 1]
    assert sorted(set(x)) == [3e4, 1e5, 3e5]  # markers and caps, one position per size
    ticks = sorted(zip(ax.get_xticks(), [t.get_text() for t in ax.get_xticklabels()], strict=True))
    assert [label.split("\n")[0] for _, label in ticks] == ["xs", "s", "m"]


def test_the_study_reads_sger_from_the_annealed_points_of_the_eval_table() -> None:
    """The specialisation study's SGER on an eval table shaped like the demo's: a cosine specialist (only its last
    checkpoint annealed; an earlier one, lower here, is not read), the pool generalist's WSD branch ends (one
    curve), the base model at D = 0. It equals :func:`annealed_sger` on those points."""
    truth = {"xs": 1.5, "s": 2.6, "m": 5.0}
    rows = []

    def add(run: str, kind: str, size: str, ratio: float | None, budget: float, d: int, loss: float) -> None:
        rows.extend({"run": run, "kind": kind, "size": size, "N": SIZES[size], "ratio": ratio, "budget": budget,
                     "D": d, "suite": suite, "split": split, "loss": loss}
                    for suite in ("legal", "general") for split in ("val", "test"))

    for size, n in SIZES.items():
        add(f"base-{size}", "base", size, None, 0, 0, float(_generalist_loss(n, BUDGET / 16)))
        for d in (BUDGET // 2, BUDGET):
            add(f"cpt-{size}-legal-r1", "cpt", size, 1.0, BUDGET, d,
                float(_generalist_loss(n, truth[size] * BUDGET)) - (0.5 if d < BUDGET else 0.0))
        for m in MULTIPLES:  # branch ends: the budget is the curve's longest branch, each end annealed
            add(f"cpt-{size}-pool-r0", "generalist", size, None, BUDGET * MULTIPLES[-1], BUDGET * m,
                float(_generalist_loss(n, BUDGET * m)))
    df = pd.DataFrame(rows)
    df["annealed"] = (df["kind"] == "generalist") | (df["D"] == df["budget"])
    out = sger_per_size(df, "legal", 1.0, 100.0, {"run_noise": RUN_NOISE, "seed": 3}).set_index("size")
    for size, n in SIZES.items():
        gen_d = BUDGET * np.array(MULTIPLES, dtype=float)
        direct = annealed_sger(np.array([6 * n * BUDGET]), np.array([float(_generalist_loss(n, truth[size] * BUDGET))]),
                               6 * n * gen_d, _generalist_loss(n, gen_d),
                               general_start_loss=float(_generalist_loss(n, BUDGET / 16)), run_noise=RUN_NOISE,
                               seed=3)
        assert out.loc[size, "sger"] == pytest.approx(direct["sger"])
        assert out.loc[size, "sger"] == pytest.approx(truth[size], rel=0.02)  # noiseless: the interpolation's bias
        assert out.loc[size, "sger_lo"] == pytest.approx(direct["sger_lo"])
        assert out.loc[size, "sger_general_points"] == len(MULTIPLES)


def test_compute_figure_says_when_no_budget_has_two_sizes() -> None:
    fig = build_compute_figure({"domain": "legal"}, pd.DataFrame(), pd.DataFrame(columns=["role", "compute", "N"]))
    assert "reached by two model sizes" in fig.axes[0].texts[0].get_text()
