"""Reading and validating tables of (inputs, loss) points for the law fitters.

A points table has one row per measured run/checkpoint: the law's input columns (``N`` model parameters, ``D``
tokens, ``r`` mixture ratio in [0, 1], ``D_spec`` specialisation tokens (0 for an unsplit run), ``k1``/``k2``
cross-domain coefficients) and ``loss`` (the target, natural-log cross-entropy or any positive quantity). Extra columns
(e.g. ``domain``) are kept and ignored by the law.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cpt_scaling.core.errors import InputError

TARGET = "loss"
#: Columns that must be strictly positive, or non-negative (``D_spec`` = 0: an unsplit run); ratios lie in [0, 1].
POSITIVE = ("N", "D", "k1", "k2", TARGET)
NONNEGATIVE = ("D_spec",)
RATIOS = ("r",)
#: The stated range of each column: parameters, tokens, coefficients and losses of any real study lie far inside
#: it; a value outside (a unit slip, N or D times 1e100) is refused rather than fitted to a meaningless optimum.
RANGES = {"N": (1.0, 1e15), "D": (1.0, 1e18), "D_spec": (0.0, 1e18), "k1": (1e-12, 1e12), "k2": (1e-12, 1e12),
          TARGET: (1e-12, 1e6)}


def read_points(path: str | Path) -> pd.DataFrame:
    """Read a CSV or Parquet (``.parquet``/``.pq``) points file; raise :class:`InputError` if unreadable."""
    path = Path(path)
    try:
        if path.suffix.lower() in {".parquet", ".pq"}:
            return pd.read_parquet(path)
        return pd.read_csv(path)
    except FileNotFoundError:
        raise InputError(str(path), "file not found") from None
    except Exception as exc:  # any parser failure is a bad input file
        raise InputError(
            str(path),
            f"cannot read as {'Parquet' if path.suffix.lower() in {'.parquet', '.pq'} else 'CSV'}: {exc}",
        ) from None


def _rows(mask: np.ndarray) -> str:
    idx = np.flatnonzero(mask)
    shown = ", ".join(str(int(i)) for i in idx[:5])
    return f"row(s) {shown}{', ...' if idx.size > 5 else ''}"


def validate_points(
    df: pd.DataFrame, law_name: str, where: str, *, require_target: bool = True
) -> pd.DataFrame:
    """Check ``df`` holds finite, in-range numeric columns for ``law_name``; return them as float columns.

    Raises :class:`InputError` naming ``where`` (the file) and the column at fault. Row numbers are 0-based
    data rows. ``require_target=False`` skips ``loss`` (prediction input).
    """
    from cpt_scaling.laws import FIT_NAMES, LAWS, SPLIT_CANDIDATES

    if law_name not in FIT_NAMES:
        raise InputError(where, f"unknown law {law_name!r} (known: {', '.join(FIT_NAMES)})")
    law = LAWS[SPLIT_CANDIDATES[0] if law_name == "split" else law_name]
    needed = (*law.columns, TARGET) if require_target else law.columns
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise InputError(
            where,
            f"missing column(s) {', '.join(map(repr, missing))}; law {law_name} needs {', '.join(needed)}",
        )
    out = df.copy()
    for col in needed:
        values = pd.to_numeric(df[col], errors="coerce")
        bad_type = values.isna() & df[col].notna()
        if bad_type.any():
            raise InputError(where, f"column {col!r} is not numeric in {_rows(bad_type.to_numpy())}")
        arr = values.to_numpy(dtype=float)
        bad = ~np.isfinite(arr)
        if bad.any():
            raise InputError(where, f"column {col!r} has NaN or inf in {_rows(bad)}")
        if col in POSITIVE and (arr <= 0).any():
            raise InputError(where, f"column {col!r} must be > 0; non-positive in {_rows(arr <= 0)}")
        if col in NONNEGATIVE and (arr < 0).any():
            raise InputError(where, f"column {col!r} must be >= 0; negative in {_rows(arr < 0)}")
        lo, hi = RANGES.get(col, (-np.inf, np.inf))
        outside = (arr < lo) | (arr > hi)
        if outside.any():
            raise InputError(where, f"column {col!r} must lie in [{lo:g}, {hi:g}] (the stated range); outside in "
                                    f"{_rows(outside)}")
        if col in RATIOS and ((arr < 0) | (arr > 1)).any():
            raise InputError(
                where, f"column {col!r} must lie in [0, 1]; outside in {_rows((arr < 0) | (arr > 1))}"
            )
        out[col] = arr
    return out
