"""Chinchilla form: gradients, synthetic recovery, bootstrap intervals, compute-optimal allocation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from law_synth import CHINCHILLA_TRUE, grid_frame, with_loss

from cpt_scaling.fit.decisions import chinchilla_compute_optimal, dcpt_compute_allocation, law_loss
from cpt_scaling.fit.fitting import fit_law
from cpt_scaling.fit.optimize import Objective
from cpt_scaling.laws import LAWS


@pytest.mark.parametrize("name", sorted(LAWS))
def test_analytic_gradient_matches_finite_differences(name: str) -> None:
    rng = np.random.default_rng(1)
    law = LAWS[name]
    pool = {
        "N": rng.uniform(1e7, 1e9, 7),
        "D": rng.uniform(1e8, 1e10, 7),
        "r": np.r_[0.0, rng.uniform(0, 1, 6)],
        "D_spec": rng.uniform(1e7, 1e9, 7),
        "k1": rng.uniform(1.5, 3, 7),
        "k2": rng.uniform(0.01, 0.5, 7),
    }
    obj = Objective(law, {c: pool[c] for c in law.columns}, rng.normal(1.0, 0.1, 7), delta=0.5)
    theta = obj.to_theta(law.grid_points()[[0, -1]]) + rng.normal(0, 0.1, (2, len(law.params)))
    _, grad = obj(theta)
    num = np.zeros_like(grad)
    for j in range(theta.shape[1]):
        step = np.zeros_like(theta)
        step[:, j] = 1e-6
        num[:, j] = (obj(theta + step)[0] - obj(theta - step)[0]) / 2e-6
    np.testing.assert_allclose(grad, num, rtol=1e-4, atol=1e-6 * np.abs(grad).max())


@pytest.fixture(scope="module")
def chinchilla_df():
    """8 training sizes x 10 token counts, plus a 2x larger held-out size; 0.5 % noise."""
    df = grid_frame(N=[*np.geomspace(2e7, 1e9, 8), 2e9], D=np.geomspace(1e9, 1e11, 10))
    return with_loss(df, "chinchilla", CHINCHILLA_TRUE, seed=3)


@pytest.fixture(scope="module")
def chinchilla_fit(chinchilla_df):
    return fit_law(
        "chinchilla", chinchilla_df, bootstrap=40, holdout=chinchilla_df.N.eq(chinchilla_df.N.max())
    )


def test_recovers_parameters_and_extrapolates(chinchilla_df, chinchilla_fit) -> None:
    res = chinchilla_fit
    held = chinchilla_df[chinchilla_df.N.eq(chinchilla_df.N.max())]
    pred = LAWS["chinchilla"].predict(res.params, {"N": held.N.to_numpy(), "D": held.D.to_numpy()})
    assert np.max(np.abs(pred / held.true_loss - 1)) < 0.01  # vs the noiseless truth
    assert res.heldout is not None and res.heldout["max_rel_error"] < 0.02  # vs the noisy points
    # tolerances from 10 seeds of this design: worst E 3.4 %, alpha 5.8 %, beta 3.1 %, A 26 %, B 15 %
    for name, tol in {"E": 0.05, "alpha": 0.10, "beta": 0.05, "A": 0.5, "B": 0.3}.items():
        assert res.params[name] == pytest.approx(CHINCHILLA_TRUE[name], rel=tol), name
    assert res.r2 > 0.99 and res.rmse < 0.05 and res.n_points == 80


def test_fit_beats_truth_objective(chinchilla_df, chinchilla_fit) -> None:
    train = chinchilla_df[chinchilla_df.N.lt(chinchilla_df.N.max())]
    law = LAWS["chinchilla"]
    obj = Objective(
        law, {"N": train.N.to_numpy(), "D": train.D.to_numpy()}, np.log(train.loss.to_numpy()), 1e-3
    )
    truth = obj.to_theta(np.array([CHINCHILLA_TRUE[k] for k in law.params]))[None]
    assert chinchilla_fit.huber <= obj(truth)[0][0] + 1e-12


def test_bootstrap_intervals_bracket_the_fit(chinchilla_fit) -> None:
    for name, (low, high) in chinchilla_fit.ci.items():
        assert low <= chinchilla_fit.params[name] * (1 + 1e-6) and high >= chinchilla_fit.params[name] * (
            1 - 1e-6
        )
        assert low < high
    doc = chinchilla_fit.to_json()
    assert set(doc["params"]) == {"E", "A", "B", "alpha", "beta"}
    assert doc["bootstrap"] == 40 and len(doc["points_held_out"]) == 10


def test_compute_optimal_closed_form_matches_numeric(chinchilla_fit) -> None:
    doc = chinchilla_fit.to_json()
    for budget in (1e20, 1e22):
        closed = chinchilla_compute_optimal(doc, budget)
        numeric = dcpt_compute_allocation(doc, compute=budget, r=0.0)
        assert closed["N"] == pytest.approx(numeric["N"], rel=1e-5)
        assert closed["N"] * closed["D"] * 6 == pytest.approx(budget)
        assert closed["loss"] <= float(law_loss(doc, N=closed["N"] * 1.1, D=budget / (6 * closed["N"] * 1.1)))


def test_no_interval_without_bootstrap_and_a_warning_below_three_sizes(chinchilla_df, caplog) -> None:
    two = chinchilla_df[chinchilla_df.N.isin(sorted(chinchilla_df.N.unique())[:2])]
    with caplog.at_level("WARNING"):
        res = fit_law("chinchilla", two, where="two.csv")
    doc = res.to_json()
    assert all(v is None for v in doc["ci"].values()) and "bootstrap_samples" not in doc
    assert doc["diagnostics"]["n_sizes"] == 2
    assert any("size exponent fitted from 2 model size(s)" in w for w in doc["diagnostics"]["warnings"])
    assert "two.csv" in caplog.text and "size exponent" in caplog.text
    full = fit_law("chinchilla", chinchilla_df).to_json()["diagnostics"]
    assert full["converged"] and full["n_sizes"] == 9 and not any("size exponent" in w for w in full["warnings"])
    assert full["fit_range"] == {"N_max": 2e9, "C_max": pytest.approx(6 * 2e9 * 1e11)}


def test_run_bootstrap_counts_groups_and_pairs_resamples(chinchilla_df) -> None:
    """Resampling whole runs (here: one group per size) with the same seed draws the same runs for two fits."""
    a = fit_law("chinchilla", chinchilla_df, bootstrap=30, groups=chinchilla_df.N, seed=5)
    b = fit_law("chinchilla", chinchilla_df, bootstrap=30, groups=chinchilla_df.N, seed=5)
    assert a.bootstrap_info["n_groups"] == 9 and a.bootstrap_info["failed"] == 0
    assert a.bootstrap_info["starts_per_resample"] == 4 and a.samples.shape == (30, 5)
    np.testing.assert_allclose(a.samples, b.samples)


def _three_runs(seed: int, runs_per_size: int = 1):
    """The demo's pretraining design: 3 sizes x 4 checkpoints per run, a 1 % loss offset per run."""
    rng = np.random.default_rng(seed)
    rows = [{"N": n, "D": d, "run": f"{n:g}-{k}", "offset": off}
            for n in (2.5e4, 1e5, 2.2e5) for k in range(runs_per_size) for off in [rng.normal(0, 0.01)]
            for d in (65536.0, 131072.0, 196608.0, 262144.0)]
    df = pd.DataFrame(rows)
    law = LAWS["chinchilla"]
    true = law.predict(CHINCHILLA_TRUE, {c: df[c].to_numpy(float) for c in law.columns})
    return df.assign(loss=true * np.exp(df["offset"] + rng.normal(0, 0.003, len(df)))).drop(columns="offset")


