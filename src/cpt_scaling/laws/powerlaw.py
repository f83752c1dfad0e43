"""Power law across model sizes: ``y = k·N^p`` (e.g. best-checkpoint perplexity per size).

``k`` is positive (fitted in log space); ``p`` is signed (fitted in natural space), negative when the quantity
falls with size. Column ``loss`` holds ``y``.
"""

from __future__ import annotations

import numpy as np

from cpt_scaling.laws.base import Array, Columns, Law, Params


class PowerLaw(Law):
    """``y = k·N^p``."""

    def evaluate(self, p: Params, x: Columns) -> tuple[Array, dict[str, Array]]:
        ln_n = np.log(x["N"])
        pred = p["k"] * np.exp(p["p"] * ln_n)
        return pred, {"k": pred / p["k"], "p": pred * ln_n}


POWERLAW = PowerLaw(
    name="powerlaw",
    formula="k * N^p",
    columns=("N",),
    params=("k", "p"),
    grid={"k": (1.0, 10.0, 100.0, 1e4), "p": (-0.5, -0.1, 0.1)},
    coarse_grid={"k": (10.0,), "p": (-0.1,)},
    bounds={"k": (1e-12, 1e15), "p": (-5.0, 5.0)},
    linear=("p",),
    doc=__doc__ or "",
)
