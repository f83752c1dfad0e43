"""`cpt-scaling next`: the ensemble update against conjugate-Gaussian truth, the CLI end to end on a small synthetic
D-CPT fit (budget respected, prices from the cost model), and the refusals (exit 2, one line, inputs untouched)."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cpt_scaling.cli.main import main
from cpt_scaling.cost import model as cost_model
from cpt_scaling.fit import candidates, decision_spec, design_noise, ensemble_weights, proposal
from cpt_scaling.fit.fitting import fit_law
from cpt_scaling.laws import LAWS
from cpt_scaling.plan.next_runs import cost_assumptions

L3 = {"E": 2.0, "A": 60.0, "B": 40.0, "C": 0.3, "alpha": 0.34, "beta": 0.30, "gamma": 0.5, "eta": 0.6,
      "epsilon": 0.05}
L3_GENERAL = {**L3, "C": 0.1, "B": 30.0}


# ------------------------------------------------------------------------------------------- the ensemble update


def test_importance_weights_hand_made() -> None:
    ll = np.array([[0.0, math.log(2.0), -np.inf], [1000.0, 1000.0, 1000.0]])
    w = ensemble_weights.importance_weights(ll)
    assert np.allclose(w[0], [1 / 3, 2 / 3, 0.0]) and np.allclose(w[1], 1 / 3)  # stable at large log-likelihoods
    base = np.array([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    wb = ensemble_weights.importance_weights(np.zeros((2, 3)), base)
    assert np.allclose(wb, [[0.5, 0.0, 0.5], [0.5, 0.5, 0.0]])


def test_reweighting_matches_the_conjugate_gaussian_posterior() -> None:
    """Prior samples θ ~ N(0, 1); a run of m = 4 observations θ + u + e (u: run offset sd 0.3, e: sd 0.5) all equal
    to y. Exact posterior: precision 1 + 1ᵀΣ⁻¹1, mean (1ᵀΣ⁻¹1·y)/precision."""
    rng = np.random.default_rng(0)
    theta = rng.normal(0.0, 1.0, 40000)
    m, s_run, s_pt, y = 4, 0.3, 0.5, 1.0
    cov = design_noise.noise_cov(m, s_run, s_pt)
    info = float(np.ones(m) @ np.linalg.solve(cov, np.ones(m)))
    post_var, post_mean = 1.0 / (1.0 + info), info * y / (1.0 + info)
    res = y - theta[:, None] * np.ones((1, m))
    ll = design_noise.run_loglik(res, s_run, s_pt)[None, :]
    exact = -0.5 * np.einsum("gi,ij,gj->g", res, np.linalg.inv(cov), res)
    assert np.allclose(ll[0] - ll[0].max(), exact - exact.max())  # the compound-symmetry shortcut is exact
    w = ensemble_weights.importance_weights(ll)
    mean = float(w[0] @ theta)
    var = float(w[0] @ (theta - mean) ** 2)
    assert abs(mean - post_mean) < 0.02 and abs(var / post_var - 1.0) < 0.08
    iv = ensemble_weights.weighted_interval(theta, w)[0]
    assert abs((iv[1] - iv[0]) / (2 * 1.96 * math.sqrt(post_var)) - 1.0) < 0.08
    uniform = ensemble_weights.weighted_interval(theta, np.full((1, theta.size), 1.0 / theta.size))[0]
    assert np.allclose(uniform, np.percentile(theta, [2.5, 97.5]), atol=0.01)
    # the linear-Gaussian (ensemble Kalman) variance ratio of the same observation
    ratio = ensemble_weights.linear_variance_ratio(theta, theta[:, None] * np.ones((1, m)), cov)
    assert abs(ratio / post_var - 1.0) < 0.05


# ------------------------------------------------------------------------------------------- the CLI end to end


def _points(params: dict[str, float], rng: np.random.Generator, general: bool = False) -> pd.DataFrame:
    rows = []
    for i, (n, r, d) in enumerate(itertools.product((2.5e4, 1e5), (0.0, 0.5, 1.0), (32768.0, 65536.0))):
        off = rng.normal(0.0, 0.01)
        for k in range(4):
            rows.append({"run": f"run{i}", "N": n, "D": d / 2 ** (3 - k), "ratio": r, "r": 1 - r if general else r,
                         "noise": off + rng.normal(0.0, 0.003)})
    df = pd.DataFrame(rows)
    law = LAWS["dcpt"]
    true = law.predict(params, {c: df[c].to_numpy(float) for c in law.columns})
    return df.assign(loss=true * np.exp(df.pop("noise")), target="general" if general else "domain")


def _fit(df: pd.DataFrame) -> dict:
    return fit_law("dcpt", df[["N", "D", "r", "loss"]], bootstrap=60, groups=df["run"], coarse=True,
                   bootstrap_starts=2, seed=0).to_json()


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("next")
    rng = np.random.default_rng(3)
    dom, gen = _points(L3, rng), _points(L3_GENERAL, rng, general=True)
    law, glaw = _fit(dom), _fit(gen)
    paths = {"law": tmp / "law.json", "points": tmp / "points.csv", "study": tmp / "study.json",
             "study_points": tmp / "study_points.csv", "candidates": tmp / "candidates.csv",
             "nobootstrap": tmp / "law0.json"}
    paths["law"].write_text(json.dumps(law))
    dom.to_csv(paths["points"], index=False)
    base_general = float(LAWS["dcpt"].predict(L3_GENERAL, {"N": [1e5], "D": [65536.0], "r": [1.0]})[0])
    study = {"study": "dcpt", "law": "dcpt", "domain_loss": law, "general_loss": glaw,
             "base": {"s": {"N": 1e5, "general_loss": base_general}}}
    paths["study"].write_text(json.dumps(study))
    pd.concat([dom, gen]).to_csv(paths["study_points"], index=False)
    cands = pd.DataFrame([{"name": f"n{n:g}", "N": n, "D": d, "r": r}
                          for n, r, d in itertools.product((2.5e4, 2.2e5), (0.1, 0.25, 0.75), (65536.0, 262144.0))])
    shaped = pd.DataFrame([{"name": "shaped", "n_layers": 4, "d_model": 64, "n_heads": 4, "d_ff": 256, "D": 131072.0,
                            "r": 0.1}])
    pd.concat([cands, shaped]).to_csv(paths["candidates"], index=False)
    paths["nobootstrap"].write_text(json.dumps({k: v for k, v in law.items() if k != "bootstrap_samples"}))
    return paths


def _args(sweep: dict[str, Path], *extra: str, decision: str = "usage2", budget: float = 2e-8) -> list[str]:
    return ["next", "--law", str(sweep["law"]), "--points", str(sweep["points"]), "--candidates",
            str(sweep["candidates"]), "--decision", decision, "--budget", f"{budget:g}", "--simulations", "64",
            "--domain-tokens", "32768", *extra]


def test_next_usage2_end_to_end(sweep: dict[str, Path], tmp_path: Path, capsys) -> None:
    out = tmp_path / "next.csv"
    budget = 2e-8
    assert main(_args(sweep, "--out", str(out), budget=budget)) == 0
    printed = capsys.readouterr().out
    assert "usage 2" in printed and "ranking of single candidates" in printed
    chosen = pd.read_csv(out)
    assert len(chosen) >= 1 and chosen["gpu_hours"].sum() <= budget * (1 + 1e-12)
    assert np.allclose(chosen["cumulative_gpu_hours"], chosen["gpu_hours"].cumsum())
    assert (np.diff(chosen["expected_width"]) < 0).all() and (chosen["width_reduction"] > 0).all()
    cost = cost_assumptions()
    for row in chosen.itertuples():
        if row.flops_method == "6*N*D":
            assert math.isclose(row.gpu_hours, 6 * row.N * row.D / (cost["peak_flops_per_gpu"] *
                                                                    cost["expected_mfu"]) / 3600)
    # the shape row is priced by the cost model's per-token FLOPs (seq_len 128, vocabulary 2048 by default)
    cands = candidates.read_candidates(pd.read_csv(sweep["candidates"]), "c", cost)
    shaped = next(c for c in cands if c.name.startswith("shaped"))
    size = {"n_layers": 4, "d_model": 64, "n_heads": 4, "d_ff": 256}
    assert cost_model.size_non_embedding_params(size) == shaped.N
    assert math.isclose(shaped.flops, 131072 * cost_model.size_flops_per_token(size, 128, 2048))


def test_next_budget_and_config_cost(sweep: dict[str, Path], tmp_path: Path, capsys) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("cost: {peak_flops_per_gpu: 1.0e+14, expected_mfu: 0.5}\n")
    small = tmp_path / "small.csv"
    assert main(_args(sweep, "--out", str(small), "--configfile", str(cfg), budget=2e-7)) == 0
    chosen = pd.read_csv(small)
    row = chosen.iloc[0]
    assert math.isclose(row["gpu_hours"], 6 * row["N"] * row["D"] / 5e13 / 3600)
    assert chosen["gpu_hours"].sum() <= 2e-7
    # a budget below every candidate's price chooses nothing, and says so
    none = tmp_path / "none.csv"
    assert main(_args(sweep, "--out", str(none), budget=1e-15)) == 0
    assert "no affordable candidate" in capsys.readouterr().out and len(pd.read_csv(none)) == 0


def test_next_usage1_and_usage3_from_the_study_json(sweep: dict[str, Path], tmp_path: Path) -> None:
    for decision, extra in (("usage1", ["--N", "1e5"]), ("usage3", ["--ratio", "0.5"])):
        out = tmp_path / f"{decision}.csv"
        args = ["next", "--law", str(sweep["study"]), "--points", str(sweep["study_points"]), "--candidates",
                str(sweep["candidates"]), "--decision", decision, "--budget", "5e-8", "--simulations", "64",
                "--out", str(out), *extra]
        assert main(args) == 0
        chosen = pd.read_csv(out)
        assert len(chosen) >= 1 and chosen["gpu_hours"].sum() <= 5e-8 and (chosen["width_reduction"] > 0).all()


def test_next_linear_method_agrees_on_the_direction(sweep: dict[str, Path]) -> None:
    """Both estimators see the same thing: one more run never widens the expected interval; the cheap
    low-ratio runs near the usage-2 optimum (r ≈ 0.13) shrink it more than a high-ratio run."""
    cost = cost_assumptions()
    law = json.loads(sweep["law"].read_text())
    pts = pd.read_csv(sweep["points"])
    cands = candidates.read_candidates(pd.DataFrame([{"N": 2.5e4, "D": 262144.0, "r": r} for r in (0.1, 0.75)]),
                                      "c", cost)
    spec = decision_spec.DecisionSpec("usage2", N=1e5, domain_tokens=32768.0)
    for method in proposal.METHODS:
        prop = proposal.propose({"domain": law}, {"domain": pts}, cands, spec, 1.0, simulations=128, method=method)
        rank = prop.ranking.set_index("candidate")["expected_width"]
        assert (rank <= prop.current_width + 1e-12).all()
        assert rank.iloc[0] < rank.iloc[1] or prop.ranking["candidate"].iloc[0].endswith("r0.1-D262144")


def test_next_out_carries_current_and_expected_intervals(sweep: dict[str, Path], tmp_path: Path, capsys) -> None:
    """CSV and JSON --out: the current interval on every chosen row, the expected interval after each, nested inside
    it about the ensemble's median and narrowing run by run; the calibration is printed and recorded."""
    csv, js = tmp_path / "next.csv", tmp_path / "next.json"
    assert main(_args(sweep, "--out", str(csv))) == 0
    assert "calibration: expected width = current width x" in capsys.readouterr().out
    assert main(_args(sweep, "--out", str(js))) == 0
    chosen, doc = pd.read_csv(csv), json.loads(js.read_text())
    cur = doc["current"]
    assert cur["lo"] < cur["median"] < cur["hi"] and math.isclose(cur["width"], cur["hi"] - cur["lo"])
    assert doc["calibration"]["kappa"] == proposal.CALIBRATION and doc["calibration"]["source"]
    assert len(chosen) == len(doc["chosen"]) >= 1
    assert np.allclose(chosen["current_lo"], cur["lo"]) and np.allclose(chosen["current_hi"], cur["hi"])
    assert np.allclose(chosen["expected_hi"] - chosen["expected_lo"], chosen["expected_width"])
    assert (chosen["expected_lo"] >= cur["lo"]).all() and (chosen["expected_hi"] <= cur["hi"]).all()
    assert (np.diff(chosen["expected_width"]) < 0).all()
    assert [r["candidate"] for r in doc["chosen"]] == list(chosen["candidate"])


