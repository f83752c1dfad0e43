"""Split law: loss of a size-``N`` model after ``D`` pretraining and ``D_spec`` (D′) specialisation tokens.

Reconstructed: the exact form of the optimal-splitting paper (Seto et al. 2026) is not available here, so three
candidate forms are provided and ``fit_law("split", ...)`` fits each and keeps the one with the lowest held-out
relative error, or the one with the fewest parameters within one standard error of it (default protocol: hold out
the largest total token count ``D + D_spec``):

* ``split_separable``: ``E + A/N^α + B/D^β + C/(D_spec + s)^γ`` — pretraining and specialisation act
  independently; the offset ``s`` (tokens) keeps the specialisation term finite without D′, so "do not split"
  (D′ = 0, standard pretraining) is a point of the law;
* ``split_effective``: ``E + A/N^α + B/D^β + C/(D_spec + κ·D)^γ`` — pretraining tokens count as ``κ``
  effective specialisation tokens (transfer), so the specialisation term stays finite without D′;
* ``split_transfer_n``: ``E + A/N^α + B/D^β + C/(D_spec + κ·(N/N₀)^η·D)^γ`` — the transfer depends on model
  size (``N₀`` = 10⁸, a fixed reference), so the value of pretraining before splitting, the optimal specialisation
  share and the budget from which splitting pays (the split point) change with N (Seto et al. find the split point
  grows with size). The first two forms are additive in N: under them the optimal share is the same at every size.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from cpt_scaling.laws.base import EXPONENT_BOUNDS, Array, Columns, Law, Params, make_law, power

COLUMNS = ("N", "D", "D_spec")
_C = tuple(float(np.exp(v)) for v in (3.0, 10.0))
_GRID = {
    "E": (1.0, 2.0),
    "A": _C,
    "B": _C,
    "C": _C,
    "alpha": (0.2, 0.6),
    "beta": (0.2, 0.6),
    "gamma": (0.2, 0.6),
    "kappa": (0.01, 0.3),
    "s": (1e3, 1e6, 1e9),
    "eta": (-0.3, 0.3),
}
_COARSE = {
    "E": (1.5,),
    "A": _C,
    "B": _C,
    "C": (_C[1],),
    "alpha": (0.3,),
    "beta": (0.3,),
    "gamma": (0.3,),
    "kappa": (0.1,),
    "s": (1e4, 1e7),
    "eta": (0.0,),
}
_BOUNDS = {"alpha": EXPONENT_BOUNDS, "beta": EXPONENT_BOUNDS, "gamma": EXPONENT_BOUNDS, "kappa": (1e-8, 1.0),
           "s": (1.0, 1e15), "eta": (-2.0, 2.0)}
#: The reference size of ``split_transfer_n``'s transfer: κ is the transfer of a model of 10⁸ parameters.
N_REF = 1e8


def _common(p: Params, x: Columns) -> tuple[Array, dict[str, Array]]:
    ln_n, ln_d = np.log(x["N"]), np.log(x["D"])
    t_n = power(p["A"], ln_n, p["alpha"])
    t_d = power(p["B"], ln_d, p["beta"])
    pred = p["E"] + t_n + t_d
    return pred, {
        "E": np.ones_like(pred),
        "A": t_n / p["A"],
        "alpha": -t_n * ln_n,
        "B": t_d / p["B"],
        "beta": -t_d * ln_d,
    }


class SplitSeparable(Law):
    """``E + A/N^α + B/D^β + C/(D_spec + s)^γ`` (reconstructed candidate)."""

    def evaluate(self, p: Params, x: Columns) -> tuple[Array, dict[str, Array]]:
        pred, g = _common(p, x)
        shifted = x["D_spec"] + p["s"]
        ln_s = np.log(shifted)
        t_s = power(p["C"], ln_s, p["gamma"])
        g.update(C=t_s / p["C"], gamma=-t_s * ln_s, s=-p["gamma"] * t_s / shifted)
        return pred + t_s, g


class SplitEffective(Law):
    """``E + A/N^α + B/D^β + C/(D_spec + κ·D)^γ`` (reconstructed candidate)."""

    def evaluate(self, p: Params, x: Columns) -> tuple[Array, dict[str, Array]]:
        pred, g = _common(p, x)
        eff = x["D_spec"] + p["kappa"] * x["D"]
        ln_e = np.log(eff)
        t_s = power(p["C"], ln_e, p["gamma"])
        g.update(C=t_s / p["C"], gamma=-t_s * ln_e, kappa=-p["gamma"] * t_s * x["D"] / eff)
        return pred + t_s, g


class SplitTransferN(Law):
    """``E + A/N^α + B/D^β + C/(D_spec + κ·(N/N₀)^η·D)^γ``, N₀ = 10⁸ (reconstructed; the transfer depends on N)."""

    def evaluate(self, p: Params, x: Columns) -> tuple[Array, dict[str, Array]]:
        pred, g = _common(p, x)
        ln_ratio = np.log(x["N"] / N_REF)
        transfer = p["kappa"] * np.exp(p["eta"] * ln_ratio)  # κ(N), (G, n)
        eff = x["D_spec"] + transfer * x["D"]
        ln_e = np.log(eff)
        t_s = power(p["C"], ln_e, p["gamma"])
        d_eff = -p["gamma"] * t_s / eff  # d t_s / d eff
        g.update(C=t_s / p["C"], gamma=-t_s * ln_e, kappa=d_eff * transfer / p["kappa"] * x["D"],
                 eta=d_eff * transfer * ln_ratio * x["D"])
        return pred + t_s, g


def _make(cls: type[Law], name: str, formula: str, params: tuple[str, ...]) -> Law:
    return make_law(cls, name, formula, columns=COLUMNS, params=params, grid=_GRID, coarse_grid=_COARSE,
                    bounds=_BOUNDS, reconstructed=True)


_P = ("E", "A", "B", "C", "alpha", "beta", "gamma")
SPLIT_SEPARABLE = _make(
    SplitSeparable, "split_separable", "E + A/N^alpha + B/D^beta + C/(D_spec + s)^gamma", (*_P, "s")
)
SPLIT_EFFECTIVE = _make(
    SplitEffective, "split_effective", "E + A/N^alpha + B/D^beta + C/(D_spec + kappa*D)^gamma", (*_P, "kappa")
)
SPLIT_TRANSFER_N = replace(
    _make(SplitTransferN, "split_transfer_n", "E + A/N^alpha + B/D^beta + C/(D_spec + kappa*(N/1e8)^eta*D)^gamma",
          (*_P, "kappa", "eta")),
    linear=("eta",),
    bounds={**{k: v for k, v in _BOUNDS.items() if k in (*_P, "kappa")}, "kappa": (1e-10, 1e4), "eta": (-2.0, 2.0)},
)
#: Candidates that ``fit_law("split", ...)`` selects among by held-out error.
SPLIT_CANDIDATES = ("split_separable", "split_effective", "split_transfer_n")
#: Candidates under which the optimal share and the split point depend on N (the others are additive in N).
SIZE_DEPENDENT = ("split_transfer_n",)
