"""The demo reproduces the seeds' qualitative findings, read from its own recorded tables (report/demo/, written by
`make demo-record` after `make demo`), and those tables are the current demo's: the plan keys they were made with
equal the keys config/demo.yaml plans now. The finding checks themselves are shown to fail on tables that break them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from workflow_utils import REPO, plan_in

from cpt_scaling.studies.findings import FINDINGS, domain_findings, seed_findings

RECORD = REPO / "report" / "demo"
DOMAINS = ["legal", "medical", "accounting"]


def test_recorded_demo_tables_belong_to_the_current_demo_plan() -> None:
    recorded = json.loads((RECORD / "plan_keys.json").read_text())
    now = sorted(plan_in(REPO, recorded["config"]).by_key)
    stale = sorted(set(now) ^ set(recorded["keys"]))
    assert not stale, f"report/demo/ is stale ({len(stale)} keys differ): run `make demo && make demo-record`"


def test_demo_reproduces_the_seeds_findings() -> None:
    found = seed_findings(RECORD, DOMAINS)
    held = found.pivot(index="domain", columns="finding", values="holds")
    # Issue 15: perplexity falls with size for specialist and generalist; SGER > 1 and rising with size on at least
    # two of three domains; forgetting rising with r; the usage-2 optimum strictly inside (0, 1).
    assert held["perplexity_falls_with_size"].all(), found.to_string()
    assert held["sger_above_one_rising"].sum() >= 2, found.to_string()
    assert held["forgetting_rises_with_ratio"].all(), found.to_string()
    assert held["usage2_interior"].all(), found.to_string()
    recorded = pd.read_csv(RECORD / "seed_findings.csv")
    assert recorded["holds"].tolist() == found["holds"].tolist()


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


def _tables(tmp: Path) -> Path:
    """Hand-made tables of one domain on which every finding holds."""
    spec = pd.DataFrame({
        "size": ["a", "b", "c"] * 2, "N": [1e4, 1e5, 1e6] * 2, "role": ["specialist"] * 3 + ["general"] * 3,
        "perplexity": [300.0, 200.0, 150.0, 350.0, 260.0, 230.0], "general_loss": [5.4, 5.2, 5.1, 5.3, 5.0, 4.9],
        "sger": [1.3, 1.8, 2.2, None, None, None]})
    spec.to_csv(tmp / "specialization_x.csv", index=False)
    rows = [{"target": "general", "run": f"{s}-{r}", "size": s, "N": n, "D": d, "ratio": r,
             "loss": 5.0 + 0.2 * r - 0.1 * i - 1e-6 * d}
            for i, (s, n) in enumerate([("a", 1e4), ("b", 1e5)]) for r in (0.0, 0.5, 1.0) for d in (100, 200)]
    pd.DataFrame(rows).to_csv(tmp / "dcpt_points_x.csv", index=False)
    pd.DataFrame({"usage": [2, 2, 1], "size": ["a", "b", "a"], "value": [0.7, 0.7, 1.0], "lo": [0.4, 0.4, 0.9],
                  "hi": [0.9, 0.9, 1.0]}).to_csv(tmp / "dcpt_usages_x.csv", index=False)
    return tmp


@pytest.mark.parametrize("finding,table,column,row,value", [
    ("perplexity_falls_with_size", "specialization_x.csv", "perplexity", 5, 270.0),  # generalist's rises
    ("perplexity_falls_with_size", "specialization_x.csv", "general_loss", 1, 5.45),
    ("sger_above_one_rising", "specialization_x.csv", "sger", 0, 0.9),  # below 1
    ("sger_above_one_rising", "specialization_x.csv", "sger", 2, 1.5),  # not rising
    ("forgetting_rises_with_ratio", "dcpt_points_x.csv", "loss", 5, 4.0),  # r = 1 of size a below r = 0.5
    ("usage2_interior", "dcpt_usages_x.csv", "value", 1, 1.0),  # at the edge
])
def test_each_finding_fails_on_tables_that_break_it(tmp_path, finding, table, column, row, value) -> None:
    tables = _tables(tmp_path)
    assert all(r["holds"] for r in domain_findings(tables, "x"))
    broken = pd.read_csv(tables / table)
    broken.loc[row, column] = value
    broken.to_csv(tables / table, index=False)
    held = {r["finding"]: r["holds"] for r in domain_findings(tables, "x")}
    assert set(held) == set(FINDINGS)
    assert held == {f: f != finding for f in FINDINGS}
