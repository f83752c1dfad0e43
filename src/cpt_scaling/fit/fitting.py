"""Fit a named law to a points table: multistart Huber/L-BFGS fit, bootstrap intervals, held-out metrics.

The fit minimises ``Σ huber_δ(log L̂ − log L)`` over the training points (δ = 1e-3 by default, as Hoffmann et
al. and Que et al. do) with parameters in log space, starting from the law's initialisation grid
(:mod:`cpt_scaling.fit.optimize`). Reported: R² and RMSE of the loss on the training points, the Huber objective
at the optimum, bootstrap percentile intervals (for the size exponent of a fit whose E sits at its floor, united
with its profile-likelihood set: :mod:`cpt_scaling.fit.profile`), and relative errors on held-out points when a
hold-out is given.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from cpt_scaling.core.errors import InputError
from cpt_scaling.fit.bootstrap import INTERVAL, bootstrap_fit
from cpt_scaling.fit.law_json import law_params
from cpt_scaling.fit.misfit import add_misfit
from cpt_scaling.fit.optimize import POLISH_RTOL, Objective, bounds_theta, huber, multistart_minimize
from cpt_scaling.fit.points import TARGET, validate_points
from cpt_scaling.fit.profile import unite_profiles
from cpt_scaling.laws import LAWS, SPLIT_CANDIDATES, Law

log = logging.getLogger(__name__)

__all__ = ["FitResult", "extrapolation_factor", "fit_law", "fit_range", "heldout_metrics", "identification_words",
           "not_identified", "predict", "validate_points"]


@dataclass
class FitResult:
    """One fitted law: parameters, intervals, metrics, diagnostics, and the points used and held out."""

    law: str
    formula: str
    params: dict[str, float]
    fixed: dict[str, float]
    ci: dict[str, list[float] | None]
    r2: float
    huber: float
    rmse: float
    n_points: int
    huber_delta: float
    n_starts: int
    bootstrap: int
    reconstructed: bool
    points_used: list[dict[str, Any]]
    points_held_out: list[dict[str, Any]]
    heldout: dict[str, float] | None = None
    selection: dict[str, Any] | None = None
    diagnostics: dict[str, Any] = field(default_factory=dict)
    bootstrap_info: dict[str, Any] = field(default_factory=dict)
    samples: np.ndarray | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The JSON document ``cpt-scaling fit`` writes (and ``predict``/decisions read).

        ``ci`` holds ``[low, high]`` per fitted parameter, or null where no interval was computed (no bootstrap,
        or every resample failed); ``bootstrap_samples`` keeps the resampled parameter sets so that decisions read
        off the law carry intervals from the same resamples.
        """
        out: dict[str, Any] = {
            "law": self.law,
            "formula": self.formula,
            "params": {**self.params, **self.fixed},
            "fixed_params": sorted(self.fixed),
            "ci": self.ci,
            "ci_level": 0.95,
            "r2": self.r2,
            "huber": self.huber,
            "huber_delta": self.huber_delta,
            "rmse": self.rmse,
            "n_points": self.n_points,
            "n_starts": self.n_starts,
            "bootstrap": self.bootstrap,
            "bootstrap_info": self.bootstrap_info,
            "reconstructed_form": self.reconstructed,
            "diagnostics": self.diagnostics,
            "points_used": self.points_used,
            "points_held_out": self.points_held_out,
        }
        if self.samples is not None and len(self.samples):
            out["bootstrap_samples"] = {
                "params": list(self.params),
                "values": [[float(f"{v:.9g}") if math.isfinite(v) else None for v in row] for row in self.samples],
            }
        if self.heldout is not None:
            out["heldout"] = self.heldout
        if self.selection is not None:
            out["selection"] = self.selection
        out.update(self.extra)
        return out


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-safe row records (numbers as float/int, everything else as str)."""
    rows = []
    for rec in df.to_dict(orient="records"):
        clean: dict[str, Any] = {}
        for k, v in rec.items():
            if isinstance(v, (bool, np.bool_)):
                clean[str(k)] = bool(v)
            elif isinstance(v, (int, np.integer)):
                clean[str(k)] = int(v)
            elif isinstance(v, (float, np.floating)):
                clean[str(k)] = float(v) if math.isfinite(v) else None
            else:
                clean[str(k)] = None if v is None else str(v)
        rows.append(clean)
    return rows


def _columns(law: Law, df: pd.DataFrame) -> dict[str, np.ndarray]:
    return {c: df[c].to_numpy(dtype=float) for c in law.columns}


def heldout_metrics(y: np.ndarray, pred: np.ndarray, delta: float) -> dict[str, float]:
    """Relative-error, RMSE and Huber metrics of predictions on held-out points."""
    rel = np.abs(pred - y) / y
    return {
        "n_points": int(y.size),
        "mean_rel_error": float(rel.mean()),
        "max_rel_error": float(rel.max()),
        "rmse": float(np.sqrt(np.mean((pred - y) ** 2))),
        "huber": float(huber(np.log(pred) - np.log(y), delta).sum()),
    }


def _holdout_mask(holdout: pd.Series | np.ndarray | None, df: pd.DataFrame, where: str) -> np.ndarray:
    if holdout is None:
        return np.zeros(len(df), dtype=bool)
    mask = np.asarray(holdout)
    if mask.dtype != bool or mask.shape != (len(df),):
        raise InputError(where, f"hold-out must be a boolean mask of {len(df)} rows")
    return mask


#: Parameters that make a law depend on model size; fitted from fewer than three sizes they are barely pinned.
SIZE_EXPONENTS = ("alpha", "p")


def fit_range(df: pd.DataFrame) -> dict[str, float]:
    """Largest model size and training compute (``6·N·tokens``) of a points table, the yardsticks of
    extrapolation; tokens are ``D`` plus ``D_spec`` where present."""
    out: dict[str, float] = {}
    if "N" in df.columns and len(df):
        out["N_max"] = float(df["N"].max())
        if "D" in df.columns:
            tokens = df["D"] + (df["D_spec"] if "D_spec" in df.columns else 0.0)
            out["C_max"] = float((6.0 * df["N"] * tokens).max())
    return out


def extrapolation_factor(fitted: dict[str, float], N: Any, tokens: Any = None) -> np.ndarray:
    """How far queries lie beyond a fit: ``max(N/N_max, C/C_max, 1)`` with ``C = 6·N·tokens`` (arrays broadcast)."""
    n = np.asarray(N, dtype=float)
    factor = np.ones(np.broadcast(n, np.asarray(tokens if tokens is not None else 0.0)).shape)
    if "N_max" in fitted:
        factor = np.maximum(factor, n / fitted["N_max"])
    if tokens is not None and "C_max" in fitted:
        factor = np.maximum(factor, 6.0 * n * np.asarray(tokens, dtype=float) / fitted["C_max"])
    return factor


#: Bounds at or below this stand for 0, at or above its inverse for infinity: a parameter within a factor
#: :data:`EDGE_FACTOR` of such a bound is not identified by the points.
OPEN_BOUND = 1e-3
EDGE_FACTOR = 10.0
#: An additive constant below this share of the smallest fitted loss is "zero irreducible loss".
E_FLOOR_SHARE = 0.01
#: A bootstrap interval spanning more than this factor (two decades) does not pin its parameter.
CI_SPAN = 100.0


def not_identified(law: Law, obj: Objective, theta: np.ndarray, ci: dict[str, list[float] | None],
                   min_loss: float) -> list[dict[str, str]]:
    """Parameters the points do not pin down, each ``{"param", "reason"}``: within a factor 10 of a bound that
    stands for 0 or infinity (log-space parameters; other bounds count only when reached), an additive constant
    ``E`` below 1 % of the smallest fitted loss, a bootstrap interval of a positive parameter spanning more than two
    decades."""
    lo, hi = bounds_theta(obj)
    margin = np.log(EDGE_FACTOR)
    out: list[dict[str, str]] = []
    for j, name in enumerate(law.params):
        b_lo, b_hi = law.param_bounds(name)
        value = float(obj.natural(theta[None, :])[0, j])
        reasons = []
        if name == "E" and value < E_FLOOR_SHARE * min_loss:
            reasons.append(f"at {value:.2g} — below {E_FLOOR_SHARE * 100:g} % of the smallest loss")
        if obj.is_log[j] and ((b_lo <= OPEN_BOUND and theta[j] - lo[j] <= margin)
                              or (b_hi >= 1.0 / OPEN_BOUND and hi[j] - theta[j] <= margin)):
            reasons.append(f"within {EDGE_FACTOR:g}× of its bound")
        elif np.isclose(theta[j], lo[j], rtol=0, atol=1e-6 * max(1.0, abs(lo[j]))) or np.isclose(
                theta[j], hi[j], rtol=0, atol=1e-6 * max(1.0, abs(hi[j]))):
            reasons.append("at its bound")
        interval = ci.get(name)
        if obj.is_log[j] and interval is not None and interval[0] > 0 and interval[1] / interval[0] > CI_SPAN:
            reasons.append(f"95 % interval spans {np.log10(interval[1] / interval[0]):.1f} decades")
        out += [{"param": name, "reason": r} for r in reasons]
    return out


def identification_words(flags: list[dict[str, str]]) -> str:
    """``not identified by these points: E (at 2.6e-09 — below 1 % of the smallest loss), A (within 10× of its
    bound)``; empty without flags."""
    if not flags:
        return ""
    return "not identified by these points: " + ", ".join(f"{f['param']} ({f['reason']})" for f in flags)


def _at_bounds(law: Law, obj: Objective, theta: np.ndarray) -> list[str]:
    lo, hi = bounds_theta(obj)
    near = (np.abs(theta - lo) < 1e-6 * np.maximum(1.0, np.abs(lo))) | (
        np.abs(theta - hi) < 1e-6 * np.maximum(1.0, np.abs(hi)))
    return [name for name, flag in zip(law.params, near, strict=True) if flag]


def fit_law(
    name: str,
    df: pd.DataFrame,
    *,
    huber_delta: float = 1e-3,
    bootstrap: int = 0,
    seed: int = 0,
    holdout: pd.Series | np.ndarray | None = None,
    coarse: bool = False,
    groups: pd.Series | np.ndarray | None = None,
    bootstrap_starts: int = 4,
    where: str = "points",
    run_noise: float | None = None,
    base_noise: float | None = None,
) -> FitResult:
    """Fit law ``name`` (a key of ``LAWS`` or ``"split"``) to ``df`` with columns of the law plus ``loss``.

    ``holdout`` is a boolean mask of rows excluded from the fit and scored afterwards. ``bootstrap`` resamples of
    the ``groups`` (one label per row, e.g. the run; default: every row its own group), each refitted from
    ``bootstrap_starts`` starts, give 95 % percentile intervals and the resampled parameter sets. ``coarse`` uses
    the law's small initialisation grid and shorter iteration caps (repeated fits in cross-validation). ``where``
    names the data in error messages. ``run_noise``: the stated relative sd of a run's loss offset; the bootstrap
    is then parametric with it (:func:`~cpt_scaling.fit.bootstrap.noise_plan`; without it, runs are resampled, or
    their noise estimated where a size has two or three). ``base_noise``: the stated relative sd of the loss offset
    shared by all runs of one size (one base model); without it, it is estimated where enough sizes identify it
    (``bootstrap_info``: ``resampling``, ``base_noise``/``run_noise`` with ``_source`` and ``_df``).
    ``"split"`` fits every split candidate and keeps the lowest held-out mean relative error (on ``holdout``,
    or else on the largest total-token rows, after which the winner is refitted on all rows; within one standard
    error of the lowest, the form with the fewest parameters).
    """
    _check_options(df, huber_delta, bootstrap, groups, where)
    _check_noise(run_noise, base_noise, where)
    df = validate_points(df, name, where).reset_index(drop=True)
    group_arr = None if groups is None else np.asarray(groups)
    if name == "split":
        return _fit_split(
            df,
            huber_delta=huber_delta,
            bootstrap=bootstrap,
            seed=seed,
            holdout=holdout,
            coarse=coarse,
            groups=group_arr,
            bootstrap_starts=bootstrap_starts,
            where=where,
            run_noise=run_noise,
            base_noise=base_noise,
        )
    law = LAWS[name]
    mask = _holdout_mask(holdout, df, where)
    train, test = df[~mask], df[mask]
    _check_enough_points(law, name, len(train), where)
    fitted = _minimize(law, train, huber_delta, coarse)
    boot = _bootstrap(law, fitted, train, bootstrap, None if group_arr is None else group_arr[~mask],
                      seed=seed, starts=bootstrap_starts, where=where, run_noise=run_noise, base_noise=base_noise)
    diagnostics = _diagnostics(law, name, fitted, train, where)
    diagnostics["not_identified"] = not_identified(law, fitted.obj, fitted.theta, boot.ci, float(fitted.y.min()))
    if diagnostics["not_identified"]:
        diagnostics["warnings"].append(identification_words(diagnostics["not_identified"]))
        log.warning("%s: %s fit: %s", where, name, diagnostics["warnings"][-1])
    add_misfit(diagnostics, train[list(law.columns)], fitted.y, fitted.pred, len(law.params),
               jac=fitted.obj.residuals(fitted.theta)[1], runs=None if group_arr is None else group_arr[~mask],
               run_noise=run_noise, where=f"{where}: {name}")
    if bootstrap and "N" in law.columns:
        for warning in _noise_warnings(boot.info):
            diagnostics["warnings"].append(warning)
            log.warning("%s: %s fit: %s", where, name, warning)
    profiles = _profiles(law, fitted, train, boot, None if group_arr is None else group_arr[~mask],
                         run_noise=run_noise, base_noise=base_noise)
    result = _assemble(name, law, fitted, train, test, boot, diagnostics, huber_delta, bootstrap)
    if profiles:
        result.extra["profile"] = profiles
    return result


def _check_options(
    df: pd.DataFrame, huber_delta: float, bootstrap: int, groups: pd.Series | np.ndarray | None, where: str
) -> None:
    """Reject a non-positive Huber delta, a negative resample count and a groups vector of the wrong length."""
    if huber_delta <= 0:
        raise InputError(where, f"huber delta must be > 0, got {huber_delta}")
    if bootstrap < 0:
        raise InputError(where, f"bootstrap resamples must be >= 0, got {bootstrap}")
    if groups is not None and len(groups) != len(df):
        raise InputError(where, f"groups must give one label per row ({len(df)}), got {len(groups)}")


def _check_noise(run_noise: float | None, base_noise: float | None, where: str) -> None:
    """Reject a stated run noise that is not positive and a base noise that is negative (or not finite)."""
    if run_noise is not None and not (math.isfinite(run_noise) and run_noise > 0):
        raise InputError(where, f"fit.run_noise must be a number > 0, got {run_noise}")
    if base_noise is not None and not (math.isfinite(base_noise) and base_noise >= 0):
        raise InputError(where, f"fit.base_noise must be a number >= 0, got {base_noise}")


def _noise_warnings(info: dict[str, Any]) -> list[str]:
    """What a fit's intervals leave out: the run-to-run noise, the base-model offset shared by a size's runs."""
    out = []
    if info.get("run_noise_source") is None:
        out.append("intervals not calibrated: some model size has a single run, whose loss offset the size terms "
                   "absorb, so resampling runs cannot show run-to-run noise; state it as fit.run_noise (--run-noise)")
    if info.get("base_noise_source") is None:
        out.append("intervals ignore the loss offset shared by all runs of a size (one base model): the sizes do "
                   "not identify it; state it as fit.base_noise (--base-noise)")
    return out


def _check_enough_points(law: Law, name: str, n_train: int, where: str) -> None:
    """Refuse a fit with no more fitting points than the law has parameters."""
    n_par = len(law.params)
    if n_train <= n_par:
        raise InputError(
            where,
            f"too few points for law {name}: {n_train} fitting point(s), need at least "
            f"{n_par + 1} for {n_par} parameters",
        )


@dataclass
class _Fitted:
    """The multistart optimum of one law on its fitting points."""

    obj: Objective
    theta: np.ndarray
    f_scaled: float
    n_starts: int
    info: dict[str, Any]
    params: dict[str, float]
    y: np.ndarray
    pred: np.ndarray


def _minimize(law: Law, train: pd.DataFrame, huber_delta: float, coarse: bool) -> _Fitted:
    """Multistart Huber fit of ``law`` to the fitting points ``train`` (log-space parameters)."""
    x = _columns(law, train)
    y = train[TARGET].to_numpy(dtype=float)
    obj = Objective(law, x, np.log(y), huber_delta, scale=huber_delta * len(y))
    effort = {"polish_iter": 100, "n_polish": 1} if coarse else {}
    info: dict[str, Any] = {}
    theta, f_scaled, n_starts = multistart_minimize(obj, law.grid_points(coarse, x), info=info, **effort)
    values = obj.natural(theta[None, :])[0]
    params = {k: float(v) for k, v in zip(law.params, values, strict=True)}
    pred = law.predict({**params, **law.fixed}, x)
    return _Fitted(obj, theta, f_scaled, n_starts, info, params, y, pred)


@dataclass
class _Bootstrap:
    """Bootstrap outcome: per-parameter intervals (None without one), its record, the resampled parameters."""

    ci: dict[str, list[float] | None]
    info: dict[str, Any]
    samples: np.ndarray | None


def _bootstrap(
    law: Law, fitted: _Fitted, train: pd.DataFrame, bootstrap: int, groups: np.ndarray | None, *, seed: int,
    starts: int, where: str, run_noise: float | None = None, base_noise: float | None = None,
) -> _Bootstrap:
    """``bootstrap`` whole-group resamples (stratified by ``N`` where the law uses it) around the optimum, or
    parametric resamples with ``run_noise`` where the groups cannot be stratified."""
    out = _Bootstrap({k: None for k in fitted.params}, {"resamples": bootstrap}, None)
    if not bootstrap:
        return out
    strata = train["N"].to_numpy(float) if "N" in law.columns else None
    boot = bootstrap_fit(fitted.obj, fitted.theta, bootstrap, groups=groups, strata=strata,
                         candidates=fitted.info.get("candidates"), starts=starts, seed=seed, run_noise=run_noise,
                         base_noise=base_noise)
    out.samples = boot.samples
    interval = boot.interval()
    if interval is not None:
        out.ci = {k: [float(a), float(b)] for k, (a, b) in zip(law.params, interval, strict=True)}
    out.info.update(parametric=boot.parametric, **boot.noise,
                    failed=boot.failed, not_converged=boot.not_converged, succeeded=bootstrap - boot.failed,
                    groups="rows" if groups is None else "groups", n_groups=boot.n_groups,
                    starts_per_resample=boot.starts, stratified_by="N" if boot.stratified else None,
                    interval=INTERVAL, method=_method(boot.noise))
    if boot.failed:
        log.warning("%s: %d of %d bootstrap resamples failed", where, boot.failed, bootstrap)
    return out


def _profiles(law: Law, fitted: _Fitted, train: pd.DataFrame, boot: _Bootstrap, groups: np.ndarray | None, *,
              run_noise: float | None, base_noise: float | None) -> list[dict[str, Any]]:
    """Where a bootstrap ran and E sits at its floor (below :data:`E_FLOOR_SHARE` of the smallest loss): the size
    exponents' intervals united with their profile-likelihood sets (:func:`unite_profiles`); their records."""
    if boot.samples is None or "E" not in fitted.params or "N" not in law.columns or (
            fitted.params["E"] >= E_FLOOR_SHARE * float(fitted.y.min())):
        return []
    return unite_profiles(fitted.obj, fitted.theta, [p for p in SIZE_EXPONENTS if p in law.params], boot.ci,
                          boot.info, np.arange(len(train)) if groups is None else groups,
                          train["N"].to_numpy(float), run_noise=run_noise, base_noise=base_noise)


