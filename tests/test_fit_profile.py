"""Profile-likelihood intervals where E sits at its floor (issue 23, must-show 4): coverage with known truth, the
fit's union with the percentile interval, and decisions widened along the profile. The bench with the bootstrap
around it: bench/bench_coverage.py."""

from __future__ import annotations

import numpy as np
import pandas as pd
from law_synth import CHINCHILLA_TRUE

from cpt_scaling.fit import decisions
from cpt_scaling.fit.fitting import E_FLOOR_SHARE, fit_law
from cpt_scaling.fit.optimize import Objective
from cpt_scaling.fit.profile import UNION, profile_interval
from cpt_scaling.laws import LAWS

SIZES = (2.5e4, 1e5, 2.2e5)
LAW = LAWS["chinchilla"]


def _sweep(seed: int, truth: dict[str, float], base_sd: float = 0.01, run_sd: float = 0.01) -> pd.DataFrame:
    """One pretraining run per size (4 checkpoints), each size with its base model's offset and the run's own."""
    rng = np.random.default_rng(seed)
    rows = []
    for n in SIZES:
        offset = rng.normal(0.0, base_sd) + rng.normal(0.0, run_sd)
        rows += [{"N": n, "D": 65536.0 * j, "run": f"{n:g}", "noise": offset + rng.normal(0.0, 0.003)}
                 for j in range(1, 5)]
    df = pd.DataFrame(rows)
    true = LAW.predict(truth, {c: df[c].to_numpy(float) for c in LAW.columns})
    return df.assign(loss=true * np.exp(df["noise"])).drop(columns="noise")


def test_profile_interval_covers_the_truth_at_its_level() -> None:
    """Three sizes whose runs carry a 1 % base and a 1 % run offset (the size terms absorb both): the 95 % profile
    set of α, with the stated noise, covers the true α in 0.85-1.00 of 40 seeds (binomial sd 0.034 at 0.95), is
    not the whole parameter range, and every parameter set it keeps lies in the likelihood region."""
    truth = {**CHINCHILLA_TRUE, "A": 60.0, "B": 120.0}
    hits, widths, open_ends = [], [], 0
    for seed in range(40):
        df = _sweep(seed, truth)
        obj = Objective(LAW, {c: df[c].to_numpy(float) for c in LAW.columns}, np.log(df["loss"].to_numpy(float)),
                        1e-3)
        theta = obj.to_theta(np.array([truth[k] for k in LAW.params]))
        prof = profile_interval(obj, theta, "alpha", df["run"].to_numpy(), df["N"].to_numpy(float),
                                base_noise=0.01, run_noise=0.01)
        assert prof is not None
        lo, hi = prof.interval
        hits.append(lo <= truth["alpha"] <= hi)
        widths.append(hi - lo)
        open_ends += any(prof.open_ends)
        alphas = prof.values[:, LAW.params.index("alpha")]
        assert lo - 1e-9 <= alphas.min() and alphas.max() <= hi + 1e-9
    assert 0.85 <= np.mean(hits) <= 1.0, np.mean(hits)
    assert np.median(widths) < 3.0 and open_ends < 20


def test_fit_with_E_at_its_floor_reports_the_union_and_decisions_follow() -> None:
    """Points from a law with no irreducible loss: the fit puts E at its floor, so its α interval is the union of
    the percentile interval and the profile set (``bootstrap_info.interval``), the law JSON keeps the profile, and
    the compute-optimal N's interval covers its values along the profile; a fit whose E is identified keeps the
    percentile interval."""
    df = _sweep(1, {**CHINCHILLA_TRUE, "E": 1e-9, "A": 60.0, "B": 120.0})
    res = fit_law("chinchilla", df.drop(columns="run"), bootstrap=30, groups=df["run"], seed=1,
                  run_noise=0.01, base_noise=0.01)
    assert res.params["E"] < E_FLOOR_SHARE * df["loss"].min()
    doc = res.to_json()
    assert res.bootstrap_info["interval"] == UNION and res.bootstrap_info["profiled"] == ["alpha"]
    prof = doc["profile"][0]
    percentile = np.quantile(res.samples[:, LAW.params.index("alpha")], [0.025, 0.975])
    assert res.ci["alpha"][0] == min(percentile[0], prof["interval"][0])
    assert res.ci["alpha"][1] == max(percentile[1], prof["interval"][1])
    compute = 6.0 * 1e5 * 262144.0
    with_prof = decisions.chinchilla_compute_optimal(doc, compute)
    alone = decisions.chinchilla_compute_optimal({k: v for k, v in doc.items() if k != "profile"}, compute)
    along = [decisions.chinchilla_compute_optimal({"law": "chinchilla", "params": dict(zip(prof["params"], row,
                                                                                            strict=True))},
                                                  compute)["N"] for row in prof["values"]]
    assert with_prof["interval_method"] == UNION and "interval_method" not in alone
    assert with_prof["N_lo"] == min(alone["N_lo"], min(along)) and with_prof["N_hi"] == max(alone["N_hi"], max(along))

    identified = _sweep(2, {**CHINCHILLA_TRUE, "A": 60.0, "B": 120.0}, base_sd=0.0, run_sd=0.0)
    res = fit_law("chinchilla", identified.drop(columns="run"), bootstrap=30, groups=identified["run"], seed=1,
                  run_noise=0.01, base_noise=0.01)
    assert res.params["E"] > E_FLOOR_SHARE * identified["loss"].min()
    assert res.bootstrap_info["interval"] == "percentile" and "profile" not in res.to_json()
