"""The demo reports every seed finding with its verdict (reproduced / not resolved / contradicted), read from its own
recorded tables (report/demo/, written by `make demo-record` after `make demo`), and those tables are the current
demo's: the plan keys they were made with equal the keys config/demo.yaml plans now. The check of the recorded
verdicts is shown to fail on tables broken by hand from the recorded ones.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from workflow_utils import REPO, plan_in

from cpt_scaling.studies.findings import FINDINGS, REPRODUCED, ROW_KEYS, VERDICTS, domain_findings, seed_findings

RECORD = REPO / "report" / "demo"
DOMAINS = ["legal", "medical", "accounting"]


def test_recorded_demo_tables_belong_to_the_current_demo_plan() -> None:
    recorded = json.loads((RECORD / "plan_keys.json").read_text())
    now = sorted(plan_in(REPO, recorded["config"]).by_key)
    stale = sorted(set(now) ^ set(recorded["keys"]))
    assert not stale, f"report/demo/ is stale ({len(stale)} keys differ): run `make demo && make demo-record`"


def test_every_fit_the_demo_wrote_is_at_the_optimum_of_its_objective() -> None:
    """report/demo/law_optimum_check.csv (recorded with the tables above, so of the current plan): each fit of each
    law JSON the demo wrote, its objective at the reported parameters against the best of an independent
    optimiser (scipy Nelder-Mead from the optimum, an L-BFGS-B multistart) on the same points; within 1e-6."""
    table = pd.read_csv(RECORD / "law_optimum_check.csv")
    laws = json.loads((RECORD / "laws_diagnostics.json").read_text())
    assert set(table["law"]) == set(laws), "a law JSON of the demo is not checked"
    for law, targets in table.groupby("law")["target"]:
        expected = {"dcpt": {"domain_loss", "general_loss"},
                    "specialization": {"general_powerlaw", "specialist_powerlaw"}}.get(law.split("_")[0], {"all"})
        assert set(targets) == expected, (law, sorted(targets))
    off = table[~(table["within_1e-6"].astype(bool) & (table["ratio"] <= 1 + 1e-6))]
    assert off.empty, f"fits short of their optimum:\n{off.to_string()}"


def _run_noise() -> float | None:
    return yaml.safe_load((REPO / "config" / "demo.yaml").read_text())["fit"]["run_noise"]


def _ours(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of this module's findings (other studies' rows, e.g. the split study's, are checked by theirs)."""
    return table[table["finding"].isin(FINDINGS)].reset_index(drop=True)


def _check_recorded(tables: Path) -> pd.DataFrame:
    """The findings recomputed from ``tables`` equal the recorded report/demo/seed_findings.csv (AssertionError
    otherwise), and every finding of every domain is reported with a verdict and its numbers."""
    found = seed_findings(tables, DOMAINS, _run_noise())
    assert set(found["verdict"]) <= set(VERDICTS)
    assert {(d, f) for d, f in zip(found["domain"], found["finding"], strict=True)} == {
        (d, f) for d in DOMAINS for f in FINDINGS}
    assert found["evidence"].str.contains(r"\d").all()
    recorded = _ours(pd.read_csv(RECORD / "seed_findings.csv"))
    order = ["domain", "finding"]  # the recorder lists domains as the loaded config does
    pd.testing.assert_frame_equal(found[list(ROW_KEYS)].sort_values(order).reset_index(drop=True),
                                  recorded[list(ROW_KEYS)].sort_values(order).reset_index(drop=True))
    return found


def test_demo_reports_every_seed_finding_with_its_verdict() -> None:
    """Whatever the verdicts are, the recorded table states each, with the numbers they rest on."""
    found = _check_recorded(RECORD)
    print(found.to_string())


def test_the_recorded_findings_are_every_studys_rows_as_seed_findings_gathers_them() -> None:
    """The workflow's rule and the recorder gather the rows with one function: the split study's rows come in
    with the other studies' (the recorded table is exactly what it returns)."""
    split_domains = sorted(p.stem.removeprefix("split_findings_") for p in RECORD.glob("split_findings_*.csv"))
    assert split_domains
    found = seed_findings(RECORD, DOMAINS, _run_noise(), split_domains)
    assert set(split_domains) <= set(found.loc[~found["finding"].isin(FINDINGS), "domain"])
    order = ["domain", "finding"]
    pd.testing.assert_frame_equal(found.sort_values(order).reset_index(drop=True),
                                  pd.read_csv(RECORD / "seed_findings.csv").sort_values(order).reset_index(drop=True))


def _push_by_n(df: pd.DataFrame, rows: pd.Series, column: str, step: float) -> None:
    """Set ``column`` of ``rows`` (one per size) to a strong trend in N: first value + step x rank."""
    order = df.loc[rows].sort_values("N").index
    first = float(df.loc[order[0], column])
    for k, i in enumerate(order):
        df.loc[i, column] = first + step * k


