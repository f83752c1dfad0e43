"""Huber-on-log-loss objective and a batched, bounded L-BFGS that minimises many starts at once.

The objective of one parameter vector θ (log of each positive parameter, natural value of a ``linear`` one) is
``Σ_i w_i · huber_δ(log pred_i(θ) − log y_i)``, with its analytic gradient from the law's derivatives.

:func:`batched_lbfgs` runs L-BFGS on a ``(G, P)`` array of starts in lock-step with numpy: one law evaluation
serves every start, each row keeps its own curvature pairs, step and convergence flag, and converged rows drop
out. :func:`multistart_minimize` evaluates the whole grid, gives the most promising quarter a few batched
L-BFGS iterations, runs the best rows to convergence, and polishes the best few to tight tolerance. (Pure
numpy: no per-iteration BLAS calls, which made scipy's L-BFGS-B slow on busy, multi-threaded-BLAS machines.)
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from cpt_scaling.laws.base import Law

log = logging.getLogger(__name__)

Fun = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
_TINY = 1e-300
#: Rows per evaluation chunk are chosen so that one ``(rows, n)`` array stays cache-sized.
_CHUNK_ELEMENTS = 4096


def huber(res: np.ndarray, delta: float) -> np.ndarray:
    """``0.5·res²`` inside ``|res| ≤ δ``, ``δ·(|res| − δ/2)`` outside."""
    a = np.abs(res)
    return np.where(a <= delta, 0.5 * res * res, delta * (a - 0.5 * delta))


@dataclass
class Objective:
    """Huber loss on log-loss of ``law`` at the points ``x``/``y``; optional per-start weights ``(G, n)``, and
    ``log_y`` either ``(n,)`` or per start ``(G, n)`` (a parametric bootstrap's simulated losses).

    ``scale`` divides the value and gradient (keeps the optimiser's tolerances meaningful when δ is small).
    """

    law: Law
    x: dict[str, np.ndarray]
    log_y: np.ndarray
    delta: float
    weights: np.ndarray | None = None
    scale: float = 1.0

    def __post_init__(self) -> None:
        self.is_log = np.array([name not in self.law.linear for name in self.law.params])
        self.fixed = {k: np.full((1, 1), v) for k, v in self.law.fixed.items()}

    def natural(self, theta: np.ndarray) -> np.ndarray:
        """Natural-space parameters of ``theta`` (same shape)."""
        return np.where(self.is_log, np.exp(np.where(self.is_log, theta, 0.0)), theta)

    def to_theta(self, values: np.ndarray) -> np.ndarray:
        """Optimiser coordinates of natural-space ``values``."""
        return np.where(self.is_log, np.log(np.where(self.is_log, values, 1.0)), values)

    def __call__(self, theta: np.ndarray, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Value ``(G,)`` and gradient ``(G, P)`` at ``theta`` ``(G, P)``; ``rows`` index the weight rows."""
        chunk = max(1, _CHUNK_ELEMENTS // max(1, self.log_y.shape[-1]))
        if rows is None and (self.weights is not None or self.log_y.ndim == 2):
            rows = np.arange(theta.shape[0])
        if theta.shape[0] <= chunk:
            return self._eval(theta, rows)
        f = np.empty(theta.shape[0])
        g = np.empty_like(theta)
        for start in range(0, theta.shape[0], chunk):
            sl = slice(start, start + chunk)
            f[sl], g[sl] = self._eval(theta[sl], None if rows is None else rows[sl])
        return f, g

    def _eval(self, theta: np.ndarray, rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        nat = self.natural(theta)
        p = {name: nat[:, j : j + 1] for j, name in enumerate(self.law.params)}
        p.update(self.fixed)
        pred, grads = self.law.evaluate(p, self.x)
        pred = np.maximum(pred, _TINY)
        log_y = self.log_y if self.log_y.ndim == 1 or rows is None else self.log_y[rows]
        res = np.log(pred) - log_y
        psi = np.clip(res, -self.delta, self.delta)
        c = np.abs(psi)
        h = np.abs(res)
        h -= 0.5 * c
        h *= c  # = huber(res): c = min(|res|, δ), h = c·(|res| − c/2)
        if self.weights is not None:
            w = self.weights if rows is None else self.weights[rows]
            h = h * w
            psi = psi * w
        coef = psi / pred
        f = h.sum(axis=1) / self.scale
        g = np.empty_like(theta)
        for j, name in enumerate(self.law.params):
            g[:, j] = np.einsum("ij,ij->i", coef, grads[name])
        g *= np.where(self.is_log, nat, 1.0) / self.scale
        return f, g


def batched_lbfgs(
    fun: Fun,
    x0: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    *,
    max_iter: int = 500,
    memory: int = 10,
    ftol: float = 1e-12,
    gtol: float = 1e-9,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Minimise every row of ``x0`` ``(G, P)`` within box bounds; return ``x``, ``f`` and a converged mask.

    Projected L-BFGS with an Armijo backtracking line search, vectorised over rows. Variables at a bound whose
    gradient points outward are frozen for that step.
    """
    n_rows, n_par = x0.shape
    x = np.clip(x0, lo, hi)
    rows = np.arange(n_rows)
    f, g = fun(x, rows)
    s_hist = np.zeros((n_rows, memory, n_par))
    y_hist = np.zeros((n_rows, memory, n_par))
    rho = np.zeros((n_rows, memory))
    gamma = 0.1 / np.maximum(np.linalg.norm(g, axis=1), 1e-12)
    done = ~np.isfinite(f)
    for it in range(max_iter):
        act = np.flatnonzero(~done)
        if act.size == 0:
            break
        xa, ga, fa = x[act], g[act], f[act]
        frozen = ((xa <= lo) & (ga > 0)) | ((xa >= hi) & (ga < 0))
        gf = np.where(frozen, 0.0, ga)
        small = np.abs(gf).max(axis=1) < gtol
        # two-loop recursion, newest pair first; empty slots have rho = 0 and leave q unchanged
        q = gf.copy()
        alphas = np.zeros((act.size, memory))
        order = [(it - 1 - k) % memory for k in range(min(it, memory))]
        s_act, y_act, rho_act = s_hist[act], y_hist[act], rho[act]
        for k in order:
            a_k = rho_act[:, k] * np.einsum("ij,ij->i", s_act[:, k], q)
            alphas[:, k] = a_k
            q -= a_k[:, None] * y_act[:, k]
        r = gamma[act, None] * q
        for k in reversed(order):
            b_k = rho_act[:, k] * np.einsum("ij,ij->i", y_act[:, k], r)
            r += (alphas[:, k] - b_k)[:, None] * s_act[:, k]
        d = np.where(frozen, 0.0, -r)
        slope = np.einsum("ij,ij->i", gf, d)
        bad = ~(slope < 0)
        if bad.any():  # not a descent direction: restart memory for those rows
            d[bad] = -gamma[act[bad], None] * gf[bad]
            rho[act[bad]] = 0.0
        step = np.ones(act.size)
        x_new, f_new, g_new = xa.copy(), fa.copy(), ga.copy()
        pending = np.arange(act.size)
        for _ in range(40):
            xt = np.clip(xa[pending] + step[pending, None] * d[pending], lo, hi)
            ft, gt = fun(xt, act[pending])
            decrease = np.einsum("ij,ij->i", ga[pending], xt - xa[pending])
            ok = np.isfinite(ft) & (ft <= fa[pending] + 1e-4 * decrease)
            acc = pending[ok]
            x_new[acc], f_new[acc], g_new[acc] = xt[ok], ft[ok], gt[ok]
            pending = pending[~ok]
            if pending.size == 0:
                break
            step[pending] *= 0.5
        failed = np.zeros(act.size, dtype=bool)
        failed[pending] = True
        s = x_new - xa
        yv = g_new - ga
        sy = np.einsum("ij,ij->i", s, yv)
        yy = np.einsum("ij,ij->i", yv, yv)
        good = (sy > 1e-12 * np.sqrt(yy * np.einsum("ij,ij->i", s, s))) & (sy > 0)
        slot = it % memory
        s_hist[act, slot] = np.where(good[:, None], s, 0.0)
        y_hist[act, slot] = np.where(good[:, None], yv, 0.0)
        rho[act, slot] = np.where(good, 1.0 / np.where(good, sy, 1.0), 0.0)
        gamma[act] = np.where(good, sy / np.where(good, yy, 1.0), gamma[act])
        rel = (fa - f_new) <= ftol * np.maximum(np.abs(fa), 1e-12)
        x[act], f[act], g[act] = x_new, f_new, g_new
        done[act] = small | failed | (rel & (it > 0))
    return x, f, done


def multistart_minimize(
    obj: Objective,
    starts: np.ndarray,
    *,
    prescreen: float = 0.25,
    min_screen: int = 64,
    screen_iters: int = 10,
    keep: int = 32,
    n_polish: int = 2,
    max_iter: int = 200,
    polish_iter: int = 300,
    info: dict | None = None,
) -> tuple[np.ndarray, float, int]:
    """Best ``theta`` from a grid of natural-space ``starts`` ``(G, P)``; returns ``(theta, f, n_starts)``.

    The objective is evaluated at every start; the best ``prescreen`` fraction (at least ``min_screen``; 1.0
    keeps all) gets ``screen_iters`` batched L-BFGS iterations; the ``keep`` best of those continue to
    convergence; the ``n_polish`` best distinct results (within 1 % of the best) are refined to tight
    tolerances. ``info``, when given, receives ``converged`` (the best row met a convergence test before its
    iteration cap) and ``candidates`` (distinct converged optima, best first; the bootstrap restarts from them).
    """
    lo, hi = bounds_theta(obj)
    theta0 = np.clip(obj.to_theta(starts), lo, hi)
    n_screen = max(min_screen, int(np.ceil(prescreen * len(theta0))))
    if n_screen < len(theta0):
        f0, _ = obj(theta0)
        theta0 = theta0[np.argsort(np.where(np.isfinite(f0), f0, np.inf))[:n_screen]]
    theta, f, _ = batched_lbfgs(obj, theta0, lo, hi, max_iter=screen_iters)
    f = np.where(np.isfinite(f), f, np.inf)
    best = np.argsort(f)[: max(keep, n_polish)]
    theta, f, done = batched_lbfgs(obj, theta[best], lo, hi, max_iter=max_iter, ftol=1e-10)
    order = np.argsort(np.where(np.isfinite(f), f, np.inf))
    converged = bool(done[order[0]])
    picked: list[np.ndarray] = []
    for i in order:
        if len(picked) == n_polish:
            break
        if f[i] > f[order[0]] + 1e-2 * abs(f[order[0]]):  # only near-best basins are worth polishing
            break
        if all(np.max(np.abs(theta[i] - t)) > 1e-6 for t in picked):
            picked.append(theta[i])
    best_theta, best_f = theta[order[0]], float(f[order[0]])
    if picked:
        pol, fp, dp = batched_lbfgs(
            obj, np.array(picked), lo, hi, max_iter=polish_iter, ftol=1e-15, gtol=1e-11
        )
        i = int(np.argmin(np.where(np.isfinite(fp), fp, np.inf)))
        if fp[i] < best_f:
            best_theta, best_f = pol[i], float(fp[i])
            converged = bool(dp[i])
    if info is not None:
        _, _, check = batched_lbfgs(obj, best_theta[None, :], lo, hi, max_iter=100, ftol=1e-10)
        converged = converged or bool(check[0])
        cands: list[np.ndarray] = [best_theta]
        for i in order:
            if np.isfinite(f[i]) and all(np.max(np.abs(theta[i] - t)) > 1e-3 for t in cands):
                cands.append(theta[i])
        info.update(converged=converged, candidates=np.array(cands))
    log.debug("multistart %s: %d starts, best objective %.6g", obj.law.name, len(starts), best_f * obj.scale)
    return best_theta, best_f, len(starts)


def bounds_theta(obj: Objective) -> tuple[np.ndarray, np.ndarray]:
    """Optimiser-coordinate bounds of every fitted parameter."""
    b = np.array([obj.law.param_bounds(name) for name in obj.law.params], dtype=float)
    return obj.to_theta(b[:, 0]), obj.to_theta(b[:, 1])
