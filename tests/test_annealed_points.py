"""Which points the law fits use (fit.intermediate_points): annealed points only by default (a WSD branch end, a
cosine run's last checkpoint), intermediate checkpoints too when asked, always flagged; Chinchilla never fits an
unannealed point; a config whose annealed points cannot identify a law is refused at parse time, naming the key."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import make_workdir
from law_synth import eval_table
from workflow_utils import plan_in, planned_jobs, run_snakemake

from cpt_scaling.core.errors import InputError
from cpt_scaling.evaluate.tables import read_eval_tables
from cpt_scaling.figures import dcpt as dcpt_figures
from cpt_scaling.studies.chinchilla import chinchilla_points, fit_chinchilla_study
from cpt_scaling.studies.common import annealed_points
from cpt_scaling.studies.dcpt import dcpt_points, fit_dcpt_study
from cpt_scaling.studies.specialization import best_checkpoints
from cpt_scaling.studies.split import split_points

FIT = {"huber_delta": 1e-3, "bootstrap": 0, "seed": 0, "coarse_grid": True}
STUDY = {"general_tolerance": 0.03, "domain_tokens": None, "compute_budgets": []}
ANNEALED_ONLY, WITH_INTERMEDIATE = {**FIT, "intermediate_points": False}, {**FIT, "intermediate_points": True}


def _run_rows(run: str, kind: str, budget: int | None, ds: list[int], ratio: float | None = 0.5,
              size: str = "xs", n: int = 1000) -> list[dict]:
    """Rows of one run's eval table as evaluate_with_meta writes them (test split; legal and general)."""
    return [{"run": run, "kind": kind, "size": size, "N": n, "domain": "legal" if ratio else None, "ratio": ratio,
             "budget": budget, "pretrain_tokens": 0 if kind == "pretrain" else 8000, "D": d, "suite": suite,
             "split": "test", "loss": 3.0 - 0.1 * k - (0.05 if suite == "legal" else 0.0)}
            for k, d in enumerate(ds) for suite in ("legal", "general")]


def _tables(tmp_path: Path, runs: dict[str, list[dict]]) -> pd.DataFrame:
    """Write each run's rows as its own Parquet eval table and read them back as the fit jobs do."""
    paths = []
    for name, rows in runs.items():
        path = tmp_path / f"{name}.parquet"
        pd.DataFrame(rows).to_parquet(path)
        paths.append(path)
    return read_eval_tables(paths)


def test_annealed_only_drops_the_cosine_intermediate_checkpoints_and_include_keeps_them_flagged(tmp_path) -> None:
    # Two cosine runs (budgets 4,000 and 8,000; checkpoints at a quarter, half and the end) and a WSD curve whose
    # two branch ends (budget null in its eval tables) are one run's points.
    df = _tables(tmp_path, {
        "cos4": _run_rows("cpt-a", "cpt", 4000, [1000, 2000, 4000]),
        "cos8": _run_rows("cpt-b", "cpt", 8000, [2000, 4000, 8000]),
        "wsd4": _run_rows("cpt-c", "cpt", None, [4000], ratio=1.0),
        "wsd8": _run_rows("cpt-c", "cpt", None, [8000], ratio=1.0),
    })
    pts = dcpt_points(df, "legal")
    assert len(pts) == 2 * 8  # 8 checkpoints, each a domain and a general point
    annealed = {(r, d) for r, d, a in zip(pts["run"], pts["D"], pts["annealed"], strict=True) if a}
    assert annealed == {("cpt-a", 4000), ("cpt-b", 8000), ("cpt-c", 4000), ("cpt-c", 8000)}

    only = annealed_points(pts, ANNEALED_ONLY, "test")
    assert len(only) == 2 * 4 and only["annealed"].all()
    assert sorted(set(zip(only["run"], only["D"], strict=True))) == sorted(annealed)

    every = annealed_points(pts, WITH_INTERMEDIATE, "test")
    assert len(every) == len(pts) and every["annealed"].dtype == bool
    assert sorted(every.loc[~every["annealed"], "D"].unique()) == [1000, 2000, 4000]  # cpt-b's 4,000 is one too
    assert int((~every["annealed"]).sum()) == 2 * 4

    # One annealed D only (a single budget of separate runs): refused, naming the key and the fix.
    one = annealed_points(pts, WITH_INTERMEDIATE, "test")
    one = one[one["run"] == "cpt-a"]
    with pytest.raises(InputError, match=r"fit\.intermediate_points: true") as err:
        annealed_points(one, ANNEALED_ONLY, "D-CPT points of legal")
    assert "cpt.tokens" in str(err.value) and "D-CPT points of legal" in str(err.value)


