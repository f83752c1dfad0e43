"""`next` in rounds: candidates priced at their WSD increment, and a proposer that keeps proposing while an
affordable run carries information (issue 23's never stuck, issue 28's increment pricing)."""

from __future__ import annotations

import itertools
import json
import shutil

import numpy as np
import pandas as pd
import pytest
from conftest import make_workdir
from workflow_utils import REPO, plan_in

from cpt_scaling.cli.main import main
from cpt_scaling.fit import candidates, decision_spec, ensemble_weights, proposal
from cpt_scaling.fit.fitting import fit_law
from cpt_scaling.fit.rounds import next_round, run_rounds
from cpt_scaling.laws import LAWS
from cpt_scaling.plan.next_runs import cost_assumptions

L3 = {"E": 2.0, "A": 60.0, "B": 40.0, "C": 0.3, "alpha": 0.34, "beta": 0.30, "gamma": 0.5, "eta": 0.6,
      "epsilon": 0.05}
F = 0.1  # cpt.decay_fraction


def test_curve_tokens_are_what_the_plan_trains(tmp_path) -> None:
    """The paper example's plan (WSD branches, decay fraction 0.1): every trunk's segments and branches train
    ``curve_tokens`` of its budgets, the price an extension's increment is a difference of."""
    workdir = make_workdir(tmp_path / "w")
    shutil.copy(REPO / "config" / "examples" / "paper_qwen.yaml", workdir / "paper.yaml")
    plan = plan_in(workdir, "paper.yaml")
    budgets = [int(d) for d in plan.cfg["cpt"]["tokens"]]
    curves = set(plan.curve_of.values())
    trained = sum(plan.trained_tokens(key) for key in plan.size_of)
    assert len(curves) == 104 and len(budgets) == 4
    assert trained == pytest.approx(len(curves) * candidates.curve_tokens(budgets, F), rel=1e-9)


def _runs(rows: list[tuple[float, float, float]], checkpoints: int = 4) -> list[candidates.Candidate]:
    table = pd.DataFrame([{"N": n, "D": d, "r": r, "checkpoints": checkpoints} for n, d, r in rows])
    return candidates.read_candidates(table, "test candidates", cost_assumptions())


def test_extensions_cost_the_new_segment_plus_the_decay() -> None:
    """A budget of a trunk that exists costs ``max(0, (1-f)(D - max)) + f·D`` tokens of its run price (by hand),
    yields one point, and names the trunk; a new (size, ratio) stays a run at the full price."""
    runs = _runs([(1e5, 4e4, 0.5), (1e5, 1e4, 0.5), (1e5, 4e4, 0.25), (2e5, 4e4, 0.5)])
    trunks = candidates.trunks_of([(1e5, 2e4, 0.5)])  # one trunk (N 1e5, r 0.5) with a 2e4-token branch
    priced = candidates.price_increments(runs, trunks, F)
    longer, shorter, other_ratio, other_size = priced
    assert longer.kind == "extension" and longer.extends is not None and longer.checkpoints == 1
    assert longer.gpu_hours == pytest.approx(runs[0].gpu_hours * ((1 - F) * (4e4 - 2e4) + F * 4e4) / 4e4)
    assert shorter.kind == "extension" and shorter.gpu_hours == pytest.approx(runs[1].gpu_hours * F)
    assert other_ratio == runs[2] and other_size == runs[3]
    assert other_ratio.kind == other_size.kind == "run"
    with pytest.raises(ValueError, match="already priced"):
        candidates.price_increments(priced, trunks, F)


