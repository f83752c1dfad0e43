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
from typing import Any

import numpy as np
from scipy.optimize import least_squares, minimize

from cpt_scaling.laws.base import Law

log = logging.getLogger(__name__)

Fun = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
_TINY = 1e-300
#: Rows per evaluation chunk are chosen so that one ``(rows, n)`` array stays cache-sized.
_CHUNK_ELEMENTS = 4096
#: A fit is converged when one more round of polishing lowers its objective by at most this much (relative).
POLISH_RTOL = 1e-8


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

    def residuals(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Log-loss residuals ``(n,)`` of one parameter vector ``theta`` ``(P,)`` (row 0 of any per-start
        ``log_y``) and their Jacobian ``(n, P)`` in the optimiser's coordinates."""
        res, jac = self.residual_rows(theta[None, :], np.zeros(1, dtype=int))
        return res[0], jac[0]

    def residual_rows(self, theta: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Residuals ``(G, n)`` and Jacobians ``(G, n, P)`` at ``theta`` ``(G, P)`` against the ``rows`` of a
        per-start ``log_y``."""
        nat = self.natural(theta)
        p = {name: nat[:, j : j + 1] for j, name in enumerate(self.law.params)}
        p.update(self.fixed)
        pred, grads = self.law.evaluate(p, self.x)
        pred = np.maximum(pred, _TINY)
        jac = np.stack([grads[name] / pred for name in self.law.params], axis=2)
        jac *= np.where(self.is_log, nat, 1.0)[:, None, :]
        log_y = self.log_y if self.log_y.ndim == 1 else self.log_y[rows]
        return np.log(pred) - log_y, jac

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
    gradient points outward are frozen for that step. A row is converged when its projected gradient is below
    ``gtol`` or a step lowered the objective by less than ``ftol`` relative; a row whose line search fails (after
    one retry along steepest descent) or that reaches ``max_iter`` stops unconverged.
    """
    n_rows, n_par = x0.shape
    x = np.clip(x0, lo, hi)
    rows = np.arange(n_rows)
    f, g = fun(x, rows)
    s_hist = np.zeros((n_rows, memory, n_par))
    y_hist = np.zeros((n_rows, memory, n_par))
    rho = np.zeros((n_rows, memory))
    gamma = 0.1 / np.maximum(np.linalg.norm(g, axis=1), 1e-12)
    done = np.zeros(n_rows, dtype=bool)
    stop = ~np.isfinite(f)
    restarted = np.zeros(n_rows, dtype=bool)
    for it in range(max_iter):
        act = np.flatnonzero(~stop)
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
        # a failed line search is no convergence test: retry once along steepest descent, then stop the row
        # without counting it as converged
        retry = failed & (it > 0) & ~bad & ~restarted[act]
        restarted[act] = retry
        rho[act[retry]] = 0.0
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
        done[act] = small | (rel & (it > 0) & ~failed)
        stop[act] = done[act] | (failed & ~retry)
    return x, f, done


def batched_gauss_newton(
    obj: Objective, x0: np.ndarray, lo: np.ndarray, hi: np.ndarray, *, max_iter: int = 40, rtol: float = 1e-10
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Levenberg-Marquardt on the Huber objective for every row of ``x0`` ``(G, P)`` at once; returns ``x``, ``f``
    and a converged mask, like :func:`batched_lbfgs`.

    Each step minimises the iteratively-reweighted quadratic model ``½Σ w_i (r_i + J_i·s)²`` with
    ``w_i = min(1, δ/|r_i|)`` (it touches the Huber loss at the current residuals and lies above it), damped by
    ``λ·diag``, clipped to the bounds, and is kept only where it lowers the true objective. A row converges when a
    kept step, or the model's own predicted decrease, lowers the objective by at most ``rtol`` relative; rows whose
    damping grows past 1e10 stop unconverged. The model's curvature follows the kinks of a nearly-L1 Huber
    objective where L-BFGS's secant pairs do not, which is what the bootstrap's many small refits need.
    """
    n_rows, n_par = x0.shape
    x = np.clip(x0, lo, hi)
    rows = np.arange(n_rows)
    f, _ = obj(x, rows)
    lam = np.full(n_rows, 1e-3)
    done = np.zeros(n_rows, dtype=bool)
    stop = ~np.isfinite(f)
    eye = np.eye(n_par)
    for _ in range(max_iter):
        act = np.flatnonzero(~stop)
        if act.size == 0:
            break
        res, jac = obj.residual_rows(x[act], act)
        w = np.minimum(1.0, obj.delta / np.maximum(np.abs(res), 1e-300))
        if obj.weights is not None:
            w = w * obj.weights[act]
        weighted = np.swapaxes(jac * w[:, :, None], 1, 2)
        grad = (weighted @ res[:, :, None])[:, :, 0]
        hess = weighted @ jac
        diag = np.einsum("app->ap", hess)
        damped = hess + lam[act, None, None] * (diag[:, :, None] * eye + 1e-12 * eye)
        try:
            step = np.linalg.solve(damped, -grad[:, :, None])[:, :, 0]
        except np.linalg.LinAlgError:
            step = -grad / np.maximum(diag, 1e-300)
        xt = np.clip(x[act] + step, lo, hi)
        ft, _ = obj(xt, act)
        ok = np.isfinite(ft) & (ft < f[act])
        gain = np.where(ok, f[act] - ft, 0.0)
        x[act[ok]], f_old = xt[ok], f[act]
        f[act[ok]] = ft[ok]
        lam[act] = np.where(ok, np.maximum(lam[act] / 3.0, 1e-12), lam[act] * 4.0)
        model = -(np.einsum("ap,ap->a", grad, step) + 0.5 * np.einsum("ap,apq,aq->a", step, hess, step)) / obj.scale
        done[act] = (ok & (gain <= rtol * np.abs(f_old))) | (model <= rtol * np.abs(f_old))
        stop[act] = done[act] | (lam[act] > 1e10)
    return x, f, done


def projected_gradient(obj: Objective, theta: np.ndarray) -> float:
    """Largest component of the projected gradient of ``obj`` at ``theta`` (``(P,)``), in objective units of
    ``obj.scale``: components pushing out of the box at an active bound count as zero."""
    lo, hi = bounds_theta(obj)
    _, g = obj(theta[None, :])
    g = g[0]
    outward = ((theta <= lo) & (g > 0)) | ((theta >= hi) & (g < 0))
    return float(np.max(np.abs(np.where(outward, 0.0, g)), initial=0.0))


def polish(obj: Objective, theta: np.ndarray, *, rounds: int = 6, rtol: float = POLISH_RTOL,
           evals_per_param: int = 400) -> tuple[np.ndarray, float, dict[str, Any]]:
    """Refine ``theta`` until a round of polishing cannot lower the objective by more than ``rtol`` relative.

    A round is a tight batched L-BFGS run, then (unweighted objectives) a robust trust-region least-squares step
    on the residuals (:func:`_robust_least_squares`), then scipy's Nelder-Mead (derivative free, so the kinks of a
    nearly-L1 Huber objective and a narrow curved valley do not stop it; adaptive coefficients above three
    parameters; restarted each round with a fresh simplex). Returns ``theta``, the scaled objective and the
    optimality record ``{test, passed, polish_improvement, projected_gradient, rounds}``: ``passed`` means the last
    round improved the objective by at most ``rtol`` relative (``polish_improvement``).
    """
    lo, hi = bounds_theta(obj)
    bounds = list(zip(lo, hi, strict=True))

    def value(t: np.ndarray) -> float:
        f = float(obj(t[None, :])[0][0])
        return f if np.isfinite(f) else np.inf

    best, f_best = np.clip(theta, lo, hi), value(np.clip(theta, lo, hi))
    unweighted = obj.weights is None and obj.log_y.ndim == 1
    improvement, n_rounds = np.inf, 0
    while n_rounds < rounds:
        n_rounds += 1
        x, fx, _ = batched_lbfgs(obj, best[None, :], lo, hi, max_iter=300, ftol=1e-15, gtol=1e-12)
        start, f_start = (x[0], float(fx[0])) if fx[0] < f_best else (best, f_best)
        if unweighted:
            start, f_start = _robust_least_squares(obj, start, f_start, lo, hi, value)
        res = minimize(value, start, method="Nelder-Mead", bounds=bounds,
                       options={"xatol": 1e-9, "fatol": 1e-13 * max(abs(f_best), 1e-300),
                                "maxfev": evals_per_param * best.size, "adaptive": best.size > 3})
        cand, f_cand = (res.x, float(res.fun)) if res.fun < f_start else (start, f_start)
        improvement = (f_best - f_cand) / max(abs(f_best), 1e-300)
        if f_cand < f_best:
            best, f_best = cand, f_cand
        if improvement <= rtol:
            break
    record = {"test": f"polish: a round of L-BFGS, robust least squares and Nelder-Mead lowers the objective by "
                      f"<= {rtol:g} relative",
              "passed": bool(improvement <= rtol), "polish_improvement": float(max(improvement, 0.0)),
              "projected_gradient": projected_gradient(obj, best), "rounds": n_rounds}
    return best, f_best, record


def _robust_least_squares(obj: Objective, theta: np.ndarray, f_theta: float, lo: np.ndarray, hi: np.ndarray,
                          value: Callable[[np.ndarray], float]) -> tuple[np.ndarray, float]:
    """scipy's trust-region least squares with its ``huber`` loss at ``f_scale = δ``: its cost
    ``½δ²·Σρ(r²/δ²)`` is exactly ``Σ huber_δ(r)``, minimised with the residuals' Jacobian (a Gauss-Newton model
    of the kinked objective). Returns the better of ``theta`` and its result."""
    span = 1e-10 * np.maximum(1.0, np.abs(hi - lo))
    x0 = np.clip(theta, lo + span, hi - span)
    try:
        res = least_squares(lambda t: obj.residuals(t)[0], x0, jac=lambda t: obj.residuals(t)[1], bounds=(lo, hi),
                            method="trf", loss="huber", f_scale=obj.delta, x_scale="jac", ftol=1e-15, xtol=1e-15,
                            gtol=1e-15, max_nfev=200 * theta.size)
    except (ValueError, np.linalg.LinAlgError):  # a non-finite residual at a trial point
        return theta, f_theta
    f_res = value(res.x)
    return (res.x, f_res) if f_res < f_theta else (theta, f_theta)


def multistart_minimize(
    obj: Objective,
    starts: np.ndarray,
    *,
    prescreen: float = 0.25,
    min_screen: int = 64,
    screen_iters: int = 10,
    keep: int = 64,  # 32 left 2 of 241 cross-domain fits (12 parameters) in a worse basin (bench_fit_optimum)
    n_polish: int = 2,
    max_iter: int = 200,
    polish_iter: int = 300,
    info: dict | None = None,
) -> tuple[np.ndarray, float, int]:
    """Best ``theta`` from a grid of natural-space ``starts`` ``(G, P)``; returns ``(theta, f, n_starts)``.

    The objective is evaluated at every start; the best ``prescreen`` fraction (at least ``min_screen``; 1.0
    keeps all) gets ``screen_iters`` batched L-BFGS iterations; the ``keep`` best of those continue for
    ``max_iter`` iterations; the ``n_polish`` best distinct results (within 1 % of the best) are refined by
    :func:`polish` (``polish_iter`` caps its Nelder-Mead evaluations per parameter), and the best polished optimum
    wins. ``info``, when given, receives ``converged`` (the winner passed the polish's optimality test),
    ``optimality`` (that test's record) and ``candidates`` (distinct optima, best first; the bootstrap restarts
    from them).
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
    theta, f, _ = batched_lbfgs(obj, theta[best], lo, hi, max_iter=max_iter, ftol=1e-10)
    order = np.argsort(np.where(np.isfinite(f), f, np.inf))
    picked: list[np.ndarray] = []
    for i in order:
        if len(picked) == n_polish:
            break
        if picked and f[i] > f[order[0]] + 1e-2 * abs(f[order[0]]):  # only near-best basins are worth polishing
            break
        if all(np.max(np.abs(theta[i] - t)) > 1e-6 for t in picked):
            picked.append(theta[i])
    polished = [polish(obj, t, evals_per_param=polish_iter) for t in picked]
    best_theta, best_f, optimality = min(polished, key=lambda r: r[1])
    if info is not None:
        cands: list[np.ndarray] = [best_theta]
        for i in order:
            if np.isfinite(f[i]) and all(np.max(np.abs(theta[i] - t)) > 1e-3 for t in cands):
                cands.append(theta[i])
        info.update(converged=optimality["passed"], optimality=optimality, candidates=np.array(cands))
    log.debug("multistart %s: %d starts, best objective %.6g", obj.law.name, len(starts), best_f * obj.scale)
    return best_theta, best_f, len(starts)


def bounds_theta(obj: Objective) -> tuple[np.ndarray, np.ndarray]:
    """Optimiser-coordinate bounds of every fitted parameter."""
    b = np.array([obj.law.param_bounds(name) for name in obj.law.params], dtype=float)
    return obj.to_theta(b[:, 0]), obj.to_theta(b[:, 1])
