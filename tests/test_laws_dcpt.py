"""D-CPT law candidates: synthetic recovery (domain and general loss), validation protocols."""

from __future__ import annotations

import numpy as np
import pytest
from law_synth import DCPT_TRUE, grid_frame, with_loss

from cpt_scaling.fit.fitting import fit_law
from cpt_scaling.fit.validation import holdout_largest_model, holdout_largest_tokens, ratio_cross_validation
from cpt_scaling.laws import LAWS


def _design():
    """5 training sizes + a 2x larger held-out size, 5 token counts, 9 ratios (270 points)."""
    return grid_frame(
        N=[*np.geomspace(5e7, 1e9, 5), 2e9], D=np.geomspace(1e8, 1e10, 5), r=np.linspace(0.1, 0.9, 9)
    )


def _extrapolation_error(name: str, df, params) -> float:
    held = df[df.N.eq(df.N.max())]
    law = LAWS[name]
    pred = law.predict(params, {c: held[c].to_numpy() for c in law.columns})
    return float(np.max(np.abs(pred / held.true_loss - 1)))


def test_l3_domain_loss_recovery() -> None:
    df = with_loss(_design(), "dcpt", DCPT_TRUE, seed=1)
    res = fit_law("dcpt", df, holdout=df.N.eq(df.N.max()))
    assert _extrapolation_error("dcpt", df, res.params) < 0.01
    # identifiable at 0.5 % noise in this design: the exponents of N, D and the ratio-data coupling eta.
    # E, A, B, C, gamma, epsilon trade off against each other (C/(r+eps)^gamma is nearly flat in r) and are
    # not checked.
    for name, tol in {"alpha": 0.10, "beta": 0.10, "eta": 0.10}.items():
        assert res.params[name] == pytest.approx(DCPT_TRUE[name], rel=tol), name
    doc = res.to_json()
    assert set(doc["params"]) == {"E", "A", "B", "C", "alpha", "beta", "gamma", "eta", "epsilon"}
    assert doc["r2"] > 0.99


def test_l3_general_loss_with_complement_ratio() -> None:
    """The same form fits the general loss of the same runs with r = 1 - domain ratio."""
    general_true = {
        "E": 1.9,
        "A": 250.0,
        "B": 80.0,
        "C": 0.12,
        "alpha": 0.3,
        "beta": 0.25,
        "gamma": 0.8,
        "eta": 0.4,
        "epsilon": 0.08,
    }
    runs = _design()
    runs["r"] = 1.0 - runs["r"]  # general-corpus ratio
    df = with_loss(runs, "dcpt", general_true, seed=2)
    res = fit_law("dcpt", df, holdout=df.N.eq(df.N.max()))
    assert _extrapolation_error("dcpt", df, res.params) < 0.01


@pytest.mark.parametrize("name", ["dcpt_l1", "dcpt_l2", "dcpt_l4", "dcpt_l5"])
def test_reconstructed_candidates_recover(name: str) -> None:
    law = LAWS[name]
    assert law.reconstructed and "reconstructed" in (law.doc or "").lower()
    true = {k: DCPT_TRUE[k] for k in law.params}
    df = with_loss(_design(), name, true, seed=4)
    res = fit_law(name, df, holdout=df.N.eq(df.N.max()), coarse=True)
    assert _extrapolation_error(name, df, res.params) < 0.01
    assert res.params["beta"] == pytest.approx(true["beta"], rel=0.15)


def test_validation_protocols_report_heldout_error() -> None:
    df = with_loss(
        grid_frame(N=[6e7, 2e8, 6e8], D=np.geomspace(1e8, 1e10, 3), r=np.linspace(0.1, 0.9, 9)),
        "dcpt",
        DCPT_TRUE,
        seed=5,
    )
    cv = ratio_cross_validation(df, "dcpt")
    assert cv["protocol"] == "ratio_cv_7_of_9" and cv["n_splits"] == 36
    assert all(len(s["held_out"]) == 2 for s in cv["splits"])
    assert cv["mean_rel_error"] < 0.01
    big_n = holdout_largest_model(df, "dcpt", coarse=True)
    big_d = holdout_largest_tokens(df, "dcpt", coarse=True)
    assert big_n["splits"][0]["heldout"]["n_points"] == 27 and big_n["max_rel_error"] < 0.05
    assert big_d["splits"][0]["heldout"]["n_points"] == 27 and big_d["max_rel_error"] < 0.05
