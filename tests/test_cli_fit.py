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

from cpt_scaling.cli.main import main
from cpt_scaling.fit.fitting import predict


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
    assert doc["bootstrap_info"]["failed"] == 0 and doc["bootstrap_info"]["n_groups"] == 30
    assert len(doc["bootstrap_samples"]["values"]) == 8 and "diagnostics" in doc
    for key in ("r2", "huber", "rmse"):
        assert np.isfinite(doc[key])
    assert doc["n_points"] == 30 and len(doc["points_used"]) == 30 and len(doc["points_held_out"]) == 6
    assert doc["heldout"]["mean_rel_error"] < 0.02 and doc["holdout_expr"] == "N == N.max()"
    capsys.readouterr()
    assert main(["predict", "--law", str(out), "--data", str(chinchilla_csv)]) == 0
    pred = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert list(pred.columns) == ["N", "D", "loss", "predicted_loss", "extrapolation"]
    sizes = np.sort(pred["N"].unique())  # the largest size was held out: it lies N_max / N_second beyond the fit
    assert pred["extrapolation"].max() == pytest.approx(sizes[-1] / sizes[-2])
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
    assert main(["fit", "dcpt", "--data", str(data), "--coarse-grid", "--bootstrap", "0"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc["params"]) == {"E", "A", "B", "C", "alpha", "beta", "gamma", "eta", "epsilon"}
    assert all(v is None for v in doc["ci"].values()) and "bootstrap_samples" not in doc  # none computed
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


@pytest.mark.parametrize(("params", "expected"), [
    ({"E": "1.7", "A": 400.0, "B": 400.0, "alpha": 0.3, "beta": 0.3}, "parameter 'E' is '1.7', not a finite number"),
    ({"E": 1.7, "A": None, "B": 400.0, "alpha": 0.3, "beta": 0.3}, "parameter 'A' is None, not a finite number"),
    ({"E": 1.7, "B": 400.0, "alpha": 0.3, "beta": 0.3}, "lacks parameter(s) A"),
])
def test_a_bad_law_names_the_law_file_not_the_data(chinchilla_csv: Path, tmp_path: Path, capsys, params: dict,
                                                   expected: str) -> None:
    law = tmp_path / "law.json"
    law.write_text(json.dumps({"law": "chinchilla", "params": params}))
    assert main(["predict", "--law", str(law), "--data", str(chinchilla_csv)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"cpt-scaling: error: {law}: {expected}" or (err.startswith(f"cpt-scaling: error: {law}: ")
                                                                and expected in err), err


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


def test_fit_refuses_to_overwrite_its_own_input(chinchilla_csv: Path, tmp_path: Path, capsys) -> None:
    data = tmp_path / "points.csv"
    data.write_bytes(chinchilla_csv.read_bytes())
    before = data.read_bytes()
    link = tmp_path / "law.json"
    link.symlink_to(data)
    hard = tmp_path / "hard.csv"
    hard.hardlink_to(data)
    for out in (data, link, hard, tmp_path / "." / "points.csv"):
        assert main(["fit", "chinchilla", "--data", str(data), "--out", str(out), "--bootstrap", "0"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "overwrite" in err[0] and str(out) in err[0]
        assert data.read_bytes() == before
    assert main(["fit", "chinchilla", "--data", str(data), "--out", str(tmp_path / "new.json"),
                 "--bootstrap", "0"]) == 0


def test_predict_refuses_to_overwrite_its_inputs(chinchilla_csv: Path, tmp_path: Path, capsys) -> None:
    """`predict --out` naming its --data or --law (or a link to either) exits 2 with one line; inputs unchanged."""
    import hashlib

    data = tmp_path / "points.csv"
    data.write_bytes(chinchilla_csv.read_bytes())
    law = tmp_path / "law.json"
    assert main(["fit", "chinchilla", "--data", str(data), "--out", str(law), "--bootstrap", "0"]) == 0
    digest = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in (data, law)}
    link = tmp_path / "link.csv"
    link.symlink_to(data)
    for out in (data, law, link):
        assert main(["predict", "--law", str(law), "--data", str(data), "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "overwrite" in err[0] and str(out) in err[0]
        assert digest == {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in (data, law)}
    assert main(["predict", "--law", str(law), "--data", str(data), "--out", str(tmp_path / "pred.csv")]) == 0


def test_group_bootstrap_resamples_whole_runs(tmp_path: Path, capsys) -> None:
    """Runs with a shared offset across their checkpoints: resampling runs gives wider intervals than resampling
    checkpoints as if independent, and the JSON says how many groups were resampled. (Stated without a shared
    offset per size, --base-noise 0: with six sizes the fit would otherwise find the runs' offsets in the spread of
    its size terms, tests/test_fit_noise.py.)"""
    rng = np.random.default_rng(3)
    df = grid_frame(N=np.geomspace(2e7, 1e9, 6), D=np.geomspace(1e9, 1e11, 6))
    df = with_loss(df, "chinchilla", CHINCHILLA_TRUE, seed=4, noise=0.001)
    df["run"] = [f"n{n:.0f}" for n in df["N"]]
    offsets = dict(zip(df["run"].unique(), rng.normal(0, 0.01, 6), strict=True))
    df["loss"] *= np.exp(df["run"].map(offsets))
    data = tmp_path / "runs.csv"
    df[["run", "N", "D", "loss"]].to_csv(data, index=False)
    widths = {}
    for group in (None, "run"):
        out = tmp_path / f"law_{group}.json"
        args = ["fit", "chinchilla", "--data", str(data), "--out", str(out), "--bootstrap", "200", "--base-noise", "0"]
        assert main(args + (["--group", group] if group else [])) == 0
        doc = json.loads(out.read_text())
        assert doc["bootstrap_info"]["n_groups"] == (6 if group else 36)
        lo, hi = doc["ci"]["alpha"]
        widths[group] = hi - lo
    assert widths["run"] > 2 * widths[None]
    assert main(["fit", "chinchilla", "--data", str(data), "--group", "nope"]) == 2
    assert "--group column 'nope'" in capsys.readouterr().err


def test_predict_flags_extrapolation(chinchilla_csv: Path, tmp_path: Path, capsys) -> None:
    law = tmp_path / "law.json"
    assert main(["fit", "chinchilla", "--data", str(chinchilla_csv), "--out", str(law), "--bootstrap", "0"]) == 0
    grid = tmp_path / "grid.csv"
    pd.DataFrame({"N": [1e9, 5e9, 1e11], "D": [1e11, 1e11, 1e11]}).to_csv(grid, index=False)
    capsys.readouterr()
    assert main(["predict", "--law", str(law), "--data", str(grid)]) == 0
    captured = capsys.readouterr()
    pred = pd.read_csv(io.StringIO(captured.out))
    np.testing.assert_allclose(pred["extrapolation"], [1.0, 5.0, 100.0])
    assert "1 of 3 prediction(s) lie more than 10x beyond" in captured.err
