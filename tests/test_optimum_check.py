"""The independent optimum check of a law JSON's fits (the demo recorder's ``law_optimum_check.csv``): a fit at its
optimum passes, the same fit moved off it fails, and every fit a JSON holds is found."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cpt_scaling.core.errors import InputError
from cpt_scaling.fit.fitting import fit_law
from cpt_scaling.fit.optimum_check import WITHIN, check_law_json


def _powerlaw_json() -> dict:
    rng = np.random.default_rng(0)
    n = np.array([3e4, 1e5, 3e5, 1e6])
    df = pd.DataFrame({"N": n, "loss": 40.0 * n ** -0.12 * np.exp(rng.normal(0.0, 0.01, n.size))})
    return fit_law("powerlaw", df).to_json()


def test_a_fit_at_its_optimum_passes_and_one_moved_off_it_fails() -> None:
    fit = _powerlaw_json()
    [row] = check_law_json("p.json", fit)  # one fit: the JSON itself
    assert (row["law"], row["target"], row["form"], row["n_points"]) == ("p.json", "all", "powerlaw", 4)
    assert row[WITHIN] and 1.0 <= row["ratio"] <= 1 + 1e-6
    moved = {**fit, "params": {**fit["params"], "p": fit["params"]["p"] * 1.01}}
    nested = check_law_json("s.json", {"general_powerlaw": fit, "specialist_powerlaw": moved, "note": "text"})
    assert [(r["target"], r[WITHIN]) for r in nested] == [("general_powerlaw", True), ("specialist_powerlaw", False)]
    assert nested[1]["ratio"] > 1.01 and nested[1]["objective_best"] == pytest.approx(row["objective_best"])


def test_an_unknown_law_is_one_error_naming_the_fit() -> None:
    fit = {**_powerlaw_json(), "law": "nolaw"}
    with pytest.raises(InputError, match=r"^x\.json: domain_loss: unknown law 'nolaw'"):
        check_law_json("x.json", {"domain_loss": fit})
