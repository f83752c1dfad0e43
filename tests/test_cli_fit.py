"""`cpt-scaling fit` / `predict`: round trips and every bad-data case (exit 2, one stderr line)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from law_synth import CHINCHILLA_TRUE, DCPT_TRUE, grid_frame, with_loss

from cpt_scaling.cli import main
from cpt_scaling.fitting import predict


@pytest.fixture(scope="module")
def chinchilla_csv(tmp_path_factory) -> Path:
    df = with_loss(
        grid_frame(N=np.geomspace(2e7, 1e9, 6), D=np.geomspace(1e9, 1e11, 6)),
        "chinchilla",
        CHINCHILLA_TRUE,
        seed=7,
    )
    path = tmp_path_factory.mktemp("cli") / "points.csv"
    df[["N", "D", "loss"]].to_csv(path, index=False)
    return path


def test_fit_predict_round_trip(chinchilla_csv: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "law.json"
    rc = main(
        [
            "fit",
            "chinchilla",
            "--data",
            str(chinchilla_csv),
            "--out",
            str(out),
            "--bootstrap",
            "8",
            "--holdout",
            "N == N.max()",
        ]
    )
    assert rc == 0
    doc = json.loads(out.read_text())
    assert doc["law"] == "chinchilla" and set(doc["params"]) == {"E", "A", "B", "alpha", "beta"}
    assert set(doc["ci"]) == set(doc["params"]) and all(lo <= hi for lo, hi in doc["ci"].values())
    for key in ("r2", "huber", "rmse"):
        assert np.isfinite(doc[key])
    assert doc["n_points"] == 30 and len(doc["points_used"]) == 30 and len(doc["points_held_out"]) == 6
    assert doc["heldout"]["mean_rel_error"] < 0.02 and doc["holdout_expr"] == "N == N.max()"
    capsys.readouterr()
    assert main(["predict", "--law", str(out), "--data", str(chinchilla_csv)]) == 0
    pred = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert list(pred.columns) == ["N", "D", "loss", "predicted_loss"]
    np.testing.assert_allclose(pred["predicted_loss"], predict(doc, pd.read_csv(chinchilla_csv)), rtol=1e-12)
    assert np.max(np.abs(pred["predicted_loss"] / pred["loss"] - 1)) < 0.03


def test_dcpt_parquet_round_trip(tmp_path: Path, capsys) -> None:
    df = with_loss(
        grid_frame(N=[5e7, 2e8, 8e8], D=np.geomspace(1e8, 1e10, 3), r=np.linspace(0.1, 0.9, 5)),
        "dcpt",
        DCPT_TRUE,
        seed=1,
    )
    data = tmp_path / "points.parquet"
    df[["N", "D", "r", "loss"]].to_parquet(data)
    assert main(["fit", "dcpt", "--data", str(data), "--coarse-grid"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc["params"]) == {"E", "A", "B", "C", "alpha", "beta", "gamma", "eta", "epsilon"}
    law = tmp_path / "law.json"
    law.write_text(json.dumps(doc))
    assert main(["predict", "--law", str(law), "--data", str(data)]) == 0
    assert len(pd.read_csv(io.StringIO(capsys.readouterr().out))) == len(df)


def _bad(tmp_path: Path, case: str) -> tuple[Path, str]:
    """A bad points file for ``case`` and the text its error must contain."""
    good = pd.DataFrame(
        {
            "N": [1e8, 2e8, 4e8, 8e8] * 3,
            "D": [1e9] * 4 + [2e9] * 4 + [4e9] * 4,
            "r": [0.5] * 12,
            "loss": np.linspace(3.0, 2.5, 12),
        }
    )
    path = tmp_path / f"{case}.csv"
    if case == "missing_column":
        good.drop(columns="D").to_csv(path, index=False)
        return path, "missing column(s) 'D'"
    if case == "unreadable":
        path = tmp_path / "garbage.parquet"
        path.write_bytes(b"not a parquet file")
        return path, "cannot read"
    if case == "absent":
        return tmp_path / "nope.csv", "not found"
    if case == "too_few":
        good.head(4).to_csv(path, index=False)
        return path, "too few points"
    bad = good.copy()
    column, value, text = {
        "nan": ("loss", np.nan, "NaN or inf"),
        "inf": ("N", np.inf, "NaN or inf"),
        "zero_n": ("N", 0.0, "'N' must be > 0"),
        "negative_d": ("D", -5.0, "'D' must be > 0"),
        "ratio_above_one": ("r", 1.5, "'r' must lie in [0, 1]"),
        "ratio_negative": ("r", -0.1, "'r' must lie in [0, 1]"),
        "text": ("N", "abc", "'N' is not numeric"),
    }[case]
    bad[column] = bad[column].astype(object)
    bad.loc[3, column] = value
    bad.to_csv(path, index=False)
    return path, text


CASES = [
    "missing_column",
    "unreadable",
    "absent",
    "too_few",
    "nan",
    "inf",
    "zero_n",
    "negative_d",
    "ratio_above_one",
    "ratio_negative",
    "text",
]


@pytest.mark.parametrize("case", CASES)
def test_bad_data_exits_2_with_one_line(case: str, tmp_path: Path, capsys) -> None:
    path, text = _bad(tmp_path, case)
    law = (
        "chinchilla"
        if case in {"missing_column", "absent", "unreadable", "inf", "zero_n", "negative_d", "text"}
        else "dcpt"
    )
    assert main(["fit", law, "--data", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0] and text in err[0], err


def test_predict_bad_data_and_bad_holdout(chinchilla_csv: Path, tmp_path: Path, capsys) -> None:
    law = tmp_path / "law.json"
    law.write_text(json.dumps({"law": "dcpt", "params": DCPT_TRUE}))
    assert main(["predict", "--law", str(law), "--data", str(chinchilla_csv)]) == 2
    assert "missing column(s) 'r'" in capsys.readouterr().err
    (tmp_path / "broken.json").write_text("{")
    assert main(["predict", "--law", str(tmp_path / "broken.json"), "--data", str(chinchilla_csv)]) == 2
    assert "broken.json" in capsys.readouterr().err
    assert main(["fit", "chinchilla", "--data", str(chinchilla_csv), "--holdout", "no_such_column > 1"]) == 2
    assert "--holdout" in capsys.readouterr().err


def test_real_subprocess_reports_bad_file(tmp_path: Path) -> None:
    path, text = _bad(tmp_path, "ratio_above_one")
    proc = subprocess.run(
        [sys.executable, "-m", "cpt_scaling.cli", "fit", "dcpt", "--data", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cpt-scaling: error: ") and str(path) in lines[0]
    assert text in lines[0]


def test_real_subprocess_fit_succeeds(chinchilla_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "law.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "cpt_scaling.cli",
            "fit",
            "chinchilla",
            "--data",
            str(chinchilla_csv),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out.read_text())["n_points"] == 36
