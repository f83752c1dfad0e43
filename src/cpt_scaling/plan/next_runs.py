"""Which runs to do next: candidate runs ranked by the expected shrinkage of a decision's 95 % interval per GPU-hour.

Method (no refits per candidate). The bootstrap resamples of the fitted law (``bootstrap_samples`` of the law JSON,
:func:`cpt_scaling.fit.decisions.param_sets`) are treated as samples of its parameters. For a set ``S`` of candidate
runs, ``J`` simulations each take one ensemble member as the truth, draw the observations S's runs would give
(every checkpoint of every run: ``N``, ``D_k``, ``r``) from it plus noise at the fit's residual scale, and reweight
the *other* members by the likelihood of those observations (importance weights; the truth is left out so it
cannot vouch for itself). The expected interval width of ``S`` is the mean over simulations of the weighted 95 %
percentile interval of the decision's value per member. Runs are chosen greedily: the affordable candidate with
the largest (width reduction)/(GPU-hours), until the budget is spent or no candidate is expected to help. The
simulations use common random numbers, so all candidates are compared on the same draws.

Estimators (``method``): ``bootstrap`` (default) mimics the interval the refit will report, a percentile interval
over resamples of whole runs: in each of ``draws`` resamples per simulation a new run enters with a Poisson(1)
multiplicity (absent in about 37 % of them, as a run is in a bootstrap over runs), the log-likelihoods are scaled
by it, and the interval is taken over the mixture of the resamples' weights. So one decisive run counts for less
than several that say the same, as in the refit's bootstrap. ``posterior`` counts each run once (a Bayesian update
of the ensemble). ``linear`` replaces the reweighting by the linear-Gaussian (ensemble Kalman) variance update,
``Var(v) − C_vx (C_xx + R)⁻¹ C_xv``, scaling the current width by the square root of the variance ratio.

Noise model (log loss): a run offset ``u ~ N(0, σ_run²)`` shared by a run's checkpoints plus ``e ~ N(0, σ_pt²)``
per checkpoint, estimated from the residuals of the fit on the points table (between- and within-run variance
with a ``run`` column; degrees of freedom corrected by ``n/(n − p)``); domain and general losses of a run are
taken as independent. Price: FLOPs = ``tokens · size_flops_per_token(shape)`` when the candidate gives its shape
(``n_layers, d_model, n_heads, d_ff``, optional ``n_kv_heads, head_dim, vocab_size, model_type``), else the
approximation ``6·N·D``; GPU-hours = FLOPs / (``peak_flops_per_gpu · expected_mfu``) / 3600 (the config's cost
section; GPU-hours do not depend on how many GPUs a job uses). Each candidate is priced as a separate run.
Checkpoints of a candidate are geometrically spaced as the workflow's (``D/2^(n-1)``, ..., ``D/2``, ``D``).

Decisions: ``usage1`` (ratio minimising domain loss subject to the general-loss limit; needs the domain and the
general fit), ``usage2`` (best ratio for limited domain data), ``usage3`` (compute-optimal ``N`` at a ratio; its
width is measured in decades of ``N``). ``split`` and ``sger`` are refused: their decisions are not functions of a
D-CPT law's parameters at candidate (N, D, r) runs.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from cpt_scaling.core.errors import InputError
from cpt_scaling.cost import model as cost_model
from cpt_scaling.fit.decisions import DCPT_NAMES, batched_argmin, param_sets
from cpt_scaling.laws import Law

log = logging.getLogger(__name__)

DECISIONS = ("usage1", "usage2", "usage3", "split", "sger")
#: Estimators of the expected interval width (see the module docstring); ``bootstrap`` is the default.
METHODS = ("bootstrap", "posterior", "linear")
SUPPORTED = ("usage1", "usage2", "usage3")
SHAPE_KEYS = ("n_layers", "d_model", "n_heads", "d_ff")
OPTIONAL_SHAPE_KEYS = ("n_kv_heads", "head_dim", "vocab_size", "model_type", "attention_bias", "mlp_bias")
LEVEL = 0.95


@dataclass
class Candidate:
    """One candidate run: its law inputs, checkpoints and price."""

    name: str
    N: float
    D: float
    r: float
    checkpoints: int
    flops: float
    gpu_hours: float
    flops_method: str
    extra: dict[str, Any] = field(default_factory=dict)

    def tokens(self) -> np.ndarray:
        """Checkpoint token counts, geometrically spaced, ending at ``D``."""
        n = self.checkpoints
        return np.array([self.D / 2.0 ** (n - 1 - i) for i in range(n)])


@dataclass
class Target:
    """One fitted loss (domain or general): law, member parameter rows, noise scales, and how a candidate's
    ratio maps to the law's ``r`` (``flip``: the general loss is fitted against ``1 - domain ratio``)."""

    name: str
    law: Law
    params: dict[str, np.ndarray]
    sigma_run: float
    sigma_point: float
    flip: bool = False

    def predict(self, N: np.ndarray, D: np.ndarray, r: np.ndarray) -> np.ndarray:
        """Log loss of every member ``(G, n)`` at domain ratio ``r``."""
        rr = 1.0 - r if self.flip else r
        cols = {"N": np.asarray(N, float), "D": np.asarray(D, float), "r": np.asarray(rr, float)}
        pred, _ = self.law.evaluate(self.params, {c: cols[c] for c in self.law.columns})
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.log(pred)