def test_split_and_specialization_select_annealed_checkpoints(tmp_path) -> None:
    df = _tables(tmp_path, {
        "pre": _run_rows("pt-xs", "pretrain", 8000, [2000, 4000, 8000], ratio=None),
        "split": [{**r, "kind": "split", "pretrain_tokens": 4000, "ratio": 1.0}
                  for r in _run_rows("split-xs", "split", 4000, [1000, 2000, 4000], ratio=1.0)],
    })
    pts = split_points(df, "legal", 1.0)
    flags = {(d, ds): a for d, ds, a in zip(pts["D"], pts["D_spec"], pts["annealed"], strict=True)}
    assert flags == {(2000, 0): False, (4000, 0): False, (8000, 0): True,
                     (4000, 1000): False, (4000, 2000): False, (4000, 4000): True}
    only = annealed_points(pts, ANNEALED_ONLY, "split", fix="...")
    assert sorted(zip(only["D"], only["D_spec"], strict=True)) == [(4000, 4000), (8000, 0)]

    # Specialisation: the best checkpoint by validation loss, among the annealed ones unless asked otherwise.
    spec = eval_table(seed=0, domains=("legal",))
    spec = spec.assign(annealed=spec["D"] == spec["budget"])
    best_any = best_checkpoints(spec, "legal", 1.0)
    best = best_checkpoints(spec, "legal", 1.0, annealed_only=True)
    assert best["annealed"].all() and (best["best_D"] == best["budget"]).all()
    assert len(best) == len(best_any) == 6
    assert not best_any["annealed"].all()  # the synthetic specialist overfits late: its best is intermediate


def test_chinchilla_never_fits_an_unannealed_point(tmp_path) -> None:
    table = eval_table(seed=2, domains=("legal",), pretrain_branches=True)
    # Size m pretrains as one cosine run: only its final checkpoint is annealed.
    m = (table["kind"] == "pretrain") & (table["size"] == "m")
    table.loc[m, "budget"] = int(table.loc[m, "D"].max())
    path = tmp_path / "eval.parquet"
    table.to_parquet(path)
    out = {k: tmp_path / f"chin_{k}" for k in ("law.json", "points.csv", "frontier.csv")}
    for fit in (ANNEALED_ONLY, WITH_INTERMEDIATE):  # whatever fit.intermediate_points says
        law = fit_chinchilla_study([path], fit, out["law.json"], out["points.csv"], out["frontier.csv"])
        points = pd.read_csv(out["points.csv"])
        assert points["annealed"].all() and len(points) == 4 + 4 + 1
        assert law["unannealed_points"] == 0 and law["point_selection"]["unannealed_left_out"] == 3
        assert json.loads(out["law.json"].read_text())["n_points"] == 9
    # Every size a single cosine run: one annealed point per size, the data exponent unidentified.
    single = eval_table(seed=2, domains=("legal",))
    single.to_parquet(path)
    assert not chinchilla_points(read_eval_tables([path]))["annealed"].all()
    for p in out.values():
        p.unlink()
    with pytest.raises(InputError, match=r"pretrain\.budgets: branches"):
        fit_chinchilla_study([path], WITH_INTERMEDIATE, out["law.json"], out["points.csv"], out["frontier.csv"])
    assert not any(p.exists() for p in out.values())  # no partial artifact


