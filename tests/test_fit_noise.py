"""What a size's runs share (issue 23): variance components of a fit's residuals, hierarchical resampling, the
per-fit choice of resampling, and fit.base_noise / --base-noise. Coverage with known truth: bench/bench_coverage.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from law_synth import CHINCHILLA_TRUE

from cpt_scaling.cli.main import main
from cpt_scaling.config.load import normalise_config, read_config_file
from cpt_scaling.core.errors import InputError
from cpt_scaling.fit.fitting import fit_law
from cpt_scaling.fit.noise import Design, hierarchical_losses, variance_components
from cpt_scaling.laws import LAWS
from cpt_scaling.studies import specialization

REPO = Path(__file__).resolve().parents[1]
SIZES = (2.5e4, 1e5, 2.2e5)


def _sweep(seed: int, runs_per_size: int, sizes: tuple[float, ...] = SIZES, base_sd: float = 0.0,
           run_sd: float = 0.01) -> pd.DataFrame:
    """Chinchilla points: per size a shared (base model) offset, per run an offset and its own token budget,
    4 checkpoints per run with a small per-point term."""
    rng = np.random.default_rng(seed)
    rows = []
    for n in sizes:
        base = rng.normal(0.0, base_sd)
        for k in range(runs_per_size):
            offset = base + rng.normal(0.0, run_sd)
            budget = 131072.0 * (k + 1)
            rows += [{"N": n, "D": budget * j / 4, "run": f"{n:g}-{k}", "noise": offset + rng.normal(0.0, 0.003)}
                     for j in range(1, 5)]
    df = pd.DataFrame(rows)
    law = LAWS["chinchilla"]
    true = law.predict(CHINCHILLA_TRUE, {c: df[c].to_numpy(float) for c in law.columns})
    return df.assign(loss=true * np.exp(df["noise"])).drop(columns="noise")


def _fit(df: pd.DataFrame, bootstrap: int = 40, **noise: Any):
    return fit_law("chinchilla", df.drop(columns="run"), bootstrap=bootstrap, groups=df["run"], seed=3, **noise)


def _toy_design(sizes: int = 4, runs: int = 3, points: int = 2) -> Design:
    """A design with a zero fit and zero residuals: simulated losses are the offsets alone."""
    run_of_point = np.repeat(np.arange(sizes * runs), points)
    n = run_of_point.size
    return Design(np.array([f"r{i}" for i in range(sizes * runs)]), run_of_point,
                  np.repeat(np.arange(sizes), runs), np.zeros(n), np.zeros(n), np.zeros((n, 1)))


@pytest.mark.parametrize(("df", "factor"), [(None, 1.0), (10.0, 10.0 / 8.0)])
def test_hierarchical_offsets_have_the_stated_variances(df: float | None, factor: float) -> None:
    """Points of one run share one offset; runs of one size share the size's offset (covariance σ_base²); a point's
    variance is σ_base² + σ_run². An estimated sd (df given) is drawn per resample from its scaled-inverse-χ², so
    the offsets' variance is that of a t: ν/(ν−2) times the estimate."""
    d = _toy_design()
    sim = hierarchical_losses(d, np.zeros(d.residual.size), 40000, base=(0.02, df), run=(0.01, df), seed=0)
    np.testing.assert_allclose(sim[:, 0], sim[:, 1])  # two points of one run
    same_size = np.cov(sim[:, 0], sim[:, 2])[0, 1]  # runs 0 and 1 of size 0
    other_size = np.cov(sim[:, 0], sim[:, 6])[0, 1]  # run 0 of size 0, run 3 of size 1
    total = sim[:, 0].var()
    assert same_size == pytest.approx(factor * 0.02**2, rel=0.1)
    assert total == pytest.approx(factor * (0.02**2 + 0.01**2), rel=0.1)
    assert abs(other_size) < 0.05 * total
    again = hierarchical_losses(d, np.zeros(d.residual.size), 40000, base=(0.02, df), run=(0.01, df), seed=0)
    np.testing.assert_array_equal(again, sim)  # the same seed gives the same draws


