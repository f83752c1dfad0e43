"""The decision `next` ranks runs for, as a function of a D-CPT law's parameters: what it is computed at
(:class:`DecisionSpec`, with defaults read from the fit), the fitted losses it reads (:class:`Target`: law, paired
bootstrap members, noise scales) and its value for every member.

Decisions: ``usage1`` (ratio minimising domain loss subject to the general-loss limit; needs the domain and the
general fit), ``usage2`` (best ratio for limited domain data), ``usage3`` (compute-optimal ``N`` at a ratio; its
width is measured in decades of ``N``). ``split`` and ``sger`` are refused: their decisions are not functions of a
D-CPT law's parameters at candidate (N, D, r) runs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from cpt_scaling.core.errors import InputError
from cpt_scaling.fit.decisions import DCPT_NAMES, batched_argmin, param_sets
from cpt_scaling.fit.design_noise import noise_scales
from cpt_scaling.laws import Law

#: Decisions `next` knows of; only SUPPORTED ones are functions of a D-CPT law at candidate runs.
DECISIONS = ("usage1", "usage2", "usage3", "split", "sger")
SUPPORTED = ("usage1", "usage2", "usage3")


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


def finite_rows(targets: Sequence[tuple[Law, dict[str, np.ndarray], int]]) -> np.ndarray:
    """Indices of resample rows (1..n of the param_sets batch) finite in every target, paired by index."""
    n = min(nb for _, _, nb in targets)
    ok = np.ones(n, dtype=bool)
    for _, p, _ in targets:
        for v in p.values():
            ok &= np.isfinite(v[1 : n + 1, 0])
    return np.flatnonzero(ok) + 1


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


def targets_from(laws: Mapping[str, Mapping[str, Any]], points: Mapping[str, pd.DataFrame], where: str
                 ) -> tuple[dict[str, Target], int]:
    """Members paired across the targets' resamples (finite rows only) and each target's noise scales."""
    sets = {name: param_sets(js, DCPT_NAMES) for name, js in laws.items()}
    if any(nb == 0 for _, _, nb in sets.values()):
        raise InputError(where, "the law JSON has no bootstrap_samples: refit with --bootstrap N (e.g. 1000) so the "
                                "decision's uncertainty is known")
    rows = finite_rows(list(sets.values()))
    if rows.size < 20:
        raise InputError(where, f"only {rows.size} finite bootstrap resample(s); need at least 20")
    targets: dict[str, Target] = {}
    for name, (law, p, _) in sets.items():
        point = {k: float(v[0, 0]) for k, v in p.items()}
        s_run, s_pt = noise_scales(law, point, points[name], where)
        targets[name] = Target(name, law, {k: v[rows] for k, v in p.items()}, s_run, s_pt, flip=name == "general")
    return targets, int(rows.size)


def decision_interval(laws: Mapping[str, Mapping[str, Any]], points: Mapping[str, pd.DataFrame], spec: DecisionSpec,
                      level: float = 0.95, where: str = "law JSON") -> tuple[float, float]:
    """The decision's percentile interval over the fits' paired bootstrap resamples (members without a value left
    out), as :func:`cpt_scaling.fit.proposal.propose` reports the current interval."""
    targets, _ = targets_from(laws, points, where)
    values = decision_values(spec, targets)
    values = values[np.isfinite(values)]
    if values.size < 2:
        raise InputError(where, "the decision is undefined for the bootstrap resamples")
    tail = 50.0 * (1.0 - level)
    lo, hi = np.percentile(values, [tail, 100.0 - tail])
    return float(lo), float(hi)
