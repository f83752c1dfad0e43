"""Decisions read off fitted laws: D-CPT usages 1-3, split fraction and multiplier, SGER."""

from __future__ import annotations

import numpy as np
import pytest
from law_synth import DCPT_TRUE, SPLIT_TRUE

from cpt_scaling.core.errors import InputError
from cpt_scaling.fit import decisions as dec
from cpt_scaling.fit import split_decisions as sd

GENERAL = {
    "law": "dcpt",
    "params": {
        "E": 1.9,
        "A": 250.0,
        "B": 5.0,
        "C": 0.12,
        "alpha": 0.3,
        "beta": 0.25,
        "gamma": 0.8,
        "eta": 0.4,
        "epsilon": 0.08,
    },
}
DOMAIN = {"law": "dcpt", "params": dict(DCPT_TRUE)}
N, D = 1e9, 5e9


def _general_loss(r_d: float) -> float:
    return float(dec.law_loss(GENERAL, N=N, D=D, r=1.0 - r_d))


def test_usage1_without_domain_law_returns_the_crossing_of_a_monotone_constraint() -> None:
    grid = np.linspace(0, 1, 501)
    losses = np.array([_general_loss(v) for v in grid])
    assert np.all(np.diff(losses) > 0)  # general loss rises with the domain ratio: a monotone constraint
    tol = 0.02
    for r_star in (0.137, 0.37, 0.8123):
        base = _general_loss(r_star) / (1 + tol)  # so the constraint is tight exactly at r_star
        out = dec.dcpt_max_domain_ratio(GENERAL, N=N, D=D, base_general_loss=base, tolerance=tol)
        assert out["ratio"] == pytest.approx(r_star, abs=1e-8)
        assert out["general_loss"] <= base * (1 + tol) and out["ratio_lo"] is None
    base_abs = _general_loss(0.5) - 0.01
    out = dec.dcpt_max_domain_ratio(
        GENERAL, N=N, D=D, base_general_loss=base_abs, tolerance=0.01, relative=False
    )
    assert out["ratio"] == pytest.approx(0.5, abs=1e-8)


def test_usage1_picks_the_interior_domain_loss_minimum_not_the_largest_feasible_ratio() -> None:
    """L3's domain loss B·r^η/D^β + C/(r+ε)^γ has an interior minimum in r when the data term is large; with a
    loose constraint usage 1 must return that minimum (the paper's argmin), not the largest feasible ratio."""
    domain = {"law": "dcpt", "params": {**DCPT_TRUE, "B": 80.0, "eta": 1.0, "C": 0.05, "gamma": 1.0}}
    r = np.linspace(0.0, 1.0, 200001)
    curve = dec.law_loss(domain, N=N, D=D, r=r)
    r_min = float(r[np.argmin(curve)])
    assert 0.05 < r_min < 0.9  # interior minimum
    base = _general_loss(0.95) / 1.03  # feasible up to r = 0.95 > r_min
    out = dec.dcpt_max_domain_ratio(GENERAL, N=N, D=D, base_general_loss=base, tolerance=0.03, domain_law=domain)
    assert out["ratio"] == pytest.approx(r_min, abs=1e-4)
    largest = dec.dcpt_max_domain_ratio(GENERAL, N=N, D=D, base_general_loss=base, tolerance=0.03)
    assert largest["ratio"] == pytest.approx(0.95, abs=1e-6) and largest["ratio"] > out["ratio"] + 0.05
    tight = _general_loss(r_min / 2) / 1.03  # constraint binds below the minimum: the boundary wins
    out = dec.dcpt_max_domain_ratio(GENERAL, N=N, D=D, base_general_loss=tight, tolerance=0.03, domain_law=domain)
    assert out["ratio"] == pytest.approx(r_min / 2, abs=1e-6)


def test_usage1_edges() -> None:
    none = dec.dcpt_max_domain_ratio(
        GENERAL, N=N, D=D, base_general_loss=_general_loss(0.0) * 0.5, tolerance=0.01
    )
    assert none["ratio"] is None
    everything = dec.dcpt_max_domain_ratio(
        GENERAL, N=N, D=D, base_general_loss=_general_loss(1.0), tolerance=0.0
    )
    assert everything["ratio"] == 1.0