def test_the_linearised_ratio_never_rises_with_more_observations() -> None:
    """The fallback's property: on any ensemble, adding observations never raises the linear-Gaussian variance
    ratio (a Gaussian conditional variance), and an observation that does not vary over the members leaves it."""
    rng = np.random.default_rng(0)
    for _ in range(20):
        values = rng.standard_normal(80)
        x = values[:, None] * rng.normal(0.0, 0.3, (1, 6)) + rng.standard_normal((80, 6))
        cov = np.diag(rng.uniform(0.5, 2.0, 6))
        ratios = [ensemble_weights.linear_variance_ratio(values, x[:, :k], cov[:k, :k]) for k in range(1, 7)]
        assert all(b <= a + 1e-12 for a, b in itertools.pairwise(ratios))
    flat = np.hstack([x, np.ones((80, 1))])
    big = np.zeros((7, 7))
    big[:6, :6], big[6, 6] = cov, 1.0
    assert ensemble_weights.linear_variance_ratio(values, flat, big) == pytest.approx(ratios[-1], rel=1e-9)


def _wsd_points(runs: list[tuple[float, float, float]], rng: np.random.Generator) -> pd.DataFrame:
    """One point per branch end (N, D, r) from the L3 truth, a log-loss offset per trunk plus point noise."""
    offsets = {key: rng.normal(0.0, 0.01) for key in candidates.trunks_of(runs)}
    df = pd.DataFrame([{"N": n, "D": d, "r": r, "run": f"t{n:g}-{r:g}",
                        "noise": offsets[candidates.trunk_key(n, r)] + rng.normal(0.0, 0.003)} for n, d, r in runs])
    law = LAWS["dcpt"]
    true = law.predict(L3, {c: df[c].to_numpy(float) for c in law.columns})
    return df.assign(loss=true * np.exp(df.pop("noise")))


def _fit(df: pd.DataFrame) -> dict:
    return fit_law("dcpt", df[["N", "D", "r", "loss"]], bootstrap=30, groups=df["run"], coarse=True,
                   bootstrap_starts=1, seed=0).to_json()


BUDGETS = (32768.0, 65536.0, 131072.0)
START = [(n, d, r) for n in (2.5e4, 1e5) for r in (0.0, 0.5, 1.0) for d in BUDGETS[:2]]
SPEC = decision_spec.DecisionSpec("usage2", N=2.2e5, domain_tokens=32768.0)


@pytest.fixture(scope="module")
def start() -> tuple[pd.DataFrame, dict]:
    pts = _wsd_points(START, np.random.default_rng(5))
    return pts, _fit(pts)


def _b_ensemble(pts: pd.DataFrame, spread: float, members: int = 60) -> dict:
    """A law JSON whose resamples differ only in B (uniform within ``1 ± spread`` of the truth's): the L3 term
    ``B r^eta / D^beta`` is the only one they disagree on, nil at r = 0 and tiny at a very large D."""
    names = list(L3)
    b = L3["B"] * (1.0 + spread * np.random.default_rng(0).uniform(-1.0, 1.0, members))
    values = [[bi if k == "B" else L3[k] for k in names] for bi in b]
    return {"law": "dcpt", "params": dict(L3), "bootstrap_samples": {"params": names, "values": values},
            "n_points": len(pts)}


def test_next_falls_back_when_the_simulations_see_no_gain(start: tuple[pd.DataFrame, dict]) -> None:
    """Resamples that disagree only on B, and candidates at D = 1e15 where B's term is ~1e-4 of the loss: each
    carries a little information (linearised variance ratio just below 1), less than the simulations' noise, so
    in some seeds every one scores no gain (simulated ratio capped at 1). The proposal still chooses runs, scored
    by the linearised increment and marked so. A run at r = 0, which the resamples predict alike, is never chosen:
    alone it stops the proposal with ``no_gain``, and the printed table says why."""
    pts, _ = start
    law = _b_ensemble(pts, 0.2)
    weak = _runs([(2.2e5, 1e15, r) for r in (0.25, 0.5)], checkpoints=1)
    nil = _runs([(2.2e5, 65536.0, 0.0)], checkpoints=1)
    fallbacks = 0
    for seed in range(8):
        prop = proposal.propose({"domain": law}, {"domain": pts}, weak + nil, SPEC, 1e9, simulations=8, seed=seed)
        assert len(prop.chosen) >= 1 and (prop.chosen["width_reduction"] > 0).all()
        assert not prop.chosen["candidate"].str.contains("r0-").any() and prop.stopped == "no_gain"
        if (prop.ranking["width_reduction"] <= 0).all():
            fallbacks += 1
            assert (prop.chosen["estimator"] == "linear (fallback)").all()
    assert fallbacks >= 1
    prop = proposal.propose({"domain": law}, {"domain": pts}, nil, SPEC, 1e9, simulations=8)
    assert prop.chosen.empty and prop.stopped == "no_gain" and prop.to_json()["stopped"] == "no_gain"
    assert "stopped: no affordable candidate carries information" in proposal.format_table(prop)