def _method(noise: dict[str, Any]) -> str:
    """How the bootstrap resampled, in words."""
    def sd(key: str) -> str:
        source = noise[f"{key}_source"]
        df = noise[f"{key}_df"]
        return f"{noise[key]:g} ({source}{f', {df:.3g} df' if df is not None else ''})"
    if noise["resampling"] == "hierarchical":
        return ("percentile, parametric (hierarchical): the fit plus one offset per model size from N(0, "
                f"{sd('base_noise') if noise['base_noise_source'] else '0 (unknown)'}^2), one per run from "
                f"N(0, {sd('run_noise')}^2) (log loss) and sign-flipped within-run residuals; an estimated sd is "
                "drawn per resample from its scaled-inverse-chi-square distribution")
    words = "percentile, whole-group resampling" + (" within each model size" if noise["run_noise_source"] ==
                                                     "resampled" else "")
    if noise["resampling"] == "runs_and_base":
        words += f", plus one offset per model size from N(0, {sd('base_noise')}^2) (log loss)"
    return words


def _diagnostics(law: Law, name: str, fitted: _Fitted, train: pd.DataFrame, where: str) -> dict[str, Any]:
    """Convergence, parameters at a bound, model sizes and fit range; each problem also logged as a warning."""
    n_sizes = int(train["N"].nunique()) if "N" in train.columns else 0
    warnings: list[str] = []
    if "N" in law.columns and any(p in law.params for p in SIZE_EXPONENTS) and n_sizes < 3:
        warnings.append(f"size exponent fitted from {n_sizes} model size(s) (< 3): barely determined")
        log.warning("%s: %s fit: %s", where, name, warnings[-1])
    at_bound = _at_bounds(law, fitted.obj, fitted.theta)
    if at_bound:
        warnings.append(f"parameter(s) at a bound: {', '.join(at_bound)}")
        log.warning("%s: %s fit: %s", where, name, warnings[-1])
    optimality = fitted.info.get("optimality", {})
    if not fitted.info.get("converged", True):
        warnings.append(f"the fit failed its optimality test: one more polish round lowered the objective by "
                        f"{optimality.get('polish_improvement', float('nan')):.3g} relative (> {POLISH_RTOL:g})")
        log.warning("%s: %s fit: %s", where, name, warnings[-1])
    return {
        "converged": bool(fitted.info.get("converged", True)),
        "optimality": optimality,
        "params_at_bound": at_bound,
        "n_sizes": n_sizes,
        "fit_range": fit_range(train),
        "warnings": warnings,
    }


