"""Decisions read off fitted laws: D-CPT usages 1-3, split fraction and multiplier, SGER."""

from __future__ import annotations

import numpy as np
import pytest
from law_synth import DCPT_TRUE, SPLIT_TRUE

from cpt_scaling import decisions as dec
from cpt_scaling.errors import InputError

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


def test_usage1_returns_exact_crossing_of_monotone_constraint() -> None:
    grid = np.linspace(0, 1, 501)
    losses = np.array([_general_loss(v) for v in grid])
    assert np.all(np.diff(losses) > 0)  # general loss rises with the domain ratio: a monotone constraint
    tol = 0.02
    for r_star in (0.137, 0.37, 0.8123):
        base = _general_loss(r_star) / (1 + tol)  # so the constraint is tight exactly at r_star
        out = dec.dcpt_max_domain_ratio(GENERAL, N=N, D=D, base_general_loss=base, tolerance=tol)
        assert out["ratio"] == pytest.approx(r_star, abs=1e-12)
        assert out["general_loss"] == pytest.approx(base * (1 + tol), rel=1e-12)
    base_abs = _general_loss(0.5) - 0.01
    out = dec.dcpt_max_domain_ratio(
        GENERAL, N=N, D=D, base_general_loss=base_abs, tolerance=0.01, relative=False
    )
    assert out["ratio"] == pytest.approx(0.5, abs=1e-12)


def test_usage1_edges() -> None:
    none = dec.dcpt_max_domain_ratio(
        GENERAL, N=N, D=D, base_general_loss=_general_loss(0.0) * 0.5, tolerance=0.01
    )
    assert none["ratio"] is None
    everything = dec.dcpt_max_domain_ratio(
        GENERAL, N=N, D=D, base_general_loss=_general_loss(1.0), tolerance=0.0
    )
    assert everything["ratio"] == 1.0


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


def test_split_fraction_and_multiplier() -> None:
    law = {"law": "split_effective", "params": dict(SPLIT_TRUE)}
    total = 2e10
    best = dec.split_optimal_fraction(law, N=3e8, total_tokens=total)
    fracs = np.linspace(1e-4, 1 - 1e-4, 100001)
    brute = fracs[np.argmin(dec.law_loss(law, N=3e8, D=total * (1 - fracs), D_spec=total * fracs))]
    assert best["fraction"] == pytest.approx(brute, abs=1e-4)
    mult = dec.split_compute_multiplier(law, N=3e8, total_tokens=total, reference_fraction=0.01)
    assert mult["multiplier"] > 1.0
    t_ref = mult["multiplier"] * total
    matched = float(dec.law_loss(law, N=3e8, D=t_ref * 0.99, D_spec=t_ref * 0.01))
    assert matched == pytest.approx(best["loss"], rel=1e-9)
    with pytest.raises(InputError):
        dec.split_compute_multiplier(law, N=3e8, total_tokens=total, reference_fraction=1.5)


def test_sger_closed_form() -> None:
    general = {"law": "powerlaw", "params": {"k": 100.0, "p": -0.2}, "points_used": [{"N": 1e8}, {"N": 1e11}]}
    specialist = {"law": "powerlaw", "params": {"k": 60.0, "p": -0.2}}
    out = dec.sger(general, specialist, N_specialist=1e9)
    assert out["sger"] == pytest.approx(0.6**-5)
    assert out["N_general_equivalent"] == pytest.approx(1e9 * 0.6**-5)
    assert not out["extrapolated"]
    double = dec.sger(general, specialist, N_specialist=1e9, tokens_specialist=2.0)
    assert double["sger"] == pytest.approx(0.6**-5 / 2)


def test_wrong_law_is_rejected() -> None:
    with pytest.raises(InputError):
        dec.chinchilla_compute_optimal(DOMAIN, 1e20)
