"""Cross-domain D-CPT Law (Que et al. 2024): L3 plus a domain term ``F/K^μ``.

``K = w1/k1 + w2·k2`` is the domain-specific learnable coefficient: ``k1`` is the domain loss of the base
model before continued pretraining, ``k2`` the early slope of the domain loss in a short probe run (loss
decrease per token at the start of CPT, positive). Within one domain ``K`` is constant, so the term is a
per-domain offset whose shape across domains is learned; fitting needs several domains (columns ``domain``
optional, used by leave-domains-out validation). ``w1`` is fixed to 1 because a common scale of ``(w1, w2)``
is absorbed by ``F``. ``w2`` is started over a log-grid centred where both parts of ``K`` are equal on the data
(``w2·median k2 = median 1/k1``) and spanning four decades, so the fit does not depend on the unit of ``k2`` (the
study states it per billion tokens).
"""

from __future__ import annotations

import numpy as np

from cpt_scaling.laws.base import Array, Columns, Law, Params, power
from cpt_scaling.laws.dcpt import BOUNDS, COARSE_GRID, DCPT_L3

_L3 = DCPT_L3.params


class CrossDomainLaw(Law):
    """``E + A/N^α + B·r^η/D^β + C/(r+ε)^γ + F/K^μ`` with ``K = w1/k1 + w2·k2``."""

    def evaluate(self, p: Params, x: Columns) -> tuple[Array, dict[str, Array]]:
        base, grads = DCPT_L3.evaluate(p, x)
        k1, k2 = x["k1"], x["k2"]
        w1 = p["w1"] if "w1" in p else self.fixed["w1"]
        big_k = w1 / k1 + p["w2"] * k2
        ln_k = np.log(big_k)
        t = power(p["F"], ln_k, p["mu"])
        grads.update(F=t / p["F"], mu=-t * ln_k, w2=-p["mu"] * t * k2 / big_k)
        return base + t, grads

    def data_grid(self, x: Columns) -> dict[str, tuple[float, ...]]:
        """``w2`` starts spanning 1e-2..1e2 times the scale that balances ``w1/k1`` and ``w2·k2``."""
        k1, k2 = np.asarray(x["k1"], dtype=float), np.asarray(x["k2"], dtype=float)
        centre = float(np.median(self.fixed["w1"] / k1) / np.median(k2))
        return {"w2": tuple(centre * np.geomspace(1e-2, 1e2, 5))}


_GRID = dict(COARSE_GRID)
_GRID.update(E=(1.0, 2.0), C=(0.1, 0.5), F=(0.05, 0.5), mu=(0.5, 1.5), w2=(1.0,))
_COARSE = dict(COARSE_GRID)
_COARSE.update(gamma=(0.5,), F=(0.1, 0.5), mu=(1.0,), w2=(1.0,))

CROSS_DOMAIN = CrossDomainLaw(
    name="cross_domain",
    formula="E + A/N^alpha + B r^eta/D^beta + C/(r+epsilon)^gamma + F/K^mu, K = w1/k1 + w2*k2",
    columns=("N", "D", "r", "k1", "k2"),
    params=(*_L3, "F", "mu", "w2"),
    grid=_GRID,
    coarse_grid=_COARSE,
    bounds={**BOUNDS, "mu": (1e-4, 10.0)},
    fixed={"w1": 1.0},
    doc=__doc__ or "",
)
