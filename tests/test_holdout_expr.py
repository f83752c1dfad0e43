"""The --holdout expression language selects rows like the pandas expression it reads like, and refuses code."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from cpt_scaling.core.errors import InputError
from cpt_scaling.fit.holdout import holdout_mask

DF = pd.DataFrame({"N": [1e6, 1e7, 1e8, 1e8], "D": [1e9, 2e9, 4e9, 8e9], "r": [0.1, 0.5, 0.9, 0.5],
                   "domain": ["legal", "legal", "medical", "legal"]})


@pytest.mark.parametrize(("expr", "pandas"), [
    ("N == N.max()", "N == N.max()"),
    ("D >= 2e9 and r in [0.1, 0.9]", "D >= 2e9 and r in [0.1, 0.9]"),
    ("not (domain == 'legal') | N < 1e7", "~(domain == 'legal') | (N < 1e7)"),
    ("r not in [0.5] & D > D.min()", "r not in [0.5] and D > D.min()"),
    ("(N == 1e8) or (D < D.median())", "(N == 1e8) or (D < D.median())"),
    ('domain != "medical"', 'domain != "medical"'),
])
def test_expressions_select_what_pandas_would(expr: str, pandas: str) -> None:
    assert holdout_mask(DF, expr, "points.csv").tolist() == DF.eval(pandas, engine="python").tolist()


@pytest.mark.parametrize("expr", [
    "@os.system('touch pwned') == 0",
    "__import__('os').system('touch pwned') == 0",
    "N.__class__ == 1",
    "N.apply(print) == 1",
    "N",
    "N == ",
    "size == 1",
    "N == 1 and 2",
])
def test_anything_else_is_refused_naming_the_expression_and_runs_nothing(expr: str, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError) as info:
        holdout_mask(DF, expr, "points.csv")
    assert str(info.value).startswith(f"--holdout {expr!r}: ") and "\n" not in str(info.value)
    assert not (tmp_path / "pwned").exists()


def test_points_beyond_the_stated_range_are_refused_naming_column_and_rows() -> None:
    """N or D times 1e100 (a unit slip) is refused before any fit, not fitted to a meaningless optimum."""
    from cpt_scaling.fit.points import validate_points

    df = pd.DataFrame({"N": [1e8, 1e108, 1e9], "D": [1e9, 1e10, 1e11], "loss": [3.0, 2.9, 2.8]})
    with pytest.raises(InputError) as info:
        validate_points(df, "chinchilla", "points.csv")
    assert str(info.value) == "points.csv: column 'N' must lie in [1, 1e+15] (the stated range); outside in row(s) 1"
    df.loc[1, "N"] = 2e8
    df.loc[2, "D"] = 1e111
    with pytest.raises(InputError, match=r"column 'D' must lie in \[1, 1e\+18\]"):
        validate_points(df, "chinchilla", "points.csv")