def test_dcpt_law_counts_and_the_figure_marks_unannealed_points(tmp_path) -> None:
    cosine = eval_table(seed=3, domains=("legal",))  # one CPT budget of cosine runs, 4 checkpoints each
    branches = cosine.assign(budget=cosine["budget"].where(cosine["kind"] != "cpt"))  # the same as branch ends
    laws = {}
    for name, table, fit in (("cosine", cosine, WITH_INTERMEDIATE), ("branches", branches, ANNEALED_ONLY)):
        path = tmp_path / f"{name}.parquet"
        table.to_parquet(path)
        out = {k: tmp_path / f"{name}_{k}" for k in ("law.json", "points.csv", "usages.csv")}
        fit_dcpt_study([path], "legal", fit, STUDY, 65536.0, out["law.json"], out["points.csv"], out["usages.csv"])
        laws[name] = (json.loads(out["law.json"].read_text()), pd.read_csv(out["points.csv"]))
    law, points = laws["cosine"]
    assert points["annealed"].dtype == bool and (points["annealed"] == (points["D"] == points["budget"])).all()
    assert law["unannealed_points"] == int((~points["annealed"]).sum()) == 2 * 3 * 5 * 3  # targets, sizes, r, ckpt
    assert "not annealed" in law["unannealed_note"] and law["point_selection"]["intermediate_points"] is True
    assert any("not annealed" in w for w in law["diagnostics"]["warnings"])
    law_b, points_b = laws["branches"]
    assert points_b["annealed"].all() and law_b["unannealed_points"] == 0 and "unannealed_note" not in law_b
    assert len(points_b) == len(points)

    def legend(fig) -> set[str]:
        return {t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()}

    hollow = [c for ax in dcpt_figures.build_ratio_figure(law, points).axes for c in ax.collections
              if len(c.get_offsets()) and not len(c.get_facecolor())]
    assert hollow  # the intermediate checkpoints drawn without fill
    assert dcpt_figures.UNANNEALED_LABEL in legend(dcpt_figures.build_ratio_figure(law, points))
    assert dcpt_figures.UNANNEALED_LABEL in legend(dcpt_figures.build_fit_figure(law, points))
    assert dcpt_figures.UNANNEALED_LABEL not in legend(dcpt_figures.build_ratio_figure(law_b, points_b))
    assert dcpt_figures.UNANNEALED_LABEL not in legend(dcpt_figures.build_fit_figure(law_b, points_b))


def _micro_variant(workdir: Path, name: str, **edits) -> str:
    cfg = yaml.safe_load((workdir / "micro.yaml").read_text())
    for section, value in edits.items():
        cfg[section] = {**cfg.get(section, {}), **value}
    (workdir / name).write_text(yaml.safe_dump(cfg))
    return name


def test_unidentifiable_annealed_fits_are_refused_at_parse_time_naming_the_key(tmp_path: Path) -> None:
    workdir = make_workdir(tmp_path / "w")
    strict = _micro_variant(workdir, "strict.yaml", fit={"intermediate_points": False})
    plan = plan_in(workdir, strict)
    unavailable = plan.unavailable_studies()
    assert {"dcpt", "cross_domain", "next_runs", "chinchilla"} <= set(unavailable)
    assert "fit.intermediate_points: true" in unavailable["dcpt"] and "cpt.tokens" in unavailable["dcpt"]
    assert "pretrain.budgets: branches" in unavailable["chinchilla"]

    result = run_snakemake(workdir, strict, "results/figures/dcpt_legal.pdf", "--dry-run")
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    lines = [ln for ln in result.stderr.splitlines() if "dcpt_legal.pdf" in ln]
    assert len(lines) == 1 and "strict.yaml" in lines[0] and "fit.intermediate_points: true" in lines[0], lines
    assert "Traceback" not in result.stderr and not (workdir / "results").exists()

    # The default target leaves them out with one INFO line each and plans no D-CPT, cross-domain or
    # Chinchilla job; the specialisation study stays (its annealed points suffice). The split study goes too: its
    # cosine split runs' ends give one annealed D' level (issue 24: it needs 3 spanning 8x).
    assert "studies.split.spec_tokens" in unavailable["split"]
    jobs = planned_jobs(workdir, strict)
    rules = {rule for rule, _ in jobs}
    assert not {"fit_dcpt", "figures_dcpt", "fit_cross_domain", "fit_chinchilla", "fit_split"} & rules
    assert {"fit_specialization"} <= rules

    # Several budgets: every point annealed, nothing refused but Chinchilla (one cosine pretraining run) and the
    # split study (its D' levels, the two budgets, span 2x).
    budgets = _micro_variant(workdir, "budgets.yaml", fit={"intermediate_points": False},
                             cpt={"tokens": [2048, 4096]})
    assert set(plan_in(workdir, budgets).unavailable_studies()) == {"chinchilla", "split"}
    # The shipped micro config asks for the intermediate points: D-CPT runs; Chinchilla never fits them.
    assert set(plan_in(workdir, "micro.yaml").unavailable_studies()) == {"chinchilla"}
    # Pretraining branches, but 2 sizes x 2 budgets = 4 annealed points for the law's 5 parameters: refused at
    # parse time (the fit would fail only when it runs); 2 x 3 = 6 points run.
    few = _micro_variant(workdir, "few.yaml", pretrain={"tokens": 8192, "checkpoints": 2, "budgets": "branches"})
    assert "has 4 (sizes x pretrain.checkpoints = 2 x 2)" in plan_in(workdir, few).unavailable_studies()["chinchilla"]
    enough = _micro_variant(workdir, "enough.yaml", pretrain={"tokens": 8192, "checkpoints": 3, "budgets": "branches"})
    assert "chinchilla" not in plan_in(workdir, enough).unavailable_studies()
