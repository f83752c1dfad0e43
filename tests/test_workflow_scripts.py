"""Workflow scripts that serve several rules dispatch by a table keyed by rule name, and fail on an unknown rule."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from workflow_utils import REPO

from cpt_scaling.core.adaptor import rule_step

# Scripts that serve a single rule need no table.
SINGLE_RULE = {"train.py", "findings.py"}


def rules_by_script() -> dict[str, set[str]]:
    """``{script file name: rules whose script: is it}`` over rules/*.smk."""
    out: dict[str, set[str]] = {}
    for smk in sorted((REPO / "rules").glob("*.smk")):
        for block in re.split(r"^(?=rule )", smk.read_text(), flags=re.M):
            rule = re.match(r"rule (\w+):", block)
            script = re.search(r"script:\s*\n?\s*\"\.\./workflow_scripts/([\w.]+)\"", block)
            if rule and script:
                out.setdefault(script.group(1), set()).add(rule.group(1))
    return out


def table_keys(script: Path) -> set[str] | None:
    """String keys of the module-level dict ``STEPS`` or ``DRAW`` of ``script``, or None without one."""
    for node in ast.parse(script.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) in {"STEPS", "DRAW"} for t in node.targets):
            assert isinstance(node.value, ast.Dict), script
            return {k.value for k in node.value.keys if isinstance(k, ast.Constant)}
    return None


def test_every_rule_of_a_tabled_script_has_its_step() -> None:
    scripts = rules_by_script()
    assert {"classify.py", "shards.py", "fit.py", "figures.py", "evaluate.py"} <= scripts.keys()
    for name, rules in scripts.items():
        keys = table_keys(REPO / "workflow_scripts" / name)
        if name in SINGLE_RULE:
            continue
        assert keys is not None, f"{name} serves {sorted(rules)} without a STEPS table"
        assert keys == rules, f"{name}: table {sorted(keys)} != rules {sorted(rules)}"
        assert "smk.rule ==" not in (REPO / "workflow_scripts" / name).read_text(), name


def test_unknown_rule_fails_naming_it() -> None:
    steps = {"fit_dcpt": print, "fit_split": print}
    assert rule_step(SimpleNamespace(rule="fit_split"), steps) is print
    with pytest.raises(RuntimeError, match=r"no step for rule 'fit_dcpt_v2' \(it handles: fit_dcpt, fit_split\)"):
        rule_step(SimpleNamespace(rule="fit_dcpt_v2"), steps)