def test_weighted_variance_is_not_raised_by_uninformative_weights() -> None:
    """The identity the expected width is built on (law of total variance): under weights whose mean is the prior's
    (here random, exchangeable, independent of the values) the expected weighted variance is the unweighted one
    less the variance of the weighted mean, so it is never raised."""
    rng = np.random.default_rng(0)
    values = rng.standard_normal(200)
    uniform = np.full((1, values.size), 1.0 / values.size)
    for sd in (0.1, 0.7, 2.0):
        noisy = ensemble_weights.importance_weights(rng.normal(0.0, sd, (400, values.size)))
        mean_var = np.mean(ensemble_weights.weighted_variance(values, noisy))
        expected = ensemble_weights.weighted_variance(values, uniform)[0] - np.var(noisy @ values)
        assert mean_var <= ensemble_weights.weighted_variance(values, uniform)[0]
        assert abs(mean_var - expected) < 0.05 * expected


def test_next_never_scores_a_run_as_widening(sweep: dict[str, Path]) -> None:
    """Duplicates of the runs already fitted, on several seeds: every candidate's expected width is at most the
    current width (bootstrap estimator), and some affordable run is still proposed."""
    law = json.loads(sweep["law"].read_text())
    pts = pd.read_csv(sweep["points"])
    runs = pts.drop_duplicates("run")[["N", "D", "r"]]
    cands = candidates.read_candidates(runs.assign(name=[f"dup{i}" for i in range(len(runs))]), "c",
                                       cost_assumptions())
    spec = decision_spec.DecisionSpec("usage2", N=1e5, domain_tokens=32768.0)
    for seed in range(3):
        prop = proposal.propose({"domain": law}, {"domain": pts}, cands, spec, 1.0, simulations=64, seed=seed)
        assert (prop.ranking["expected_width"] <= prop.current_width).all()
        assert len(prop.chosen) >= 1


