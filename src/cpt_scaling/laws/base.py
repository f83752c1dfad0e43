"""The :class:`Law` interface shared by every scaling-law parameterisation.

A law maps named input columns (``N``, ``D``, ``r``, ...) to a predicted loss. It is evaluated on a *batch* of
parameter vectors at once (one row per initialisation or bootstrap resample), and returns the analytic partial
derivatives of the prediction with respect to each natural-space parameter, which the fitter chains into its
log-space gradient.

Shapes: every parameter value is an array of shape ``(G, 1)``; every column is an array of shape ``(n,)``; the
prediction and each derivative have shape ``(G, n)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

Array = np.ndarray
Params = Mapping[str, Array]
Columns = Mapping[str, Array]

#: Natural-space bounds used when a law does not set its own.
COEF_BOUNDS = (1e-12, 1e12)
EXPONENT_BOUNDS = (1e-4, 5.0)


def power(coef: Array, x_log: Array, exponent: Array) -> Array:
    """``coef / x**exponent`` computed as ``coef * exp(-exponent * log x)``, broadcast to ``(G, n)``."""
    out = np.multiply(-exponent, x_log)
    np.exp(out, out=out)
    out *= coef
    return out


@dataclass(frozen=True)
class Law:
    """A named parameterisation with positive-constrained (log-space) parameters.

    ``params`` are fitted; ``fixed`` are held at the given values and reported with the fit; ``linear`` names
    parameters that are fitted in natural space (may be negative), all others are fitted as ``log(p)``.
    ``grid`` is the default initialisation grid (natural-space values per fitted parameter, full outer
    product), ``coarse_grid`` a smaller one for repeated fits (cross-validation).
    """

    name: str
    formula: str
    columns: tuple[str, ...]
    params: tuple[str, ...]
    grid: Mapping[str, tuple[float, ...]]
    coarse_grid: Mapping[str, tuple[float, ...]]
    bounds: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    fixed: Mapping[str, float] = field(default_factory=dict)
    linear: tuple[str, ...] = ()
    reconstructed: bool = False
    doc: str = ""

    def evaluate(self, p: Params, x: Columns) -> tuple[Array, dict[str, Array]]:
        """Return the predicted loss and ``{param: d prediction / d param}`` (natural space)."""
        raise NotImplementedError

    def predict(self, values: Mapping[str, float], x: Columns) -> Array:
        """Predicted loss of one parameter set (a ``{name: value}`` mapping) at the given columns."""
        p = {k: np.asarray([[float(values[k])]]) for k in (*self.params, *self.fixed)}
        cols = {c: np.asarray(x[c], dtype=float) for c in self.columns}
        pred, _ = self.evaluate(p, cols)
        return pred[0]

    def param_bounds(self, name: str) -> tuple[float, float]:
        """Natural-space bounds of a fitted parameter."""
        if name in self.bounds:
            return self.bounds[name]
        return (-50.0, 50.0) if name in self.linear else COEF_BOUNDS

    def data_grid(self, x: Columns) -> dict[str, tuple[float, ...]]:
        """Initialisation axes that depend on the data (overrides of ``grid``); none by default."""
        return {}

    def grid_points(self, coarse: bool = False, x: Columns | None = None) -> np.ndarray:
        """The initialisation grid as an array ``(G, P)`` of natural-space values, in ``params`` order; with the
        fitting columns ``x``, the law's data-dependent axes (:meth:`data_grid`) replace the static ones."""
        grid = dict(self.coarse_grid if coarse else self.grid)
        if x is not None:
            grid.update(self.data_grid(x))
        axes = [np.asarray(grid[name], dtype=float) for name in self.params]
        mesh = np.meshgrid(*axes, indexing="ij")
        return np.stack([m.ravel() for m in mesh], axis=1)


def power_term(p: Params, ln_x: Array, coef: str, exponent: str) -> tuple[Array, dict[str, Array]]:
    """``p[coef] / x^p[exponent]`` and its derivatives in both parameters."""
    t = power(p[coef], ln_x, p[exponent])
    return t, {coef: t / p[coef], exponent: -t * ln_x}


def make_law(cls: type[Law], name: str, formula: str, *, columns: tuple[str, ...], params: tuple[str, ...],
             grid: Mapping[str, tuple[float, ...]], coarse_grid: Mapping[str, tuple[float, ...]],
             bounds: Mapping[str, tuple[float, float]], reconstructed: bool) -> Law:
    """A law of class ``cls`` restricted to ``params`` (grids and bounds taken from the family's tables)."""
    return cls(
        name=name,
        formula=formula,
        columns=columns,
        params=params,
        grid={k: grid[k] for k in params},
        coarse_grid={k: coarse_grid[k] for k in params},
        bounds={k: v for k, v in bounds.items() if k in params},
        reconstructed=reconstructed,
        doc=cls.__doc__ or "",
    )
