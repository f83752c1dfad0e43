"""D-CPT Law candidates (Que et al. 2024): loss of continued pretraining as a function of N, D and ratio r.

``N`` is the model size, ``D`` the continued-pretraining tokens, ``r`` the mixture ratio of the corpus whose
loss is modelled: the domain ratio for the domain loss, ``1 - domain ratio`` (the general ratio) for the
general loss. The same parameterisation is fitted separately to each. ``ε`` keeps the ratio term finite
at ``r = 0``.

L3 is the paper's preferred form and the default (``dcpt``). L1, L2, L4 and L5 are *reconstructed*: the paper
compares five candidates, but their exact expressions were not available when this was written, so these are
plausible alternatives of the same family (separable, effective-data, discounted-data and multiplicative),
named for the paper's slots; select among them by held-out error, never by citation.
"""

from __future__ import annotations

import numpy as np

from cpt_scaling.laws.base import EXPONENT_BOUNDS, Array, Columns, Law, Params, make_law, power, power_term

COLUMNS = ("N", "D", "r")
_EXP = EXPONENT_BOUNDS
BOUNDS = {"alpha": _EXP, "beta": _EXP, "gamma": _EXP, "eta": _EXP, "zeta": _EXP, "epsilon": (1e-6, 10.0)}

FULL_GRID = {
    "E": (1.0, 2.0),
    "A": tuple(float(np.exp(v)) for v in (2.0, 8.0, 14.0)),
    "B": tuple(float(np.exp(v)) for v in (2.0, 8.0, 14.0)),
    "C": (0.05, 0.5),
    "alpha": (0.2, 0.6),
    "beta": (0.2, 0.6),
    "gamma": (0.2, 1.0),
    "eta": (0.2, 1.0),
    "epsilon": (0.01, 0.2),
    "G": (1e-3,),
    "zeta": (0.1, 0.5),
}
COARSE_GRID = {
    "E": (1.5,),
    "A": tuple(float(np.exp(v)) for v in (3.0, 10.0)),
    "B": tuple(float(np.exp(v)) for v in (3.0, 10.0)),
    "C": (0.1,),
    "alpha": (0.3,),
    "beta": (0.3,),
    "gamma": (0.3, 1.0),
    "eta": (0.5,),
    "epsilon": (0.05,),
    "G": (1e-3,),
    "zeta": (0.3,),
}


def _logs(x: Columns) -> tuple[Array, Array, Array, Array]:
    """``log N``, ``log D``, ``log r`` (0 where ``r = 0``) and the mask ``r > 0``."""
    r = x["r"]
    pos = r > 0
    return np.log(x["N"]), np.log(x["D"]), np.log(np.where(pos, r, 1.0)), pos


def _ratio_term(p: Params, r: Array) -> tuple[Array, dict[str, Array]]:
    """``C/(r+ε)^γ`` and its derivatives in C, γ, ε."""
    shifted = r + p["epsilon"]
    ln_s = np.log(shifted)
    t = power(p["C"], ln_s, p["gamma"])
    return t, {"C": t / p["C"], "gamma": -t * ln_s, "epsilon": -p["gamma"] * t / shifted}


def _discounted_data_term(p: Params, ln_d: Array, r: Array) -> tuple[Array, dict[str, Array]]:
    """``B/(D^β·(r+ε)^η)`` and its derivatives in B, β, η, ε (the ratio scales the effective data)."""
    shifted = r + p["epsilon"]
    ln_s = np.log(shifted)
    t = p["B"] * np.exp(-p["beta"] * ln_d - p["eta"] * ln_s)
    return t, {"B": t / p["B"], "beta": -t * ln_d, "eta": -t * ln_s, "epsilon": -p["eta"] * t / shifted}


def _model_term(p: Params, ln_n: Array) -> tuple[Array, dict[str, Array]]:
    return power_term(p, ln_n, "A", "alpha")


class DcptL1(Law):
    """L1 (reconstructed): ``E + A/N^α + B/D^β + C/(r+ε)^γ`` — fully separable in N, D and r."""

    def evaluate(self, p: Params, x: Columns) -> tuple[Array, dict[str, Array]]:
        ln_n, ln_d, _, _ = _logs(x)
        t_n, g = _model_term(p, ln_n)
        t_d = power(p["B"], ln_d, p["beta"])
        t_r, g_r = _ratio_term(p, x["r"])
        pred = p["E"] + t_n + t_d + t_r
        g.update(g_r, E=np.ones_like(pred), B=t_d / p["B"], beta=-t_d * ln_d)
        return pred, g


class DcptL2(Law):
    """L2 (reconstructed): ``E + A/N^α + B/(D^β·(r+ε)^η)`` — the ratio scales the effective data."""

    def evaluate(self, p: Params, x: Columns) -> tuple[Array, dict[str, Array]]:
        ln_n, ln_d, _, _ = _logs(x)
        t_n, g = _model_term(p, ln_n)
        t_d, g_d = _discounted_data_term(p, ln_d, x["r"])
        pred = p["E"] + t_n + t_d
        g.update(g_d, E=np.ones_like(pred))
        return pred, g