def test_single_point_runs_keep_their_point_noise() -> None:
    """Runs of several checkpoints take their point terms from their flipped within-run residuals; a run of one
    point (a WSD branch end) has none to flip, so its point term is drawn from the point sd instead of being left
    out (a law through such points would otherwise look exact there)."""
    run_of_point = np.array([0, 0, 1, 1, 2, 3])
    n = run_of_point.size
    d = Design(np.array(["a", "b", "c", "d"]), run_of_point, np.zeros(4, dtype=int), np.zeros(n), np.zeros(n),
               np.zeros((n, 1)))
    within = np.array([0.004, -0.004, 0.002, -0.002, 0.0, 0.0])
    sim = hierarchical_losses(d, within, 40000, base=(0.0, None), run=(0.0, None), seed=0, point=0.01)
    np.testing.assert_allclose(np.abs(sim[:, :4]), np.abs(within[:4]) * np.ones((40000, 1)))
    assert sim[:, 4].std() == pytest.approx(0.01, rel=0.05) and sim[:, 5].std() == pytest.approx(0.01, rel=0.05)
    assert abs(np.corrcoef(sim[:, 4], sim[:, 5])[0, 1]) < 0.05


def test_variance_components_recover_known_truth_and_say_when_the_base_is_not_identified() -> None:
    """Over 25 sweeps of 8 sizes x 3 runs (base 1 %, run 1 %, point 0.3 %) the method-of-moments estimates are
    unbiased for the variances; with 3 sizes the law's size terms absorb the base offsets: not identified."""
    est = []
    for seed in range(25):
        info = _fit(_sweep(seed, 3, tuple(np.geomspace(1e4, 1e6, 8)), base_sd=0.01), bootstrap=2).bootstrap_info
        assert info["base_noise_source"] == "estimated" and info["run_noise_source"] == "estimated"
        est.append([info["base_noise"] ** 2, info["run_noise"] ** 2, info["point_noise"] ** 2])
    base, run, point = np.mean(est, axis=0)
    assert base == pytest.approx(1e-4, rel=0.35)  # 5 df per sweep: the size terms take 3 of 8
    assert run == pytest.approx(1e-4, rel=0.2)
    assert point == pytest.approx(9e-6, rel=0.5)
    few = _fit(_sweep(0, 3, base_sd=0.01), bootstrap=2).to_json()
    assert few["bootstrap_info"]["base_noise_source"] is None
    assert any("intervals ignore the loss offset shared" in w for w in few["diagnostics"]["warnings"])


def test_stated_base_noise_widens_alpha_and_is_recorded() -> None:
    """Four runs per size are resampled within each size; a stated base noise adds one offset per size to every
    resample, which only the size terms (alpha) can follow: a wider alpha interval, and no warning."""
    df = _sweep(1, 4)
    plain, based = _fit(df), _fit(df, base_noise=0.01)
    assert plain.bootstrap_info["resampling"] == "runs" and plain.bootstrap_info["run_noise_source"] == "resampled"
    info = based.bootstrap_info
    assert info["resampling"] == "runs_and_base"
    assert (info["base_noise"], info["base_noise_source"], info["base_noise_df"]) == (0.01, "stated", None)
    assert "one offset per model size" in info["method"] and info["interval"] == "percentile"
    width = {k: np.diff(np.log(r.ci["alpha"]))[0] for k, r in (("plain", plain), ("based", based))}
    assert width["based"] > 1.5 * width["plain"]
    assert not any("shared by all runs" in w for w in based.diagnostics["warnings"])


def test_two_runs_per_size_estimate_the_run_noise_instead_of_resampling_them() -> None:
    """With two runs per size and no stated noise, resampling the two runs would halve their variance: the fit
    estimates the run noise from them and resamples parametrically, recording the estimate and its df."""
    res = _fit(_sweep(2, 2))
    info = res.bootstrap_info
    assert info["resampling"] == "hierarchical" and info["parametric"]
    assert info["run_noise_source"] == "estimated" and 0.002 < info["run_noise"] < 0.04
    assert 0.5 < info["run_noise_df"] < 3.5  # 3 sizes x (2 - 1) runs, less what the fit absorbs
    assert "estimated" in info["method"] and res.ci["alpha"][0] <= res.params["alpha"] <= res.ci["alpha"][1]
    stated = _fit(_sweep(2, 2), run_noise=0.01).bootstrap_info
    assert (stated["run_noise"], stated["run_noise_source"], stated["run_noise_df"]) == (0.01, "stated", None)