def _assemble(
    name: str, law: Law, fitted: _Fitted, train: pd.DataFrame, test: pd.DataFrame, boot: _Bootstrap,
    diagnostics: dict[str, Any], huber_delta: float, bootstrap: int,
) -> FitResult:
    """The :class:`FitResult` of a fit: training metrics, held-out metrics on ``test``, the points; logged."""
    y, pred, params = fitted.y, fitted.pred, fitted.params
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - float(np.sum((y - pred) ** 2)) / ss_tot if ss_tot > 0 else float("nan")
    if r2 <= 0.0:
        diagnostics["converged"] = False
        diagnostics["warnings"].append(f"R² = {r2:.3g} <= 0: the law fits its points no better than a constant")
        log.warning("%s fit: %s", name, diagnostics["warnings"][-1])
    heldout = None
    if len(test):
        heldout = heldout_metrics(
            test[TARGET].to_numpy(float),
            law.predict({**params, **law.fixed}, _columns(law, test)),
            huber_delta,
        )
    result = FitResult(
        law=name,
        formula=law.formula,
        params=params,
        fixed=dict(law.fixed),
        ci=boot.ci,
        r2=r2,
        huber=float(fitted.f_scaled * fitted.obj.scale),
        rmse=float(np.sqrt(np.mean((y - pred) ** 2))),
        n_points=len(train),
        huber_delta=huber_delta,
        n_starts=fitted.n_starts,
        bootstrap=bootstrap,
        reconstructed=law.reconstructed,
        points_used=_records(train),
        points_held_out=_records(test),
        heldout=heldout,
        diagnostics=diagnostics,
        bootstrap_info=boot.info,
        samples=boot.samples,
    )
    log.info(
        "fitted %s to %d points: huber %.4g, R2 %.4f%s",
        name,
        len(train),
        result.huber,
        r2,
        f", held-out mean rel. error {heldout['mean_rel_error']:.4g}" if heldout else "",
    )
    return result


