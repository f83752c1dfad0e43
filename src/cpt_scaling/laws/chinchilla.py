"""Chinchilla form (Hoffmann et al. 2022): ``L(N, D) = E + A/N^α + B/D^β``."""

from __future__ import annotations

import numpy as np

from cpt_scaling.laws.base import EXPONENT_BOUNDS, Array, Columns, Law, Params, power_term

#: Coefficient grid of the Hoffmann et al. fit (exp of 0, 5, ..., 25), shared by the other laws.
COEF_GRID = tuple(float(np.exp(v)) for v in (0.0, 5.0, 10.0, 15.0, 20.0, 25.0))
EXP_GRID = (0.1, 0.25, 0.5, 1.0, 2.0)
E_GRID = (0.5, 1.0, 1.5, 2.0, 3.0)


class ChinchillaLaw(Law):
    """``L = E + A/N^α + B/D^β``: irreducible loss plus model-size and data terms (N parameters, D tokens)."""

    def evaluate(self, p: Params, x: Columns) -> tuple[Array, dict[str, Array]]:
        ln_n, ln_d = np.log(x["N"]), np.log(x["D"])
        t_n, g_n = power_term(p, ln_n, "A", "alpha")
        t_d, g_d = power_term(p, ln_d, "B", "beta")
        pred = p["E"] + t_n + t_d
        return pred, {"E": np.ones_like(pred), **g_n, **g_d}


CHINCHILLA = ChinchillaLaw(
    name="chinchilla",
    formula="E + A/N^alpha + B/D^beta",
    columns=("N", "D"),
    params=("E", "A", "B", "alpha", "beta"),
    grid={"E": E_GRID, "A": COEF_GRID, "B": COEF_GRID, "alpha": EXP_GRID, "beta": EXP_GRID},
    coarse_grid={
        "E": (1.0, 2.0),
        "A": COEF_GRID[1::2],
        "B": COEF_GRID[1::2],
        "alpha": (0.25, 0.5, 1.0),
        "beta": (0.25, 0.5, 1.0),
    },
    bounds={"alpha": EXPONENT_BOUNDS, "beta": EXPONENT_BOUNDS},
    doc=__doc__ or "",
)