@pytest.fixture()
def micro_raw(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.chdir(REPO)
    return read_config_file(REPO / "tests" / "configs" / "micro.yaml")


@pytest.mark.parametrize("bad", [-0.01, "1%", True])
def test_config_rejects_a_bad_base_noise_naming_the_key(micro_raw: dict[str, Any], bad: Any) -> None:
    micro_raw.setdefault("fit", {})["base_noise"] = bad
    with pytest.raises(InputError, match=r"^micro\.yaml: fit\.base_noise"):
        normalise_config(micro_raw, "micro.yaml")


def test_config_accepts_base_noise(micro_raw: dict[str, Any]) -> None:
    assert normalise_config(micro_raw, "micro.yaml")["fit"]["base_noise"] is None
    micro_raw.setdefault("fit", {})["base_noise"] = 0
    assert normalise_config(micro_raw, "micro.yaml")["fit"]["base_noise"] == 0


def test_cli_base_noise(tmp_path: Path, capsys) -> None:
    data = tmp_path / "points.csv"
    _sweep(0, 1).to_csv(data, index=False)
    out = tmp_path / "law.json"
    assert main(["fit", "chinchilla", "--data", str(data), "--group", "run", "--bootstrap", "20", "--run-noise",
                 "0.01", "--base-noise", "0.01", "--out", str(out)]) == 0
    info = json.loads(out.read_text())["bootstrap_info"]
    assert info["resampling"] == "hierarchical" and info["base_noise"] == 0.01 and info["group_column"] == "run"
    capsys.readouterr()
    assert main(["fit", "chinchilla", "--data", str(data), "--base-noise", "-0.01"]) == 2
    err = capsys.readouterr().err
    assert "--base-noise" in err and ">= 0" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(InputError, match=r"fit\.base_noise"):
        fit_law("chinchilla", _sweep(0, 1).drop(columns="run"), base_noise=float("nan"))


def test_specialization_power_laws_restate_the_noise_for_log_perplexity() -> None:
    """A relative loss offset ε moves log perplexity (= the loss L) by L·ε: the power laws on perplexity get the
    stated sds times the mean loss; an unstated one stays unstated."""
    pts = pd.DataFrame({"N": [1e5, 2e5, 4e5], "loss": np.exp([3.2, 3.0, 2.8])})
    fit = specialization.perplexity_noise({"run_noise": 0.01, "base_noise": 0.02, "seed": 0}, pts)
    assert fit["run_noise"] == pytest.approx(0.03) and fit["base_noise"] == pytest.approx(0.06) and fit["seed"] == 0
    assert specialization.perplexity_noise({"run_noise": None, "base_noise": None}, pts)["base_noise"] is None


def test_the_flipped_within_run_residuals_carry_the_point_variance_not_the_run_offsets() -> None:
    """A run's offset, projected off the Jacobian, leaks into its within-run deviations wherever a column of the
    Jacobian varies between the runs of a size (here each run its own token budget). The joint moment solve
    separates the two in the estimates; the deviations that a hierarchical resample flips must carry the estimated
    point variance too, not the leak (before: 1.6 times the true point variance on this design)."""
    sizes, runs, pts = 3, 2, 4
    run_of_point = np.repeat(np.arange(sizes * runs), pts)
    size_of_run = np.repeat(np.arange(sizes), runs)
    log_d = np.concatenate([np.log((k % runs + 1) * np.arange(1, pts + 1)) for k in range(sizes * runs)])
    jac = np.column_stack([(size_of_run[run_of_point] == s).astype(float) for s in range(sizes)]
                          + [log_d, np.exp(-log_d)])
    q, _ = np.linalg.qr(jac)
    ratios = []
    for seed in range(200):
        rng = np.random.default_rng(seed)
        eps = rng.normal(0.0, 0.01, sizes * runs)[run_of_point] + rng.normal(0.0, 0.003, run_of_point.size)
        resid = eps - q @ (q.T @ eps)  # the residuals of the linearised fit
        d = Design(np.array([f"r{i}" for i in range(sizes * runs)]), run_of_point, size_of_run,
                   np.zeros_like(resid), resid, jac)
        comp = variance_components(d)
        assert np.mean(comp.within**2) == pytest.approx(comp.point**2)
        ratios.append(comp.point**2 / 0.003**2)
    assert 0.8 < np.mean(ratios) < 1.3