def _fit_split(
    df: pd.DataFrame,
    *,
    huber_delta: float,
    bootstrap: int,
    seed: int,
    holdout: pd.Series | np.ndarray | None,
    coarse: bool,
    groups: np.ndarray | None,
    bootstrap_starts: int,
    where: str,
    run_noise: float | None = None,
    base_noise: float | None = None,
) -> FitResult:
    """Fit each split candidate; keep the one with the lowest held-out mean relative error (the one with the fewest
    parameters among those within one standard error of it)."""
    user_mask = holdout is not None
    mask = (
        _holdout_mask(holdout, df, where)
        if user_mask
        else (df["D"] + df["D_spec"]).to_numpy() == (df["D"] + df["D_spec"]).max()
    )
    scores: dict[str, float] = {}
    fits: dict[str, FitResult] = {}
    for cand in SPLIT_CANDIDATES:
        fits[cand] = fit_law(
            cand,
            df,
            huber_delta=huber_delta,
            bootstrap=bootstrap if user_mask else 0,
            seed=seed,
            holdout=mask,
            coarse=coarse,
            groups=groups,
            bootstrap_starts=bootstrap_starts,
            where=where,
            run_noise=run_noise,
            base_noise=base_noise,
        )
        assert fits[cand].heldout is not None
        scores[cand] = fits[cand].heldout["mean_rel_error"]
    # One-standard-error rule: among the candidates whose held-out error lies within one standard error (of the
    # mean over the held-out points) of the lowest, the one with the fewest parameters; split_transfer_n contains
    # split_effective (η = 0), so on data without an N-dependence it fits as well or a hair better by chance.
    lowest = min(scores, key=scores.__getitem__)
    test = df[mask]
    rel = np.abs(LAWS[lowest].predict(fits[lowest].params, _columns(LAWS[lowest], test)) - test[TARGET].to_numpy(float))
    rel /= test[TARGET].to_numpy(float)
    se = float(rel.std(ddof=1) / np.sqrt(rel.size)) if rel.size > 1 else 0.0
    best = min((c for c in SPLIT_CANDIDATES if scores[c] <= scores[lowest] + se),
               key=lambda c: (len(LAWS[c].params), scores[c]))
    chosen = (
        fits[best]
        if user_mask
        else fit_law(
            best, df, huber_delta=huber_delta, bootstrap=bootstrap, seed=seed, coarse=coarse, groups=groups,
            bootstrap_starts=bootstrap_starts, where=where, run_noise=run_noise, base_noise=base_noise,
        )
    )
    chosen.selection = {
        "from": "split",
        "chosen": best,
        "criterion": "held-out mean relative error"
        + ("" if user_mask else " on the largest D + D_spec rows")
        + "; within one standard error of the lowest, the form with the fewest parameters",
        "heldout_standard_error": se,
        "heldout_mean_rel_error": scores,
        "note": "split-law forms are reconstructed candidates, selected by held-out error",
    }
    return chosen


def predict(law_json: dict[str, Any], df: pd.DataFrame, *, where: str = "points", law_where: str = "law JSON"
            ) -> np.ndarray:
    """Predicted loss of a fitted law (the JSON of :meth:`FitResult.to_json`) at the rows of ``df``; a problem of
    the law names ``law_where`` (its file), one of the points ``where``."""
    name, law, params = law_params(law_json, law_where)
    df = validate_points(df, name, where, require_target=False)
    return law.predict(params, _columns(law, df))