def test_rounds_price_extensions_and_stop_at_the_total_budget(start: tuple[pd.DataFrame, dict]) -> None:
    """Rounds on the WSD world: runs that extend a trunk done (the start's or an earlier round's) are priced
    at their increment; the GPU-hours add up to the start plus the increments chosen; the loop stops when the
    total budget affords no candidate left."""
    pts, _ = start
    rng = np.random.default_rng(6)
    cost = cost_assumptions()
    # the start trunks' longest budget (extensions from the start) and a new trunk (extensions once it is run)
    cands = _runs([(n, BUDGETS[2], r) for n, _, r in START[::2]] + [(2.2e5, d, 0.25) for d in BUDGETS],
                  checkpoints=1)
    start_hours = sum(candidates.gpu_hours(6.0 * n * candidates.curve_tokens(b, F), cost)
                      for (n, _), b in candidates.trunks_of(START).items())
    rounds: list[list[candidates.Candidate]] = []

    def train(chosen: list[candidates.Candidate]) -> dict[str, pd.DataFrame]:
        rounds.append(chosen)
        return {"domain": _wsd_points([(c.N, c.D, c.r) for c in chosen], rng)}

    per_round = 0.1 * start_hours
    res = run_rounds({"domain": pts}, cands, SPEC, fit=lambda p: {"domain": _fit(p["domain"])}, train=train,
                     budget_per_round=per_round, target_width=0.0, start_gpu_hours=start_hours, max_rounds=4,
                     simulations=32, total_budget=start_hours + 1.5 * per_round, decay_fraction=F)
    tab = res.table()
    assert res.status == "budget" and len(tab) >= 2 and tab["proposed"].iloc[0] >= 1
    bought = [c for chosen in rounds for c in chosen]
    assert tab["gpu_hours"].iloc[-1] == pytest.approx(start_hours + sum(c.gpu_hours for c in bought))
    assert tab["gpu_hours"].iloc[-1] <= start_hours + 1.5 * per_round * (1 + 1e-9)
    done = list(START)
    for chosen in rounds:  # each priced over the trunks done before it: the start's, earlier rounds' and the runs
        for c in chosen:  # its round picked before it (a second budget of a trunk new in the round extends it)
            full = candidates.gpu_hours(6.0 * c.N * c.D, cost)
            budgets = candidates.trunks_of(done).get(candidates.trunk_key(c.N, c.r))
            if budgets is None:
                assert c.kind == "run" and c.gpu_hours == pytest.approx(full)
            else:
                step = candidates.curve_tokens([*budgets, c.D], F) - candidates.curve_tokens(budgets, F)
                assert c.kind == "extension" and c.gpu_hours == pytest.approx(full * step / c.D)
            done.append((c.N, c.D, c.r))
    assert any(c.kind == "extension" for c in bought)
    # the GPU-hours spent are the WSD curves' of every run done, less the start's: no segment is paid twice
    trunks, first = candidates.trunks_of(done), candidates.trunks_of(START)
    curves = sum(candidates.gpu_hours(6.0 * n * (candidates.curve_tokens(b, F)
                                                 - candidates.curve_tokens(first.get((n, r), []), F)), cost)
                 for (n, r), b in trunks.items())
    assert tab["gpu_hours"].iloc[-1] == pytest.approx(start_hours + curves)


