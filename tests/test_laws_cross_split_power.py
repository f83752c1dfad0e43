"""Cross-domain D-CPT, split-law selection and the power law across sizes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from law_synth import CROSS_TRUE, cross_domain_points, split_points

from cpt_scaling.fit.fitting import fit_law
from cpt_scaling.fit.optimize import huber
from cpt_scaling.fit.validation import leave_domains_out
from cpt_scaling.laws import LAWS


def _extrapolation_error(name: str, df: pd.DataFrame, params: dict[str, float]) -> float:
    held = df[df.N.eq(df.N.max())]
    law = LAWS[name]
    pred = law.predict({**law.fixed, **params}, {c: held[c].to_numpy() for c in law.columns})
    return float(np.max(np.abs(pred / held.true_loss - 1)))


@pytest.fixture(scope="module")
def cross_df() -> pd.DataFrame:
    return cross_domain_points(seed=0)


def test_cross_domain_recovery(cross_df) -> None:
    res = fit_law("cross_domain", cross_df, holdout=cross_df.N.eq(cross_df.N.max()))
    assert _extrapolation_error("cross_domain", cross_df, res.params) < 0.01
    for name, tol in {"mu": 0.15, "w2": 0.15, "F": 0.2, "eta": 0.1, "beta": 0.1}.items():
        assert res.params[name] == pytest.approx(CROSS_TRUE[name], rel=tol), name
    assert res.to_json()["params"]["w1"] == 1.0


def test_leave_domains_out(cross_df) -> None:
    small = cross_df[cross_df.N.lt(cross_df.N.max())]
    out = leave_domains_out(small, "cross_domain")
    assert out["n_splits"] == 6 and {s["held_out"] for s in out["splits"]} == {
        "code",
        "math",
        "law",
        "med",
        "fin",
        "chem",
    }
    assert out["mean_rel_error"] < 0.02


def test_split_selection_prefers_generating_form() -> None:
    df = split_points("split_effective", seed=1)
    res = fit_law("split", df, holdout=df.N.eq(df.N.max()))
    assert res.law == "split_effective" and res.selection is not None
    assert res.selection["chosen"] == "split_effective"
    assert _extrapolation_error("split_effective", df, res.params) < 0.01
    assert res.reconstructed


def test_split_separable_recovery() -> None:
    df = split_points("split_separable", seed=2)
    res = fit_law("split_separable", df, holdout=df.N.eq(df.N.max()))
    assert _extrapolation_error("split_separable", df, res.params) < 0.01
    # the offset s (finite at D' = 0) trades off against gamma over D' >= 1e7: 10 % instead of 5 %
    assert res.params["gamma"] == pytest.approx(0.35, rel=0.10)


def test_powerlaw_recovery() -> None:
    rng = np.random.default_rng(0)
    n = np.geomspace(1e8, 1e10, 8)
    y = 120.0 * n**-0.17 * np.exp(rng.normal(0, 0.005, n.size))
    df = pd.DataFrame({"N": n, "loss": y})
    res = fit_law("powerlaw", df, holdout=df.N.eq(df.N.max()))
    assert res.params["p"] == pytest.approx(-0.17, rel=0.05)
    assert (
        abs(LAWS["powerlaw"].predict(res.params, {"N": np.array([1e10])})[0] / (120.0 * 1e10**-0.17) - 1)
        < 0.01
    )


def test_cross_domain_leave_one_out_is_invariant_to_the_unit_of_k2() -> None:
    """k2 measured per token instead of per billion tokens (x 1e-7 here) must not change the fit: w2 starts on a
    grid scaled to the data, so every split reaches the same minimum of its objective (1e-6 relative). Fitted on
    three domains, w2 is barely pinned (a flat valley of equal objective), so the held-out errors, read off
    different points of that valley, agree only roughly (within 25 %)."""
    df = cross_domain_points(seed=3)
    df = df[df.N.lt(df.N.max()) & df.domain.isin(["code", "math", "law", "med"])]
    runs = {}
    for unit in (1.0, 1e-7):
        data = df.assign(k2=df.k2 * unit)
        runs[unit] = (data, leave_domains_out(data, "cross_domain"))
    law = LAWS["cross_domain"]
    objectives = {}
    for unit, (data, result) in runs.items():
        assert result["mean_rel_error"] < 0.05
        for split in result["splits"]:
            train = data[data.domain.ne(split["held_out"])]
            pred = law.predict(split["params"], {c: train[c].to_numpy(float) for c in law.columns})
            objectives[unit, split["held_out"]] = huber(np.log(pred) - np.log(train["loss"].to_numpy()), 1e-3).sum()
    for dom in ("code", "math", "law", "med"):
        assert objectives[1e-7, dom] == pytest.approx(objectives[1.0, dom], rel=1e-6), dom
    assert runs[1e-7][1]["mean_rel_error"] == pytest.approx(runs[1.0][1]["mean_rel_error"], rel=0.25)