def test_next_proposes_where_the_old_estimator_stalled() -> None:
    """A recorded stall: `bench_next_runs.py --rounds`, seed 3, with the estimator used before (mean weighted
    percentile widths): after 11 rounds (63 of the 81 grid runs, these points) it scored all 18 remaining runs as
    widening the interval (0.0480 against 0.0478) and proposed nothing, while the interval was 1.2x the full grid's.
    On the same fit and simulations the variance-ratio estimator scores none as widening and proposes runs."""
    pts = pd.read_csv(Path(__file__).parent / "fixtures" / "next_stalled_points.csv")
    law = fit_law("dcpt", pts[["N", "D", "r", "loss"]], bootstrap=100, groups=pts["run"], seed=3).to_json()
    grid = itertools.product((2.5e4, 1e5, 2.2e5), np.linspace(0.0, 1.0, 9), (32768.0, 65536.0, 131072.0))
    done = pts.groupby("run").agg(N=("N", "first"), D=("D", "max"), r=("r", "first")).to_numpy()
    rest = [(n, d, r) for n, r, d in grid if not np.isclose(done, (n, d, r)).all(axis=1).any()]
    assert len(rest) == 18
    cost = cost_assumptions()
    cands = candidates.read_candidates(pd.DataFrame([{"N": n, "D": d, "r": r} for n, d, r in rest]), "rest", cost)
    budget = 0.05 * sum(candidates.gpu_hours(6.0 * n * d, cost) for n, r, d in itertools.product(
        (2.5e4, 1e5, 2.2e5), np.linspace(0.0, 1.0, 9), (32768.0, 65536.0, 131072.0)))
    spec = decision_spec.DecisionSpec("usage2", N=2.2e5, domain_tokens=32768.0)
    prop = proposal.propose({"domain": law}, {"domain": pts}, cands, spec, budget, simulations=128, seed=14)
    assert (prop.ranking["expected_width"] <= prop.current_width).all()
    assert len(prop.chosen) >= 1 and (prop.chosen["width_reduction"] > 0).all()