def _break(tables: Path, domain: str, finding: str, recorded: str) -> None:
    """Rewrite ``tables`` so that ``finding`` of ``domain`` gets another verdict than ``recorded``: a trend
    reversed (or made strong where it was unresolved), intervals overlapped or separated, an optimum at an edge."""
    spec_path, points_path, usages_path = (tables / f"{name}_{domain}.csv" for name in
                                           ("specialization", "dcpt_points", "dcpt_usages"))
    spec, points, usages = (pd.read_csv(p) for p in (spec_path, points_path, usages_path))
    held = recorded == REPRODUCED
    specialist = spec["role"] == "specialist"
    if finding.endswith("perplexity_falls_with_size"):
        role = specialist if finding.startswith("specialist") else spec["role"] == "general"
        _push_by_n(spec, role, "domain_loss", 0.3 if held else -0.3)  # rises, or falls clearly
    elif finding == "forgetting_falls_with_size":
        _push_by_n(spec, specialist, "forgetting", 0.4 if held else -0.4)
    elif finding == "sger_above_one":
        values = (0.5, 0.6, 0.9) if held else (1.5, 2.0, 3.0)  # below 1 / all above 1
        spec.loc[specialist, ["sger_lo", "sger", "sger_hi"]] = values
    elif finding == "sger_rises_with_size":  # the smallest size as recorded (SGER > 1 keeps its verdict)
        order = spec[specialist].sort_values("N").index
        cols = ["sger_lo", "sger", "sger_hi"]
        if held:  # the largest size's interval that of the smallest: overlapping
            spec.loc[order[-1], cols] = spec.loc[order[0], cols].to_numpy()
        else:  # the larger sizes' intervals far above the smallest's
            top = float(spec.loc[order[0], "sger_hi"])
            for k, i in enumerate(order[1:], start=1):
                spec.loc[i, cols] = (top * (1 + k), top * (1 + k) * 1.2, top * (1 + k) * 1.4)
    elif finding == "forgetting_rises_with_ratio":
        general = points["target"] == "general"
        final = general & (points["D"] == points["D"].where(general).groupby(points["run"]).transform("max"))
        base = points[final].groupby("size")["loss"].transform("min")
        points.loc[final, "loss"] = base * (1 + (-0.3 if held else 0.3) * points.loc[final, "ratio"])
    elif finding == "usage2_interior":
        u2 = usages["usage"] == 2
        usages[["lo", "value", "hi"]] = usages[["lo", "value", "hi"]].astype(float)
        usages.loc[u2, ["lo", "value", "hi"]] = (1.0, 1.0, 1.0) if held else (0.3, 0.5, 0.7)
    for df, path in ((spec, spec_path), (points, points_path), (usages, usages_path)):
        df.to_csv(path, index=False)


@pytest.mark.parametrize("finding", list(FINDINGS))
def test_the_recorded_verdicts_fail_on_hand_broken_tables(tmp_path, finding) -> None:
    """Built from the recorded tables: each breakage changes that finding's verdict in every domain (and only
    that finding's), so the check against the recorded findings fails."""
    recorded = _ours(pd.read_csv(RECORD / "seed_findings.csv")).set_index(["domain", "finding"])["verdict"]
    for domain in DOMAINS:
        tables = tmp_path / domain
        shutil.copytree(RECORD, tables)
        _break(tables, domain, finding, recorded[(domain, finding)])
        with pytest.raises(AssertionError):
            _check_recorded(tables)
        now = {r["finding"]: r["verdict"] for r in domain_findings(tables, domain, _run_noise())}
        assert now[finding] != recorded[(domain, finding)], (domain, finding, now[finding])
        assert {f: v for f, v in now.items() if f != finding} == {
            f: recorded[(domain, f)] for f in FINDINGS if f != finding}


def _interval_columns(table: pd.DataFrame) -> list[tuple[str, str, str]]:
    cols = [(c, f"{c}_lo", f"{c}_hi") for c in table.columns if {f"{c}_lo", f"{c}_hi"} <= set(table.columns)]
    if {"value", "lo", "hi"} <= set(table.columns):
        cols.append(("value", "lo", "hi"))
    return cols


def test_every_demo_decision_has_its_interval_and_every_law_its_diagnostics() -> None:
    checked = 0
    for path in sorted(RECORD.glob("*.csv")):
        table = pd.read_csv(path)
        for value, lo, hi in _interval_columns(table):
            # a decision (value) always has its interval; a coordinate column (e.g. D of usage 1, given) only
            # where it is decided, and then both bounds
            rows = table[table[value].notna() & (table[lo].notna() | table[hi].notna() | (value == "value"))]
            assert rows[lo].notna().all() and rows[hi].notna().all(), f"{path.name}: {value} without interval"
            assert ((rows[lo] <= rows[value]) & (rows[value] <= rows[hi])).all(), f"{path.name}: {value}"
            checked += len(rows)
    assert checked > 50
    diagnostics = json.loads((RECORD / "laws_diagnostics.json").read_text())
    assert len(diagnostics) >= 9 and all(d and "warnings" in d for d in diagnostics.values()), diagnostics.keys()
