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