def test_decide_writes_usages_with_intervals(sweep: dict[str, Path], tmp_path: Path, capsys) -> None:
    """`decide` on a D-CPT study JSON: usages 1-3 with lo <= value <= hi, CSV and JSON alike; it refuses to write
    over its inputs."""
    csv, js = tmp_path / "decisions.csv", tmp_path / "decisions.json"
    args = ["decide", "--law", str(sweep["study"]), "--points", str(sweep["study_points"]), "--domain-tokens",
            "32768"]
    assert main([*args, "--out", str(csv)]) == 0 and main([*args, "--out", str(js)]) == 0
    table = pd.read_csv(csv)
    assert set(table["usage"]) == {1, 2, 3}
    ok = table.dropna(subset=["value", "lo", "hi"])
    assert len(ok) >= 3 and (ok["lo"] <= ok["value"] + 1e-12).all() and (ok["value"] <= ok["hi"] + 1e-12).all()
    rows = json.loads(js.read_text())["decisions"]
    assert [r["usage"] for r in rows] == list(table["usage"])
    assert np.allclose([r["value"] for r in rows], table["value"])
    before = sweep["study"].read_bytes()
    assert main([*args, "--out", str(sweep["study"])]) == 2
    assert "overwrite" in capsys.readouterr().err and sweep["study"].read_bytes() == before