# ---------------------------------------------------------------------------------------------------- inputs


def cost_assumptions(cfg_cost: Mapping[str, Any] | None = None) -> dict[str, float]:
    """``peak_flops_per_gpu`` and ``expected_mfu``: the given cost section's, else the schema's defaults."""
    from cpt_scaling.config.load import load_schema

    props = load_schema()["properties"]["cost"]["properties"]
    out = {k: float(props[k]["default"]) for k in ("peak_flops_per_gpu", "expected_mfu")}
    for k in out:
        if cfg_cost and cfg_cost.get(k) is not None:
            out[k] = float(cfg_cost[k])
    return out


def gpu_hours(flops: float, cost: Mapping[str, float]) -> float:
    """GPU-hours of ``flops`` at the cost assumptions: ``flops / (peak · MFU) / 3600``."""
    return flops / (cost["peak_flops_per_gpu"] * cost["expected_mfu"]) / 3600.0


def _num(row: Mapping[str, Any], key: str) -> float | None:
    v = row.get(key)
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    return float(v)


def read_candidates(df: pd.DataFrame, where: str, cost: Mapping[str, float], *, seq_len: int = 128,
                    vocab_size: int = 2048, default_checkpoints: int = 4) -> list[Candidate]:
    """Candidates from a table with ``D``, ``r`` and ``N`` or the shape columns (optional ``name``/``size``,
    ``checkpoints``, ``seq_len``, ``vocab_size``); every problem is an :class:`InputError` naming ``where``."""
    for col in ("D", "r"):
        if col not in df.columns:
            raise InputError(where, f"candidates need a {col!r} column (columns: {', '.join(map(str, df.columns))})")
    has_shape = all(k in df.columns for k in SHAPE_KEYS)
    if "N" not in df.columns and not has_shape:
        raise InputError(where, "candidates need 'N' (non-embedding parameters) or the shape columns "
                                f"{', '.join(SHAPE_KEYS)}")
    if not len(df):
        raise InputError(where, "no candidate rows")
    out: list[Candidate] = []
    names: set[str] = set()
    for i, row in enumerate(df.to_dict(orient="records")):
        line = f"row {i + 1}"
        d, r = _num(row, "D"), _num(row, "r")
        if d is None or not math.isfinite(d) or d <= 0:
            raise InputError(where, f"{line}: D must be a positive number, got {row.get('D')!r}")
        if r is None or not 0.0 <= r <= 1.0:
            raise InputError(where, f"{line}: r must lie in [0, 1], got {row.get('r')!r}")
        ck = _num(row, "checkpoints") if "checkpoints" in df.columns else None
        ck = default_checkpoints if ck is None else ck
        if ck < 1 or ck != int(ck):
            raise InputError(where, f"{line}: checkpoints must be a positive integer, got {ck!r}")
        shape = None
        if has_shape and all(_num(row, k) is not None for k in SHAPE_KEYS):
            shape = {k: int(row[k]) for k in SHAPE_KEYS}
            for k in OPTIONAL_SHAPE_KEYS:
                v = row.get(k)
                if v is not None and not (isinstance(v, float) and math.isnan(v)):
                    shape[k] = v if k == "model_type" else (bool(v) if k.endswith("bias") else int(v))
        n = _num(row, "N") if "N" in df.columns else None
        if shape is not None:
            try:
                n_shape = float(cost_model.size_non_embedding_params(shape))
                per_token = cost_model.size_flops_per_token(
                    shape, int(_num(row, "seq_len") or seq_len), int(_num(row, "vocab_size") or vocab_size))
            except (ValueError, KeyError, ZeroDivisionError) as exc:
                raise InputError(where, f"{line}: cannot price the shape: {exc}") from None
            n = n if n is not None else n_shape
            flops, method = d * per_token, "tokens*size_flops_per_token(shape)"
        elif n is not None:
            flops, method = 6.0 * n * d, "6*N*D"
        else:
            raise InputError(where, f"{line}: neither N nor a full shape ({', '.join(SHAPE_KEYS)})")
        if not math.isfinite(n) or n <= 0:
            raise InputError(where, f"{line}: N must be a positive number, got {n!r}")
        name = str(row.get("name") or row.get("size") or f"c{i + 1}")
        label = f"{name}-r{r:g}-D{d:g}"
        if label in names:
            raise InputError(where, f"{line}: duplicate candidate {label}")
        names.add(label)
        extra = {k: row[k] for k in ("size",) if k in row and row[k] is not None}
        out.append(Candidate(label, n, d, r, int(ck), flops, gpu_hours(flops, cost), method, extra))
    return out


def _finite_rows(targets: Sequence[tuple[Law, dict[str, np.ndarray], int]]) -> np.ndarray:
    """Indices of resample rows (1..n of the param_sets batch) finite in every target, paired by index."""
    n = min(nb for _, _, nb in targets)
    ok = np.ones(n, dtype=bool)
    for _, p, _ in targets:
        for v in p.values():
            ok &= np.isfinite(v[1 : n + 1, 0])
    return np.flatnonzero(ok) + 1