def test_next_cli_prices_extensions_of_the_points_trunks(start: tuple[pd.DataFrame, dict], tmp_path,
                                                         capsys) -> None:
    """`next --wsd-decay-fraction`: a candidate on a trunk of --points is an extension at its increment (shown in
    the table and the JSON), a new (size, ratio) a run; a fraction outside (0, 1) is refused, naming the flag."""
    pts, law = start
    paths = {k: tmp_path / f"{k}.{ext}" for k, ext in (("law", "json"), ("points", "csv"), ("cands", "csv"))}
    paths["law"].write_text(json.dumps(law))
    pts.to_csv(paths["points"], index=False)
    pd.DataFrame([{"name": "ext", "N": 1e5, "D": 262144.0, "r": 0.5},
                  {"name": "new", "N": 2.2e5, "D": 32768.0, "r": 0.25}]).to_csv(paths["cands"], index=False)
    out = tmp_path / "next.json"
    args = ["next", "--law", str(paths["law"]), "--points", str(paths["points"]), "--candidates",
            str(paths["cands"]), "--decision", "usage2", "--N", "2.2e5", "--domain-tokens", "32768", "--budget",
            "1", "--simulations", "32"]
    assert main([*args, "--wsd-decay-fraction", "0.1", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "stopped:" in text
    rows = {r.split()[0]: r.split()[1] for r in text.splitlines() if r.startswith(("    ext-", "    new-"))}
    assert rows == {"ext-r0.5-D262144": "extension", "new-r0.25-D32768": "run"}
    doc = json.loads(out.read_text())
    full = candidates.gpu_hours(6.0 * 1e5 * 262144.0, cost_assumptions())
    ext = [r for r in doc["chosen"] if r["candidate"].startswith("ext")]
    assert ext and ext[0]["kind"] == "extension" and ext[0]["extends"]
    assert ext[0]["gpu_hours"] == pytest.approx(full * (0.9 * (262144.0 - 65536.0) + 0.1 * 262144.0) / 262144.0)
    assert main([*args, "--wsd-decay-fraction", "1.5"]) != 0
    assert "--wsd-decay-fraction" in capsys.readouterr().err


def test_a_round_buys_the_best_run_even_above_its_share(start: tuple[pd.DataFrame, dict]) -> None:
    """The round's share caps how much it buys, not which run: when the run the proposer ranks first (largest
    expected width reduction per GPU-hour) costs more than the share, the round's budget rises to its price and
    the round buys it. Here the share affords only a cheap run the resamples predict alike (r = 0, where the one
    term they disagree on vanishes), so before this rule the round stalled on ``no_gain``."""
    pts, _ = start
    law = _b_ensemble(pts, 0.2)
    big, nil = _runs([(2.2e5, BUDGETS[2], 0.25), (2.5e4, BUDGETS[0], 0.0)], checkpoints=1)
    assert big.gpu_hours > 5 * nil.gpu_hours
    kw = {"k": 0, "spent": 1.0, "target_width": 0.0, "round_gpu_hours": nil.gpu_hours, "simulations": 32}
    step = next_round({"domain": law}, {"domain": pts}, SPEC, [big, nil], **kw)
    assert step.status is None and step.chosen_by == "proposer"
    assert step.round_gpu_hours == pytest.approx(big.gpu_hours)
    assert [c.name for c in step.chosen] == [big.name]
    capped = next_round({"domain": law}, {"domain": pts}, SPEC, [big, nil], **kw, total_budget=1.0 + nil.gpu_hours)
    assert capped.status == "stalled" and capped.proposer_stop == "no_gain"  # the total budget still binds
