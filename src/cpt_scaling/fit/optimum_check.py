"""An independent check that a fit is the optimum of its own objective (never an optimiser's own word for it).

The project's objective (Huber δ on log loss, in the optimiser's coordinates: :class:`~cpt_scaling.fit.optimize.
Objective`) at the reported parameters is compared with the best of

* scipy's Nelder-Mead (adaptive, restarted until a restart stops improving) from the reported optimum, and
* a scipy L-BFGS-B multistart (analytic gradient, the law's bounds) whose best result is polished by Nelder-Mead,

on the same objective. A fit is at the optimum when its objective is within :data:`TOL` relative of that reference.
Used by ``bench/bench_fit_optimum.py`` (synthetic fits) and by the demo recorder on every law JSON the demo wrote
(:func:`check_law_json`, ``report/demo/law_optimum_check.csv``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from cpt_scaling.core.errors import InputError
from cpt_scaling.fit.optimize import Objective, bounds_theta
from cpt_scaling.laws import LAWS

TOL = 1e-6  # relative gap to the reference below which a fit is at the optimum
WITHIN = "within_1e-6"  # the verdict's column
N_STARTS = 15  # L-BFGS-B starts of the multistart


def _scalar(obj: Objective) -> tuple[Callable[[np.ndarray], tuple[float, np.ndarray]], Callable[[np.ndarray], float]]:
    """Value-and-gradient and value-only callables of one parameter vector (non-finite values as 1e300)."""

    def fg(theta: np.ndarray) -> tuple[float, np.ndarray]:
        f, g = obj(theta[None, :])
        return (float(f[0]), g[0]) if np.isfinite(f[0]) else (1e300, np.zeros_like(theta))

    return fg, lambda theta: fg(theta)[0]


def nelder_mead(obj: Objective, theta: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, float]:
    """Adaptive Nelder-Mead from ``theta``, restarted until a restart improves by less than 1e-12 relative."""
    _, f = _scalar(obj)
    best, fbest = theta, f(theta)
    for _ in range(6):
        res = minimize(f, best, method="Nelder-Mead", bounds=list(zip(lo, hi, strict=True)),
                       options={"xatol": 1e-10, "fatol": 1e-15, "maxiter": 4000 * theta.size, "adaptive": True})
        gain = fbest - res.fun
        if res.fun < fbest:
            best, fbest = res.x, float(res.fun)
        if gain <= 1e-12 * abs(fbest):
            break
    return best, fbest


def reference(obj: Objective, theta_proj: np.ndarray, starts: np.ndarray) -> float:
    """Best objective of: Nelder-Mead from the project's optimum ``theta_proj``; an L-BFGS-B multistart from the
    natural-space ``starts`` ``(S, P)``, its best polished by Nelder-Mead."""
    lo, hi = bounds_theta(obj)
    fg, _ = _scalar(obj)
    _, f_nm = nelder_mead(obj, theta_proj, lo, hi)
    best_x, best_f = None, np.inf
    for x0 in np.clip(obj.to_theta(starts), lo, hi):
        res = minimize(fg, x0, jac=True, method="L-BFGS-B", bounds=list(zip(lo, hi, strict=True)),
                       options={"maxiter": 3000, "ftol": 1e-15, "gtol": 1e-12})
        if res.fun < best_f:
            best_x, best_f = res.x, float(res.fun)
    _, f_ms = nelder_mead(obj, best_x, lo, hi)
    return min(f_nm, f_ms)


def multistart_points(obj: Objective, x: dict[str, np.ndarray], n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` natural-space starts: distinct points of the law's initialisation grid, and where the grid has
    fewer, draws uniform within the bounds in the optimiser's coordinates."""
    grid = obj.law.grid_points(False, x)
    starts = grid[rng.choice(len(grid), size=min(n, len(grid)), replace=False)]
    if len(starts) < n:
        lo, hi = bounds_theta(obj)
        starts = np.vstack([starts, obj.natural(rng.uniform(lo, hi, size=(n - len(starts), lo.size)))])
    return starts


def check_fit(fit: dict[str, Any], where: str, n_starts: int = N_STARTS, seed: int = 0) -> dict[str, Any]:
    """The objective of one fit of a law JSON (``law``, ``params``, ``points_used``, ``huber_delta``) at its
    reported parameters, against :func:`reference`: ``form``, ``n_points``, ``objective_project``,
    ``objective_best``, ``ratio`` and :data:`WITHIN`. ``where`` names the fit in errors."""
    law = LAWS.get(str(fit.get("law")))
    if law is None:
        raise InputError(where, f"unknown law {fit.get('law')!r}")
    if sorted(fit.get("fixed_params", [])) != sorted(law.fixed):
        raise InputError(where, f"fixed_params {fit.get('fixed_params')} differ from the law's {sorted(law.fixed)}")
    points = pd.DataFrame(fit["points_used"])
    x = {c: points[c].to_numpy(float) for c in law.columns}
    obj = Objective(law, x, np.log(points["loss"].to_numpy(float)), float(fit["huber_delta"]))
    theta = obj.to_theta(np.array([float(fit["params"][k]) for k in law.params]))
    f_proj = float(obj(theta[None, :])[0][0])
    starts = multistart_points(obj, x, n_starts, np.random.default_rng(seed))
    f_best = min(f_proj, reference(obj, theta, starts))
    ratio = f_proj / f_best
    return {"form": law.name, "n_points": len(points), "objective_project": f_proj, "objective_best": f_best,
            "ratio": ratio, WITHIN: bool(ratio <= 1 + TOL)}


def law_fits(law_json: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The fits a law JSON holds, by target: the JSON itself (target ``all``) when it is one fit, else each
    top-level entry that is one (``domain_loss``, ``general_loss``, ``general_powerlaw``, ...)."""
    def is_fit(d: Any) -> bool:
        return isinstance(d, dict) and {"law", "params", "points_used", "huber_delta"} <= set(d)

    if is_fit(law_json):
        return [("all", law_json)]
    return [(key, value) for key, value in sorted(law_json.items()) if is_fit(value)]


def check_law_json(name: str, law_json: dict[str, Any], n_starts: int = N_STARTS) -> list[dict[str, Any]]:
    """:func:`check_fit` of every fit of one law JSON (``name``: its file name), one row each with ``law`` and
    ``target`` first."""
    return [{"law": name, "target": target, **check_fit(fit, f"{name}: {target}", n_starts)}
            for target, fit in law_fits(law_json)]