def noise_scales(law: Law, point: Mapping[str, float], points: pd.DataFrame, where: str, *,
                 flip: bool = False) -> tuple[float, float]:
    """``(σ_run, σ_point)`` of the log-loss residuals of the point fit on ``points`` (see module docstring)."""
    for col in ("N", "D", "r", "loss"):
        if col not in points.columns:
            raise InputError(where, f"points need a {col!r} column")
    pts = points.dropna(subset=["N", "D", "r", "loss"])
    if len(pts) < 2:
        raise InputError(where, "fewer than two points to estimate the residual scale")
    cols = {c: pts[c].to_numpy(float) for c in law.columns}
    with np.errstate(divide="ignore", invalid="ignore"):
        res = np.log(pts["loss"].to_numpy(float)) - np.log(law.predict(point, cols))
    if not np.isfinite(res).all():
        raise InputError(where, "points give non-finite log residuals (loss <= 0 or a law value <= 0)")
    n, p = res.size, len(law.params)
    inflate = n / (n - p) if n > p + 1 else 2.0
    total = float(np.mean(res**2)) * inflate
    if "run" in pts.columns and pts["run"].nunique() >= 2 and pts["run"].nunique() < len(pts):
        g = pd.Series(res, index=pts.index).groupby(pts["run"].astype(str))
        within = float(sum(((v - v.mean()) ** 2).sum() for _, v in g) / max(n - g.ngroups, 1)) * inflate
        m = float(g.size().mean())
        between = max(float(g.mean().var(ddof=1)) - within / m, 0.0)
        sigma_pt = math.sqrt(max(within, 1e-12))
        sigma_run = math.sqrt(between)
    else:
        sigma_pt, sigma_run = math.sqrt(max(total, 1e-12)), 0.0
    return sigma_run, sigma_pt


# ---------------------------------------------------------------------------------------------------- decisions


@dataclass
class DecisionSpec:
    """What the decision is computed at: ``N`` (usage 1/2), ``D``, base general loss and tolerance (usage 1),
    domain tokens (usage 2), compute and ratio (usage 3)."""

    decision: str
    N: float | None = None
    D: float | None = None
    base_general_loss: float | None = None
    tolerance: float = 0.03
    domain_tokens: float | None = None
    compute: float | None = None
    ratio: float | None = None

    def describe(self) -> str:
        if self.decision == "usage1":
            return (f"usage 1: ratio minimising domain loss s.t. general loss <= (1 + {self.tolerance:g}) x "
                    f"{self.base_general_loss:.4g} at N={self.N:g}, D={self.D:g}")
        if self.decision == "usage2":
            return f"usage 2: best ratio at N={self.N:g} with {self.domain_tokens:g} domain tokens"
        return f"usage 3: compute-optimal log10 N at {self.compute:.3g} FLOPs, r={self.ratio:g}"


def decision_values(spec: DecisionSpec, targets: Mapping[str, Target]) -> np.ndarray:
    """The decision's value for every member ``(G,)`` (nan where a member has none)."""
    dom = targets["domain"]
    rows = next(iter(dom.params.values())).shape[0]
    if spec.decision == "usage2":
        t = float(spec.domain_tokens)

        def f2(r: np.ndarray) -> np.ndarray:
            pred, _ = dom.law.evaluate(dom.params, {"N": np.full_like(r, spec.N), "D": t / r, "r": r})
            return pred

        value, _ = batched_argmin(f2, 1e-3, 1.0, rows)
        return value
    if spec.decision == "usage1":
        gen = targets["general"]
        limit = spec.base_general_loss * (1.0 + spec.tolerance)

        def f1(r: np.ndarray) -> np.ndarray:
            n, d = np.full_like(r, spec.N), np.full_like(r, spec.D)
            g, _ = gen.law.evaluate(gen.params, {"N": n, "D": d, "r": 1.0 - r})
            v, _ = dom.law.evaluate(dom.params, {"N": n, "D": d, "r": r})
            return np.where(g <= limit, v, np.inf)

        value, _ = batched_argmin(f1, 0.0, 1.0, rows)
        return value
    if spec.decision == "usage3":
        c, r = float(spec.compute), float(spec.ratio)

        def f3(log_n: np.ndarray) -> np.ndarray:
            n = np.exp(log_n)
            pred, _ = dom.law.evaluate(dom.params, {"N": n, "D": c / (6.0 * n), "r": np.full_like(n, r)})
            return pred

        log_n, _ = batched_argmin(f3, math.log(1e2), math.log(1e14), rows)
        return log_n / math.log(10.0)
    raise InputError("--decision", f"{spec.decision!r} is not supported (supported: {', '.join(SUPPORTED)})")


# ---------------------------------------------------------------------------------------------------- weights