def test_decisions_carry_intervals_from_the_resamples() -> None:
    """With bootstrap samples in the law JSON every decision gets lo <= value <= hi, and the interval is the
    spread of the decision over the resampled parameter sets."""
    rng = np.random.default_rng(0)
    names = list(DCPT_TRUE)
    values = [[DCPT_TRUE[k] * (np.exp(rng.normal(0, 0.05)) if k in ("alpha", "beta") else 1.0) for k in names]
              for _ in range(200)]
    law = {**DOMAIN, "bootstrap_samples": {"params": names, "values": values}}
    out = dec.dcpt_ratio_for_limited_domain_data(law, N=N, domain_tokens=2e8)
    assert out["ratio_lo"] <= out["ratio"] <= out["ratio_hi"] and out["ratio_lo"] < out["ratio_hi"]
    each = [dec.dcpt_ratio_for_limited_domain_data({"law": "dcpt", "params": dict(zip(names, v, strict=True))},
                                                   N=N, domain_tokens=2e8)["ratio"] for v in values]
    assert out["ratio_hi"] == pytest.approx(max(np.percentile(each, 97.5), out["ratio"]), rel=1e-6)
    u3 = dec.dcpt_compute_allocation(law, compute=1e21, r=0.5)
    assert u3["N_lo"] <= u3["N"] <= u3["N_hi"] and u3["D_lo"] <= u3["D"] <= u3["D_hi"]


def test_usage3_says_when_an_interval_end_is_the_search_bound() -> None:
    """Resamples whose data exponent is tiny (beta 0.01: data barely helps, B/D^beta stays large) put the optimum
    at the smallest N searched: the interval's lower end is then that bound, flagged and explained, not reported as
    an estimate."""
    names = list(DCPT_TRUE)
    flat = {**DCPT_TRUE, "beta": 0.01}
    values = [[(flat if i % 2 else DCPT_TRUE)[k] for k in names] for i in range(100)]
    law = {**DOMAIN, "bootstrap_samples": {"params": names, "values": values}}
    out = dec.dcpt_compute_allocation(law, compute=1e21, r=0.5, n_range=(1e6, 1e13))
    assert out["N_lo"] == pytest.approx(1e6) and out["N_lo_is_search_bound"] and not out["N_hi_is_search_bound"]
    assert out["resamples_at_search_bound"] == 50 and "search bound" in out["note"]
    tight = dec.dcpt_compute_allocation({**DOMAIN, "bootstrap_samples": {"params": names, "values": [
        [DCPT_TRUE[k] for k in names]] * 20}}, compute=1e21, r=0.5)
    assert not tight["N_lo_is_search_bound"] and "note" not in tight


def test_usage2_matches_brute_force() -> None:
    tokens = 2e8
    out = dec.dcpt_ratio_for_limited_domain_data(DOMAIN, N=N, domain_tokens=tokens)
    grid = np.linspace(1e-3, 1.0, 200001)
    brute = grid[np.argmin(dec.law_loss(DOMAIN, N=N, D=tokens / grid, r=grid))]
    assert out["ratio"] == pytest.approx(brute, abs=2e-5)
    assert out["D"] == pytest.approx(tokens / out["ratio"])


def test_usage3_matches_brute_force() -> None:
    budget = 1e21
    out = dec.dcpt_compute_allocation(DOMAIN, compute=budget, r=0.5)
    n = np.geomspace(1e6, 1e13, 400001)
    brute = n[np.argmin(dec.law_loss(DOMAIN, N=n, D=budget / (6 * n), r=0.5))]
    assert out["N"] == pytest.approx(brute, rel=1e-3)
    assert 6 * out["N"] * out["D"] == pytest.approx(budget)
    sizes = dec.optimal_model_size_per_compute(DOMAIN, [1e19, 1e20, 1e21], r=0.5)
    assert sizes[0]["N"] < sizes[1]["N"] < sizes[2]["N"]


def test_split_fraction_and_multiplier_against_standard_pretraining() -> None:
    law = {"law": "split_effective", "params": dict(SPLIT_TRUE)}
    total = 2e10
    best = sd.split_optimal_fraction(law, N=3e8, total_tokens=total)
    fracs = np.linspace(0.0, 1 - 1e-4, 100001)
    brute = fracs[np.argmin(dec.law_loss(law, N=3e8, D=total * (1 - fracs), D_spec=total * fracs))]
    assert best["fraction"] == pytest.approx(brute, abs=1e-4)
    mult = sd.split_compute_multiplier(law, N=3e8, total_tokens=total)
    assert mult["multiplier"] > 1.0
    t_std = mult["multiplier"] * total  # an unsplit run (D' = 0) of this many tokens matches the optimal split
    matched = float(dec.law_loss(law, N=3e8, D=t_std, D_spec=0.0))
    assert matched == pytest.approx(best["loss"], rel=1e-9)