def test_one_run_per_size_needs_a_stated_run_noise_and_then_resamples_parametrically() -> None:
    """With one run per size, resampling runs cannot show their offsets: the fit says its intervals are not
    calibrated; with fit.run_noise the resamples are parametric (the fit + a fresh offset per run), and their
    spread of alpha matches the run noise (a larger noise, a wider interval). Coverage: bench/bench_coverage.py."""
    df = _three_runs(0)
    plain = fit_law("chinchilla", df.drop(columns="run"), bootstrap=60, groups=df["run"], seed=1)
    doc = plain.to_json()
    assert not doc["bootstrap_info"]["parametric"]
    assert any("intervals not calibrated" in w for w in doc["diagnostics"]["warnings"])
    widths = []
    for noise in (0.005, 0.02):
        res = fit_law("chinchilla", df.drop(columns="run"), bootstrap=60, groups=df["run"], seed=1, run_noise=noise)
        info = res.to_json()
        assert info["bootstrap_info"]["parametric"] and info["bootstrap_info"]["run_noise"] == noise
        assert "parametric" in info["bootstrap_info"]["method"]
        assert not any("intervals not calibrated" in w for w in info["diagnostics"]["warnings"])
        assert res.ci["alpha"][0] <= res.params["alpha"] <= res.ci["alpha"][1]
        widths.append(np.log(res.ci["alpha"][1] / res.ci["alpha"][0]))
    assert widths[1] > 1.5 * widths[0]
    # a stated noise is simulated however many runs a size has (the design stays fixed); without it, two runs per
    # size have their noise estimated (resampling them would halve their variance, issue 23), and from four runs
    # per size on the runs are resampled within each size
    for runs in (2, 4):
        many = _three_runs(0, runs_per_size=runs)
        res = fit_law("chinchilla", many.drop(columns="run"), bootstrap=30, groups=many["run"], seed=1,
                      run_noise=0.01)
        assert res.bootstrap_info["parametric"] and res.bootstrap_info["run_noise_source"] == "stated"
        res = fit_law("chinchilla", many.drop(columns="run"), bootstrap=30, groups=many["run"], seed=1)
        assert res.bootstrap_info["run_noise_source"] == ("estimated" if runs == 2 else "resampled")
        assert res.bootstrap_info["parametric"] == (runs == 2)
    assert res.bootstrap_info["stratified_by"] == "N"