class DcptL3(Law):
    """L3 (Que et al. 2024, preferred): ``E + A/N^α + B·r^η/D^β + C/(r+ε)^γ``."""

    def evaluate(self, p: Params, x: Columns) -> tuple[Array, dict[str, Array]]:
        ln_n, ln_d, ln_r, pos = _logs(x)
        t_n, g = _model_term(p, ln_n)
        t_d = np.where(pos, p["B"] * np.exp(p["eta"] * ln_r - p["beta"] * ln_d), 0.0)
        t_r, g_r = _ratio_term(p, x["r"])
        pred = p["E"] + t_n + t_d + t_r
        g.update(g_r, E=np.ones_like(pred), B=t_d / p["B"], beta=-t_d * ln_d, eta=t_d * ln_r)
        return pred, g


class DcptForget(Law):
    """New candidate (not from the paper; flagged reconstructed like L1, L2, L4, L5): L3 plus forgetting that grows
    with the tokens of the *other* corpus, ``E + A/N^α + B·r^η/D^β + C/(r+ε)^γ + G·((1−r)·D)^ζ``.

    Fitted to the general loss (``r`` the general ratio), the last term is the loss the other corpus's
    ``(1 − r)·D`` tokens add: it grows with D where the general ratio is low, and vanishes at ``r = 1``; L3 has no
    D term at ``r = 0`` at all. With ``G → 0`` it is L3, so held-out error decides between them.
    """

    def evaluate(self, p: Params, x: Columns) -> tuple[Array, dict[str, Array]]:
        pred, g = DcptL3.evaluate(self, p, x)
        other = 1.0 - x["r"]
        pos = other > 0
        ln_o = np.log(np.where(pos, other, 1.0) * x["D"])
        t_f = np.where(pos, p["G"] * np.exp(p["zeta"] * ln_o), 0.0)
        g.update(G=t_f / p["G"], zeta=t_f * ln_o)
        return pred + t_f, g


class DcptL4(Law):
    """L4 (reconstructed): ``E + A/N^α + B/(D^β·(r+ε)^η) + C/(r+ε)^γ`` — discounted data plus ratio term."""

    def evaluate(self, p: Params, x: Columns) -> tuple[Array, dict[str, Array]]:
        ln_n, ln_d, _, _ = _logs(x)
        t_n, g = _model_term(p, ln_n)
        t_d, g_d = _discounted_data_term(p, ln_d, x["r"])
        t_r, g_r = _ratio_term(p, x["r"])
        pred = p["E"] + t_n + t_d + t_r
        g.update(g_d, E=np.ones_like(pred))
        g["epsilon"] = g_d["epsilon"] + g_r["epsilon"]
        g.update({k: v for k, v in g_r.items() if k != "epsilon"})
        return pred, g


class DcptL5(Law):
    """L5 (reconstructed): ``E + (A/N^α + B/D^β)/(r+ε)^γ`` — the ratio multiplies the reducible loss."""

    def evaluate(self, p: Params, x: Columns) -> tuple[Array, dict[str, Array]]:
        ln_n, ln_d, _, _ = _logs(x)
        shifted = x["r"] + p["epsilon"]
        ln_s = np.log(shifted)
        scale = np.exp(-p["gamma"] * ln_s)
        t_n = power(p["A"], ln_n, p["alpha"]) * scale
        t_d = power(p["B"], ln_d, p["beta"]) * scale
        red = t_n + t_d
        pred = p["E"] + red
        grads = {
            "E": np.ones_like(pred),
            "A": t_n / p["A"],
            "alpha": -t_n * ln_n,
            "B": t_d / p["B"],
            "beta": -t_d * ln_d,
            "gamma": -red * ln_s,
            "epsilon": -p["gamma"] * red / shifted,
        }
        return pred, grads


def _make(cls: type[Law], name: str, formula: str, params: tuple[str, ...], reconstructed: bool) -> Law:
    return make_law(cls, name, formula, columns=COLUMNS, params=params, grid=FULL_GRID, coarse_grid=COARSE_GRID,
                    bounds=BOUNDS, reconstructed=reconstructed)


_SEP = ("E", "A", "B", "C", "alpha", "beta", "gamma", "epsilon")
_FULL = ("E", "A", "B", "C", "alpha", "beta", "gamma", "eta", "epsilon")
DCPT_L1 = _make(DcptL1, "dcpt_l1", "E + A/N^alpha + B/D^beta + C/(r+epsilon)^gamma", _SEP, True)
DCPT_L2 = _make(
    DcptL2,
    "dcpt_l2",
    "E + A/N^alpha + B/(D^beta (r+epsilon)^eta)",
    ("E", "A", "B", "alpha", "beta", "eta", "epsilon"),
    True,
)
DCPT_L3 = _make(DcptL3, "dcpt_l3", "E + A/N^alpha + B r^eta/D^beta + C/(r+epsilon)^gamma", _FULL, False)
DCPT_L4 = _make(
    DcptL4, "dcpt_l4", "E + A/N^alpha + B/(D^beta (r+epsilon)^eta) + C/(r+epsilon)^gamma", _FULL, True
)
DCPT_L5 = _make(
    DcptL5,
    "dcpt_l5",
    "E + (A/N^alpha + B/D^beta)/(r+epsilon)^gamma",
    ("E", "A", "B", "alpha", "beta", "gamma", "epsilon"),
    True,
)
DCPT_FORGET = _make(DcptForget, "dcpt_forget",
                    "E + A/N^alpha + B r^eta/D^beta + C/(r+epsilon)^gamma + G ((1-r) D)^zeta",
                    (*_FULL, "G", "zeta"), True)
#: The default D-CPT law (L3) under its short name.
DCPT = _make(DcptL3, "dcpt", DCPT_L3.formula, _FULL, False)