def importance_weights(loglik: np.ndarray, base: np.ndarray | None = None) -> np.ndarray:
    """Normalised weights per row of ``loglik`` ``(J, G)``: ``base · exp(loglik)`` / sum (stable; -inf = 0)."""
    ll = np.asarray(loglik, dtype=float)
    if base is not None:
        with np.errstate(divide="ignore"):
            ll = ll + np.log(np.asarray(base, dtype=float))
    top = np.max(ll, axis=1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    w = np.exp(ll - top)
    total = w.sum(axis=1, keepdims=True)
    return w / np.where(total > 0, total, 1.0)


def weighted_interval(values: np.ndarray, weights: np.ndarray, level: float = LEVEL) -> np.ndarray:
    """Weighted percentile interval ``(J, 2)`` of ``values`` ``(G,)`` under each row of ``weights`` ``(J, G)``
    (linear interpolation between the mid-points of each value's weight, as for unweighted percentiles)."""
    order = np.argsort(values)
    v = np.asarray(values, dtype=float)[order]
    w = np.asarray(weights, dtype=float)[:, order]
    cw = np.cumsum(w, axis=1) - 0.5 * w
    out = np.empty((w.shape[0], 2))
    for j, q in enumerate((0.5 * (1.0 - level), 1.0 - 0.5 * (1.0 - level))):
        hi = np.clip((cw < q).sum(axis=1), 1, v.size - 1)
        lo = hi - 1
        c_lo = np.take_along_axis(cw, lo[:, None], 1)[:, 0]
        c_hi = np.take_along_axis(cw, hi[:, None], 1)[:, 0]
        frac = np.clip((q - c_lo) / np.where(c_hi > c_lo, c_hi - c_lo, 1.0), 0.0, 1.0)
        out[:, j] = v[lo] + frac * (v[hi] - v[lo])
    return out


def noise_cov(m: int, sigma_run: float, sigma_point: float) -> np.ndarray:
    """Covariance of one run's ``m`` log-loss observations: ``σ_pt²·I + σ_run²·11ᵀ``."""
    return sigma_point**2 * np.eye(m) + sigma_run**2 * np.ones((m, m))


def linear_variance_ratio(values: np.ndarray, x: np.ndarray, cov: np.ndarray, prior_var: float | None = None
                          ) -> float:
    """Posterior/prior variance of the decision after observing ``x`` (members x observations) with noise
    ``cov``, in the linear-Gaussian approximation of the ensemble (ensemble Kalman update):
    ``Var(v) - C_vx (C_xx + R)^-1 C_xv``, all moments from the members."""
    v = values - values.mean()
    xc = x - x.mean(axis=0)
    g = values.size - 1
    prior = float(v @ v / g) if prior_var is None else prior_var
    c_xv = xc.T @ v / g
    c_xx = xc.T @ xc / g
    post = prior - float(c_xv @ np.linalg.solve(c_xx + cov, c_xv))
    return max(post, 0.0) / prior if prior > 0 else 1.0


def run_loglik(res: np.ndarray, sigma_run: float, sigma_point: float) -> np.ndarray:
    """Gaussian log-likelihood (up to a constant) of the residuals ``(..., m)`` of one run's ``m`` checkpoints
    under a shared run offset (sd ``sigma_run``) plus independent point noise (sd ``sigma_point``)."""
    m = res.shape[-1]
    s2, t2 = sigma_point**2, sigma_run**2
    shrink = t2 / (s2 + m * t2)
    quad = (np.sum(res**2, axis=-1) - shrink * np.sum(res, axis=-1) ** 2) / s2
    return -0.5 * quad


# ---------------------------------------------------------------------------------------------------- proposing


@dataclass
class Proposal:
    """Outcome of :func:`propose`: per-candidate first-step scores, the chosen runs in order, and context."""

    ranking: pd.DataFrame
    chosen: pd.DataFrame
    current_width: float
    current_interval: tuple[float, float]
    members: int
    simulations: int
    budget: float
    spent: float
    sigma: dict[str, tuple[float, float]]
    decision: str
    description: str


def _targets_from(laws: Mapping[str, Mapping[str, Any]], points: Mapping[str, pd.DataFrame], where: str
                  ) -> tuple[dict[str, Target], int]:
    """Members paired across the targets' resamples (finite rows only) and each target's noise scales."""
    sets = {name: param_sets(js, DCPT_NAMES) for name, js in laws.items()}
    if any(nb == 0 for _, _, nb in sets.values()):
        raise InputError(where, "the law JSON has no bootstrap_samples: refit with --bootstrap N (e.g. 1000) so the "
                                "decision's uncertainty is known")
    rows = _finite_rows(list(sets.values()))
    if rows.size < 20:
        raise InputError(where, f"only {rows.size} finite bootstrap resample(s); need at least 20")
    targets: dict[str, Target] = {}
    for name, (law, p, _) in sets.items():
        point = {k: float(v[0, 0]) for k, v in p.items()}
        s_run, s_pt = noise_scales(law, point, points[name], where)
        targets[name] = Target(name, law, {k: v[rows] for k, v in p.items()}, s_run, s_pt, flip=name == "general")
    return targets, int(rows.size)


def propose(laws: Mapping[str, Mapping[str, Any]], points: Mapping[str, pd.DataFrame], candidates: list[Candidate],
            spec: DecisionSpec, budget: float, *, simulations: int = 256, seed: int = 0,
            method: str = "bootstrap", draws: int = 8, where: str = "law JSON") -> Proposal:
    """Rank ``candidates`` and choose a set within ``budget`` GPU-hours (see the module docstring).

    ``laws`` maps ``"domain"`` (and for usage 1 ``"general"``) to law JSONs with bootstrap samples; ``points`` the
    same keys to the points they were fitted on (``N, D, r, loss``, optional ``run``; the general points with the
    general ratio in ``r``, as the D-CPT study writes them). ``method`` is one of :data:`METHODS`; ``draws`` the
    simulated resamples per simulation of the ``bootstrap`` estimator.
    """
    check_decision(spec.decision)
    if not math.isfinite(budget) or budget <= 0:
        raise InputError("--budget", f"must be a positive number of GPU-hours, got {budget}")
    if simulations < 2:
        raise InputError("--simulations", f"must be >= 2, got {simulations}")
    if method not in METHODS:
        raise InputError("--method", f"unknown method {method!r} (one of {', '.join(METHODS)})")
    B = max(int(draws), 1) if method == "bootstrap" else 1
    targets, G = _targets_from(laws, points, where)
    values = decision_values(spec, targets)
    keep = np.isfinite(values)
    if keep.sum() < 20:
        raise InputError(where, f"the decision is undefined for {int((~keep).sum())} of {G} resamples; fewer than "
                                "20 remain")
    if not keep.all():
        log.warning("next: the decision is undefined for %d of %d resamples; they are left out", int((~keep).sum()), G)
        for t in targets.values():
            t.params = {k: v[keep] for k, v in t.params.items()}
        values = values[keep]
        G = int(keep.sum())
    rng = np.random.default_rng(seed)
    J = simulations
    truth = rng.choice(G, size=J, replace=J > G)
    base = np.ones((J, G))
    base[np.arange(J), truth] = 0.0  # leave the simulated truth out of the ensemble that judges it
    loglik, design, mult = {}, {}, {}
    for c in candidates:
        # how often the run enters each of B bootstrap resamples (Poisson(1), the large-sample limit of drawing n
        # runs from n); the plain posterior counts it once
        mult[c.name] = rng.poisson(1.0, (J, B)).astype(float) if method == "bootstrap" else np.ones((J, B))
        ll = np.zeros((J, G))
        tok = c.tokens()
        for t in targets.values():
            pred = t.predict(np.full(tok.size, c.N), tok, np.full(tok.size, c.r))  # (G, m)
            if not np.isfinite(pred).all():
                pred = np.where(np.isfinite(pred), pred, np.nanmax(np.where(np.isfinite(pred), pred, -np.inf)))
            noise = rng.normal(0.0, t.sigma_run, (J, 1)) + rng.normal(0.0, t.sigma_point, (J, tok.size))
            obs = pred[truth] + noise  # (J, m)
            ll += run_loglik(obs[:, None, :] - pred[None, :, :], t.sigma_run, t.sigma_point)
            design.setdefault(c.name, []).append((pred, noise_cov(tok.size, t.sigma_run, t.sigma_point)))
        loglik[c.name] = ll

    tail = 50.0 * (1.0 - LEVEL)
    lo0, hi0 = np.percentile(values, [tail, 100.0 - tail])
    prior_var = float(np.var(values, ddof=1))

    def expected(names: list[str]) -> tuple[float, float]:
        if method == "linear":
            if not names:
                return float(hi0 - lo0), float(G)
            blocks = [b for n in names for b in design[n]]
            x = np.hstack([pred for pred, _ in blocks])
            cov = np.zeros((x.shape[1], x.shape[1]))
            at = 0
            for _, c in blocks:
                cov[at : at + c.shape[0], at : at + c.shape[0]] = c
                at += c.shape[0]
            return float(hi0 - lo0) * math.sqrt(linear_variance_ratio(values, x, cov, prior_var)), float("nan")
        total = np.zeros((J, B, G))
        for n in names:
            total += mult[n][:, :, None] * loglik[n][:, None, :]
        w = importance_weights(total.reshape(J * B, G), np.repeat(base, B, axis=0)).reshape(J, B, G).mean(axis=1)
        iv = weighted_interval(values, w)
        ess = 1.0 / np.sum(w**2, axis=1)
        return float(np.mean(iv[:, 1] - iv[:, 0])), float(np.median(ess))

    width0, ess0 = expected([])
    rank_rows = []
    for c in candidates:
        w, ess = expected([c.name])
        rank_rows.append({"candidate": c.name, "N": c.N, "D": c.D, "r": c.r, "checkpoints": c.checkpoints,
                          "gpu_hours": c.gpu_hours, "expected_width": w, "width_reduction": width0 - w,
                          "reduction_per_gpu_hour": (width0 - w) / c.gpu_hours, "affordable": c.gpu_hours <= budget,
                          "median_ess": ess})
    ranking = pd.DataFrame(rank_rows).sort_values("reduction_per_gpu_hour", ascending=False, kind="stable")
    chosen_rows = []
    remaining, width_now, picked = float(budget), width0, []
    left = {c.name: c for c in candidates}
    while left:
        best = None
        for c in left.values():
            if c.gpu_hours > remaining:
                continue
            w, ess = expected([*picked, c.name])
            score = (width_now - w) / c.gpu_hours
            if best is None or score > best[0]:
                best = (score, c, w, ess)
        if best is None or best[0] <= 0:
            break
        score, c, w, ess = best
        picked.append(c.name)
        remaining -= c.gpu_hours
        chosen_rows.append({"order": len(chosen_rows) + 1, "candidate": c.name, "size": c.extra.get("size"),
                            "N": c.N, "D": c.D, "r": c.r, "checkpoints": c.checkpoints, "flops": c.flops,
                            "flops_method": c.flops_method, "gpu_hours": c.gpu_hours,
                            "cumulative_gpu_hours": budget - remaining, "expected_width": w,
                            "width_reduction": width_now - w, "reduction_per_gpu_hour": score, "median_ess": ess})
        width_now = w
        del left[c.name]
    chosen = pd.DataFrame(chosen_rows, columns=["order", "candidate", "size", "N", "D", "r", "checkpoints", "flops",
                                                "flops_method", "gpu_hours", "cumulative_gpu_hours",
                                                "expected_width", "width_reduction", "reduction_per_gpu_hour",
                                                "median_ess"])
    if chosen_rows and chosen_rows[-1]["median_ess"] < 10:
        log.warning("next: median effective ensemble size after the chosen runs is %.1f (< 10): the expected widths "
                    "are rough; a law JSON with more bootstrap resamples sharpens them",
                    chosen_rows[-1]["median_ess"])
    log.info("next: %d members, %d simulations, current expected width %.4g (ESS %.0f), chosen %d run(s)",
             G, J, width0, ess0, len(chosen_rows))
    return Proposal(ranking=ranking.reset_index(drop=True), chosen=chosen, current_width=width0,
                    current_interval=(float(lo0), float(hi0)), members=G, simulations=J, budget=float(budget),
                    spent=float(budget - remaining), sigma={k: (t.sigma_run, t.sigma_point)
                                                            for k, t in targets.items()},
                    decision=spec.decision, description=spec.describe())


def format_table(prop: Proposal, max_rows: int = 15) -> str:
    """The printed report: context, the chosen runs, and the top of the ranking."""
    lines = [f"decision: {prop.description}",
             f"current 95% interval [{prop.current_interval[0]:.4g}, {prop.current_interval[1]:.4g}] "
             f"(width {prop.current_interval[1] - prop.current_interval[0]:.4g}; simulated expected width "
             f"{prop.current_width:.4g}) from {prop.members} bootstrap resamples, {prop.simulations} simulations",
             "noise (log loss): " + ", ".join(f"{k} sd_run {a:.3g} sd_point {b:.3g}"
                                              for k, (a, b) in prop.sigma.items()),
             f"budget {prop.budget:.4g} GPU-hours, chosen runs cost {prop.spent:.4g}", ""]
    if prop.chosen.empty:
        lines.append("no affordable candidate is expected to shrink the interval")
    else:
        lines.append(f"{'#':>2}  {'candidate':<28} {'N':>10} {'D':>10} {'r':>5} {'GPU-h':>10} {'width':>9} "
                     f"{'shrink/GPU-h':>12}")
        for row in prop.chosen.itertuples():
            lines.append(f"{row.order:>2}  {row.candidate:<28} {row.N:>10.4g} {row.D:>10.4g} {row.r:>5.3g} "
                         f"{row.gpu_hours:>10.4g} {row.expected_width:>9.4g} {row.reduction_per_gpu_hour:>12.4g}")
    lines += ["", f"ranking of single candidates (top {min(max_rows, len(prop.ranking))} of {len(prop.ranking)}):"]
    for row in prop.ranking.head(max_rows).itertuples():
        lines.append(f"    {row.candidate:<28} GPU-h {row.gpu_hours:>10.4g}  width {row.expected_width:>9.4g}  "
                     f"shrink/GPU-h {row.reduction_per_gpu_hour:>10.4g}"
                     + ("" if row.affordable else "  (over budget)"))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------- from a fit
# What `cpt-scaling next` (cli/next.py) and the workflow's results/tables/next_runs_<domain>.csv (rules/next.smk)
# share: the laws of a D-CPT study JSON, its points, and the decision's defaults.

#: Share of the GPU-hours of a domain's D-CPT runs that the workflow spends when studies.next_runs sets no budget.
BUDGET_SHARE = 0.1


def laws_of(doc: Mapping[str, Any], where: str
            ) -> tuple[dict[str, Any], dict[str, Any] | None, dict[str, Any] | None]:
    """The domain-loss law, the general-loss law (or None) and the base models' losses (or None) of a D-CPT study
    JSON (``results/laws/dcpt_<domain>.json``) or of one D-CPT law JSON (domain loss only)."""
    if doc.get("study") == "dcpt":
        dom, gen, base = doc.get("domain_loss"), doc.get("general_loss"), doc.get("base")
        if not isinstance(dom, dict):
            raise InputError(where, "D-CPT study JSON lacks its domain_loss fit")
    elif doc.get("law") in DCPT_NAMES:
        dom, gen, base = dict(doc), None, None
    else:
        raise InputError(where, f"not a D-CPT law or study JSON (law {doc.get('law')!r}); `next` needs a fit "
                                f"of one of {', '.join(DCPT_NAMES)} with bootstrap samples")
    return dom, gen if isinstance(gen, dict) else None, base if isinstance(base, dict) else None


def split_points(df: pd.DataFrame, where: str, need_general: bool) -> dict[str, pd.DataFrame]:
    """``{"domain": ..., "general": ...}`` rows of a points table by its ``target`` column (all rows are domain
    points without one); usage 1 (``need_general``) needs general rows."""
    for col in ("N", "D", "r", "loss"):
        if col not in df.columns:
            raise InputError(where, f"points need a {col!r} column (columns: {', '.join(map(str, df.columns))})")
    if "target" in df.columns:
        out = {t: df[df["target"] == t].reset_index(drop=True) for t in ("domain", "general")}
        if not len(out["domain"]):
            raise InputError(where, "no rows with target == 'domain'")
    else:
        out = {"domain": df.reset_index(drop=True)}
    if need_general and not len(out.get("general", [])):
        raise InputError(where, "usage1 needs the general-loss points too: a 'target' column with 'general' rows "
                                "(r = general ratio), as results/tables/dcpt_points_<domain>.csv has")
    return out


def check_decision(decision: str) -> None:
    """Refuse a decision `next` cannot rank runs for (split, sger)."""
    if decision not in SUPPORTED:
        raise InputError("--decision", f"{decision!r} is not supported by `next` (supported: "
                                       f"{', '.join(SUPPORTED)}): split and sger decisions are not functions of a "
                                       "D-CPT law at candidate (N, D, r) runs")


def decision_spec(decision: str, points: pd.DataFrame, *, study: Mapping[str, Any] | None = None,
                  base: Mapping[str, Any] | None = None, usages: Sequence[Mapping[str, Any]] = (),
                  N: float | None = None, D: float | None = None, tolerance: float | None = None,
                  base_general_loss: float | None = None, domain_tokens: float | None = None,
                  compute: float | None = None, ratio: float | None = None, where: str = "law JSON") -> DecisionSpec:
    """The :class:`DecisionSpec` of ``decision`` at the given values, each missing one defaulted from the fit.

    Defaults: ``N`` the largest size of the domain ``points``; usage 1: ``D`` their largest tokens, ``tolerance``
    ``study``'s (``studies.dcpt``) ``general_tolerance`` (0.03), the general loss of the ``base`` model of size
    ``N``; usage 2: ``study``'s ``domain_tokens``, else ``D·ratio`` of the study's usage-2 row at ``N``
    (``usages``); usage 3: ``compute`` 10x the largest run (``6·N·D``), ``ratio`` the one of lowest mean loss.
    Every value is checked (an :class:`InputError` names the ``next`` option that sets it).
    """
    check_decision(decision)
    study = study or {}
    n = float(N) if N is not None else float(points["N"].max())
    spec = DecisionSpec(decision, N=n)
    if decision == "usage1":
        spec.D = float(D) if D is not None else float(points["D"].max())
        spec.tolerance = float(tolerance if tolerance is not None else study.get("general_tolerance", 0.03))
        if base_general_loss is None:
            match = [b for b in (base or {}).values() if isinstance(b, dict) and float(b.get("N", -1)) == n]
            if not match or match[0].get("general_loss") is None:
                raise InputError(where, f"no base model of N={n:g} with a general loss; pass --base-general-loss")
            base_general_loss = match[0]["general_loss"]
        spec.base_general_loss = float(base_general_loss)
    elif decision == "usage2":
        tokens = domain_tokens if domain_tokens is not None else study.get("domain_tokens")
        if tokens is None:
            rows = [u for u in usages if u.get("usage") == 2 and float(u.get("N", -1)) == n and u.get("ratio")]
            tokens = rows[0]["D"] * rows[0]["ratio"] if rows else None
        if tokens is None:
            raise InputError("--domain-tokens", "usage2 needs the domain tokens available (--domain-tokens, or "
                                                "studies.dcpt.domain_tokens in --configfile)")
        spec.domain_tokens = float(tokens)
    else:
        spec.compute = (float(compute) if compute is not None
                        else 10.0 * 6.0 * float(points["N"].max()) * float(points["D"].max()))
        spec.ratio = float(ratio) if ratio is not None else float(points.groupby("r")["loss"].mean().idxmin())
    for name, value in (("--N", spec.N), ("--domain-tokens", spec.domain_tokens), ("--D", spec.D),
                        ("--compute", spec.compute)):
        if value is not None and not (np.isfinite(value) and value > 0):
            raise InputError(name, f"must be a positive number, got {value}")
    if spec.ratio is not None and not 0.0 <= spec.ratio <= 1.0:
        raise InputError("--ratio", f"must lie in [0, 1], got {spec.ratio}")
    return spec


def default_checkpoints(points: pd.DataFrame, configured: int | None = None) -> int:
    """Checkpoints of a candidate run: ``configured`` (``cpt.checkpoints``), else the median number per run of
    ``points`` (4 without a ``run`` column)."""
    if configured:
        return int(configured)
    if "run" not in points.columns:
        return 4
    return round(float(points.groupby(points["run"].astype(str)).size().median()))


# ---------------------------------------------------------------------------------------------------- the workflow


def _size_columns(size: Mapping[str, Any]) -> dict[str, Any]:
    """A config size's candidate columns: its shape keys (those set) and ``N`` when it gives
    ``n_params_non_embedding``."""
    cols = {k: size[k] for k in (*SHAPE_KEYS, *OPTIONAL_SHAPE_KEYS) if size.get(k) is not None}
    if size.get("n_params_non_embedding") is not None:
        cols["N"] = float(size["n_params_non_embedding"])
    return cols


def grid_candidates(sizes: Mapping[str, Mapping[str, Any]], ratios: Sequence[float], tokens: Sequence[float]
                    ) -> pd.DataFrame:
    """Candidate rows (:func:`read_candidates`' columns) of every size x ratio x tokens, in that order; ``sizes``
    maps a name to its shape keys and/or ``N``."""
    return pd.DataFrame([{"name": name, "size": name, **cols, "D": float(d), "r": float(r)}
                         for name, cols in sizes.items() for r in ratios for d in tokens])


def workflow_job(cfg: Mapping[str, Any], domain: str) -> dict[str, Any]:
    """The settings of the workflow's ``next_runs`` job for ``domain`` (plain JSON) from a normalised config:
    ``studies.next_runs`` with its grid's defaults filled in (sizes: ``models.sizes``; tokens: ``cpt.tokens``
    plus twice the largest), the domain's D-CPT grid (prices the default budget), the cost assumptions and the
    pricing defaults (``shards.seq_len``, ``tokenizer.vocab_size``, ``cpt.checkpoints``), ``studies.dcpt``."""
    study = cfg["studies"]["next_runs"]
    sweep_sizes = {name: _size_columns(size) for name, size in cfg["models"]["sizes"].items()}
    tokens = study["tokens"] or [*cfg["cpt"]["tokens"], 2 * max(cfg["cpt"]["tokens"])]
    return {"decision": study["decision"], "budget_gpu_hours": study["budget_gpu_hours"],
            "simulations": study["simulations"], "method": study["method"], "seed": study["seed"],
            "candidates": {"sizes": study["sizes"] if study["sizes"] is not None else sweep_sizes,
                           "ratios": list(study["ratios"]), "tokens": list(tokens)},
            "sweep": {"sizes": sweep_sizes, "ratios": list(cfg["domains"][domain]["ratios"]),
                      "tokens": list(cfg["cpt"]["tokens"])},
            "cost": cost_assumptions(cfg["cost"]), "seq_len": cfg["shards"]["seq_len"],
            "vocab_size": cfg["tokenizer"]["vocab_size"], "checkpoints": cfg["cpt"]["checkpoints"],
            "dcpt": dict(cfg["studies"]["dcpt"])}


def propose_for_sweep(doc: Mapping[str, Any], points: pd.DataFrame, job: Mapping[str, Any], where: str
                      ) -> Proposal:
    """:func:`propose` on the sweep's D-CPT study JSON ``doc`` and its ``points``, with the candidate grid,
    budget and defaults of ``job`` (:func:`workflow_job`); a null budget is :data:`BUDGET_SHARE` of the
    GPU-hours of the domain's D-CPT runs, each priced as a candidate is."""
    decision = job["decision"]
    dom, gen, base = laws_of(doc, where)
    laws = {"domain": dom, "general": gen} if decision == "usage1" else {"domain": dom}
    for name, law in laws.items():
        if law is None:
            raise InputError(where, "usage1 needs the general-loss fit: the D-CPT study JSON lacks general_loss")
        if param_sets(law, DCPT_NAMES)[2] == 0:
            raise InputError(where, f"the D-CPT {name}-loss fit has no bootstrap samples, which "
                                    "studies.next_runs needs: set fit.bootstrap (e.g. 1000) in the config")
    pts = split_points(points, where, decision == "usage1")
    spec = decision_spec(decision, pts["domain"], study=job["dcpt"], base=base, usages=doc.get("usages") or [],
                         where=where)

    def priced(grid: Mapping[str, Any], what: str) -> list[Candidate]:
        return read_candidates(grid_candidates(**grid), what, job["cost"], seq_len=int(job["seq_len"]),
                               vocab_size=int(job["vocab_size"]), default_checkpoints=int(job["checkpoints"]))

    candidates = priced(job["candidates"], "studies.next_runs")
    budget = job["budget_gpu_hours"]
    if budget is None:
        budget = BUDGET_SHARE * sum(c.gpu_hours for c in priced(job["sweep"], "the sweep's D-CPT runs"))
        log.info("next: budget %.4g GPU-hours (%g of the domain's D-CPT runs)", budget, BUDGET_SHARE)
    return propose(laws, pts, candidates, spec, float(budget), simulations=int(job["simulations"]),
                   seed=int(job["seed"]), method=job["method"], where=where)
