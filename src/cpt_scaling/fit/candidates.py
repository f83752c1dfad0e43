"""Candidate runs for `next`: read from a table (or a size x ratio x tokens grid), checked, and priced.

Price: FLOPs = ``tokens · size_flops_per_token(shape)`` when the candidate gives its shape (``n_layers, d_model,
n_heads, d_ff``, optional ``n_kv_heads, head_dim, vocab_size, model_type``), else the approximation ``6·N·D``;
GPU-hours = FLOPs / (``peak_flops_per_gpu · expected_mfu``) / 3600 (GPU-hours do not depend on how many GPUs a job
uses). Checkpoints of a candidate are geometrically spaced as the workflow's (``D/2^(n-1)``, ..., ``D/2``, ``D``).

Two kinds (``Candidate.kind``). A ``run`` is priced as a separate run of ``D`` tokens. With WSD budgets
(``cpt.budgets: branches``) a candidate of the size and ratio of a trunk that exists is an ``extension``
(:func:`price_increments`): a WSD curve with budgets ``{D_i}`` trains ``(1 − f)·max D_i + f·Σ D_i`` tokens
(:func:`curve_tokens`; the trunk to the last branch point, plus a decay branch of ``f·D_i`` per budget, ``f`` =
``cpt.decay_fraction``), so adding ``D`` to it costs ``max(0, (1 − f)·(D − max D_i)) + f·D`` tokens: the new trunk
segment, if any, plus the decay branch. An extension yields one point (its branch's end).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from cpt_scaling.core.errors import InputError
from cpt_scaling.cost import model as cost_model

#: Shape columns that price a candidate by the cost model (else N prices it as 6·N·D).
SHAPE_KEYS = ("n_layers", "d_model", "n_heads", "d_ff")
OPTIONAL_SHAPE_KEYS = ("n_kv_heads", "head_dim", "vocab_size", "model_type", "attention_bias", "mlp_bias")


@dataclass
class Candidate:
    """One candidate run: its law inputs, checkpoints and price; ``kind`` ``run`` or ``extension`` (a branch off the
    trunk named by ``extends``, priced at its increment)."""

    name: str
    N: float
    D: float
    r: float
    checkpoints: int
    flops: float
    gpu_hours: float
    flops_method: str
    extra: dict[str, Any] = field(default_factory=dict)
    kind: str = "run"
    extends: str | None = None

    def tokens(self) -> np.ndarray:
        """Checkpoint token counts, geometrically spaced, ending at ``D``."""
        n = self.checkpoints
        return np.array([self.D / 2.0 ** (n - 1 - i) for i in range(n)])


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


def default_checkpoints(points: pd.DataFrame, configured: int | None = None) -> int:
    """Checkpoints of a candidate run: ``configured`` (``cpt.checkpoints``), else the median number per run of
    ``points`` (4 without a ``run`` column)."""
    if configured:
        return int(configured)
    if "run" not in points.columns:
        return 4
    return round(float(points.groupby(points["run"].astype(str)).size().median()))


def grid_candidates(sizes: Mapping[str, Mapping[str, Any]], ratios: Sequence[float], tokens: Sequence[float]
                    ) -> pd.DataFrame:
    """Candidate rows (:func:`read_candidates`' columns) of every size x ratio x tokens, in that order; ``sizes``
    maps a name to its shape keys and/or ``N``."""
    return pd.DataFrame([{"name": name, "size": name, **cols, "D": float(d), "r": float(r)}
                         for name, cols in sizes.items() for r in ratios for d in tokens])


#: Candidate kinds: a separate run; a larger (or another) budget branched off a WSD trunk that exists.
KINDS = ("run", "extension")


def curve_tokens(budgets: Sequence[float], decay_fraction: float) -> float:
    """Tokens a WSD curve with branch ``budgets`` trains: the trunk to its last branch point plus one decay branch
    per budget, ``(1 − f)·max + f·Σ`` (0 for no budget)."""
    if not len(budgets):
        return 0.0
    return (1.0 - decay_fraction) * max(budgets) + decay_fraction * float(sum(budgets))


def trunk_key(N: float, r: float) -> tuple[float, float]:
    """The trunk a run of size ``N`` and ratio ``r`` belongs to (within one domain)."""
    return float(f"{N:.6g}"), round(float(r), 9)


def trunks_of(runs: Sequence[tuple[float, float, float]]) -> dict[tuple[float, float], list[float]]:
    """Budgets per trunk (:func:`trunk_key`) of runs ``(N, D, r)``."""
    out: dict[tuple[float, float], list[float]] = {}
    for n, d, r in runs:
        out.setdefault(trunk_key(n, r), []).append(float(d))
    return out


def price_increments(cands: Sequence[Candidate], trunks: Mapping[tuple[float, float], Sequence[float]],
                     decay_fraction: float, where: str = "cpt.decay_fraction") -> list[Candidate]:
    """``cands`` (priced as separate runs) with each one whose trunk (size, ratio) is in ``trunks``
    (:func:`trunks_of` of the runs done) repriced as an ``extension``: its increment of :func:`curve_tokens`, one
    checkpoint (module docstring); the others unchanged. ``where`` names the decay fraction's source in errors."""
    if not 0.0 < decay_fraction < 1.0:
        raise InputError(where, f"must lie in (0, 1), got {decay_fraction}")
    out = []
    for c in cands:
        budgets = trunks.get(trunk_key(c.N, c.r))
        if c.kind != "run":
            raise ValueError(f"candidate {c.name} is already priced as an {c.kind}; price the runs")
        if not budgets:
            out.append(c)
            continue
        share = (curve_tokens([*budgets, c.D], decay_fraction) - curve_tokens(budgets, decay_fraction)) / c.D
        flops = c.flops * share
        out.append(replace(c, checkpoints=1, flops=flops, gpu_hours=c.gpu_hours * share,
                           flops_method=f"{c.flops_method} x {share:.3g} (WSD increment)", kind="extension",
                           extends=f"N{c.N:.4g}-r{c.r:g}-D{max(budgets):g}"))
    return out
