"""Held-out validation protocols for fitted laws; each reports held-out relative error ``|L̂ − L| / L``.

* :func:`holdout_largest_model` — fit on the smaller models, predict the largest ``N``;
* :func:`holdout_largest_tokens` — fit on shorter runs, predict the largest token count (``D``, or
  ``D + D_spec`` for split laws);
* :func:`ratio_cross_validation` — fit on 7 of 9 mixture ratios, predict the other 2, over all 36 splits;
* :func:`leave_domains_out` — cross-domain law: fit on the other domains, predict each held-out domain.

Repeated fits (cross-validation) use the law's coarse initialisation grid to stay fast.
"""

from __future__ import annotations

import itertools
import logging
from typing import Any

import numpy as np
import pandas as pd

from cpt_scaling.core.errors import InputError
from cpt_scaling.fit.fitting import fit_law
from cpt_scaling.fit.points import validate_points

log = logging.getLogger(__name__)


def _summary(protocol: str, law: str, splits: list[dict[str, Any]]) -> dict[str, Any]:
    means = [s["heldout"]["mean_rel_error"] for s in splits]
    maxes = [s["heldout"]["max_rel_error"] for s in splits]
    return {
        "protocol": protocol,
        "law": law,
        "n_splits": len(splits),
        "mean_rel_error": float(np.mean(means)),
        "max_rel_error": float(np.max(maxes)),
        "splits": splits,
    }


def _single(
    protocol: str, law: str, df: pd.DataFrame, mask: np.ndarray, desc: str, **fit: Any
) -> dict[str, Any]:
    res = fit_law(law, df, holdout=mask, **fit)
    split = {"held_out": desc, "n_train": res.n_points, "heldout": res.heldout, "params": res.params}
    return _summary(protocol, law, [split])


def holdout_largest_model(df: pd.DataFrame, law: str, *, where: str = "points", **fit: Any) -> dict[str, Any]:
    """Fit on every model size but the largest; score the largest."""
    n = df["N"].to_numpy(float)
    return _single("largest_model", law, df, n == n.max(), f"N == {n.max():g}", where=where, **fit)


def holdout_largest_tokens(
    df: pd.DataFrame, law: str, *, where: str = "points", **fit: Any
) -> dict[str, Any]:
    """Fit on all but the largest token segment (``D``, or ``D + D_spec`` for split laws); score it."""
    tokens = df["D"].to_numpy(float)
    if "D_spec" in df.columns and law.startswith("split"):
        tokens = tokens + df["D_spec"].to_numpy(float)
    return _single(
        "largest_tokens", law, df, tokens == tokens.max(), f"tokens == {tokens.max():g}", where=where, **fit
    )


def ratio_cross_validation(
    df: pd.DataFrame,
    law: str = "dcpt",
    *,
    n_train: int = 7,
    where: str = "points",
    coarse: bool = True,
    **fit: Any,
) -> dict[str, Any]:
    """Fit on ``n_train`` distinct ratios, score the rest, over every combination (7 of 9: 36 splits)."""
    df = validate_points(df, law, where).reset_index(drop=True)
    ratios = np.unique(df["r"].to_numpy(float))
    if ratios.size <= n_train:
        raise InputError(
            where, f"ratio cross-validation needs more than {n_train} distinct ratios, found {ratios.size}"
        )
    splits = []
    for train in itertools.combinations(ratios, n_train):
        mask = ~df["r"].isin(train).to_numpy()
        res = fit_law(law, df, holdout=mask, coarse=coarse, where=where, **fit)
        held = sorted(set(ratios) - set(train))
        splits.append({"held_out": [float(r) for r in held], "n_train": res.n_points, "heldout": res.heldout})
    log.info("ratio CV of %s: %d splits", law, len(splits))
    return _summary(f"ratio_cv_{n_train}_of_{ratios.size}", law, splits)


def leave_domains_out(
    df: pd.DataFrame,
    law: str = "cross_domain",
    *,
    column: str = "domain",
    where: str = "points",
    coarse: bool = True,
    **fit: Any,
) -> dict[str, Any]:
    """Cross-domain law: for each domain, fit on the others and score the held-out domain.

    Each split keeps the parameters of its fit (fixed ones included), so the held-out domain can be predicted.
    """
    if column not in df.columns:
        raise InputError(where, f"missing column {column!r} needed for leave-domains-out validation")
    df = df.reset_index(drop=True)
    domains = sorted(df[column].astype(str).unique())
    if len(domains) < 2:
        raise InputError(
            where, f"leave-domains-out needs at least 2 domains in {column!r}, found {len(domains)}"
        )
    splits = []
    for dom in domains:
        mask = (df[column].astype(str) == dom).to_numpy()
        res = fit_law(law, df, holdout=mask, coarse=coarse, where=where, **fit)
        splits.append({"held_out": dom, "n_train": res.n_points, "heldout": res.heldout,
                       "params": {**res.params, **res.fixed}})
    return _summary("leave_domains_out", law, splits)