def test_multiplier_on_a_hand_made_law_with_a_closed_form() -> None:
    """Separable law with C = 0 beyond D: specialising gains nothing, so not splitting is optimal (f* = 0,
    multiplier 1). With B = 0 only D' + s counts: the optimum is f* -> 1 and standard pretraining (D' = 0) can
    never match it (multiplier inf, "> limit")."""
    base = {"E": 2.0, "A": 100.0, "alpha": 0.3, "beta": 0.3, "gamma": 0.5, "s": 1e6}
    no_gain = {"law": "split_separable", "params": {**base, "B": 500.0, "C": 1e-9}}
    out = sd.split_compute_multiplier(no_gain, N=1e8, total_tokens=1e10)
    assert out["fraction"] == pytest.approx(0.0, abs=1e-6) and out["multiplier"] == 1.0
    only_spec = {"law": "split_separable", "params": {**base, "B": 1e-9, "C": 500.0}}
    out = sd.split_compute_multiplier(only_spec, N=1e8, total_tokens=1e10)
    assert out["fraction"] > 0.99 and out["beyond_limit"] and out["multiplier"] == np.inf
    # closed form: standard pretraining's loss is E + A/N^α + B/T^β + C/s^γ, so T_std = (B / rest)^(1/β)
    mixed = {"law": "split_separable", "params": {**base, "B": 100.0, "C": 2000.0, "s": 1e9}}
    out = sd.split_compute_multiplier(mixed, N=1e8, total_tokens=1e10)
    assert 0.1 < out["fraction"] < 0.5 and 1.5 < out["multiplier"] < 10
    p = mixed["params"]
    rest = out["loss"] - p["E"] - p["A"] / 1e8 ** p["alpha"] - p["C"] / p["s"] ** p["gamma"]
    t_std = (p["B"] / rest) ** (1 / p["beta"])
    assert out["multiplier"] == pytest.approx(t_std / 1e10, rel=1e-8)


def test_sger_per_size_on_hand_made_curves() -> None:
    """Specialist bottoms out at compute 3 (loss 2.0); the general curve passes 2.0 between its checkpoints at
    compute 4 (2.2) and 8 (1.9): log-linear interpolation gives C_general = 4·2^(2/3), SGER = that / 3."""
    spec = (np.array([1.0, 2.0, 3.0, 4.0]), np.array([2.6, 2.2, 2.0, 2.05]))
    gen = (np.array([2.0, 4.0, 8.0]), np.array([2.5, 2.2, 1.9]))
    out = dec.sger_from_curves(spec, gen)
    c = 4.0 * 2.0 ** (2.0 / 3.0)
    assert out["status"] == "interpolated" and out["C_specialist"] == 3.0
    assert out["C_general"] == pytest.approx(c) and out["sger"] == pytest.approx(c / 3.0)
    assert out["sger_lo"] == pytest.approx(4 / 3) and out["sger_hi"] == pytest.approx(8 / 3)
    assert out["C_general_own_min"] == 8.0
    # general model never reaches 2.0 in the sweep: power-law extrapolation of its tail, flagged
    slow = (np.array([1.0, 2.0, 4.0]), 3.0 * np.array([1.0, 2.0, 4.0]) ** -0.1)
    out = dec.sger_from_curves(spec, slow, limit=100.0)
    c = (2.0 / 3.0) ** (1 / -0.1)
    assert out["status"] == "extrapolated" and out["sger"] == pytest.approx(c / 3.0, rel=1e-6)
    assert out["sger_lo"] == pytest.approx(4 / 3) and out["sger_hi"] == np.inf
    flat = (np.array([1.0, 2.0, 4.0]), np.array([2.5, 2.5, 2.5]))
    out = dec.sger_from_curves(spec, flat)
    assert out["status"] == "> limit" and out["sger"] is None and out["sger_lo"] == pytest.approx(400 / 3)


def test_equivalent_general_size_closed_form() -> None:
    general = {"law": "powerlaw", "params": {"k": 100.0, "p": -0.2}, "points_used": [{"N": 1e8}, {"N": 1e11}]}
    specialist = {"law": "powerlaw", "params": {"k": 60.0, "p": -0.2}}
    out = dec.equivalent_general_size(general, specialist, N_specialist=1e9)
    assert out["compute_ratio_across_sizes"] == pytest.approx(0.6**-5)
    assert out["N_general_equivalent"] == pytest.approx(1e9 * 0.6**-5)
    assert not out["extrapolated"] and out["N_general_equivalent_lo"] is None
    double = dec.equivalent_general_size(general, specialist, N_specialist=1e9, tokens_specialist=2.0)
    assert double["compute_ratio_across_sizes"] == pytest.approx(0.6**-5 / 2)


def test_wrong_law_is_rejected() -> None:
    with pytest.raises(InputError):
        dec.chinchilla_compute_optimal(DOMAIN, 1e20)