def test_the_proposer_lives_in_fit() -> None:
    """plan/next_runs holds only the workflow job; the proposer's pieces are fit modules."""
    from cpt_scaling.plan import next_runs

    assert proposal.propose.__module__ == "cpt_scaling.fit.proposal"
    assert next_runs.propose is proposal.propose
    assert candidates.read_candidates.__module__ == "cpt_scaling.fit.candidates"
    own = {n for n, v in vars(next_runs).items() if callable(v) and getattr(v, "__module__", "") == next_runs.__name__}
    assert own == {"cost_assumptions", "_size_columns", "workflow_job", "propose_for_sweep"}


# ------------------------------------------------------------------------------------------- refusals


def _refused(args: list[str], capsys, *words: str) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cpt-scaling: error:") and len(err.splitlines()) == 1
    for w in words:
        assert w in err, err


def test_next_refusals(sweep: dict[str, Path], tmp_path: Path, capsys) -> None:
    before = {k: p.read_bytes() for k, p in sweep.items()}
    for key in ("law", "points", "candidates"):
        _refused(_args(sweep, "--out", str(sweep[key])), capsys, "--out would overwrite", str(sweep[key]))
    for decision in ("split", "sger"):  # not offered: argparse refuses, listing the supported ones
        with pytest.raises(SystemExit) as info:
            main(_args(sweep, decision=decision))
        assert info.value.code == 2
        assert "invalid choice" in capsys.readouterr().err
    _refused(_args(sweep, decision="usage1"), capsys, str(sweep["law"]), "general-loss fit")
    args = _args(sweep)
    args[args.index("--law") + 1] = str(sweep["nobootstrap"])
    _refused(args, capsys, str(sweep["nobootstrap"]), "bootstrap")
    bad = tmp_path / "bad.csv"
    pd.DataFrame([{"N": 1e5, "r": 0.5}]).to_csv(bad, index=False)
    args = _args(sweep)
    args[args.index("--candidates") + 1] = str(bad)
    _refused(args, capsys, str(bad), "'D'")
    pd.DataFrame([{"N": 1e5, "D": 1e5, "r": 1.5}]).to_csv(bad, index=False)
    _refused(args, capsys, str(bad), "row 1", "r must lie in [0, 1]")
    _refused(_args(sweep, budget=-1.0), capsys, "--budget")
    out = tmp_path / "never.csv"
    args = _args(sweep, "--out", str(out))
    args[args.index("--domain-tokens"):args.index("--domain-tokens") + 2] = []
    _refused(args, capsys, "--domain-tokens")
    assert not out.exists()
    assert before == {k: p.read_bytes() for k, p in sweep.items()}
