"""The planned artifact keys of the demo and micro configs equal a committed fixture.

A pure refactor (moving modules, renaming helpers) must not change any key: a changed key reruns that artifact and
everything downstream of it. When a change is meant to re-key (a stage version bump, a re-tuned demo config),
regenerate the fixture and commit it with the change:

    .venv/bin/python tests/test_planned_keys.py --update
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "planned_keys.json"
CONFIGS = ("config/demo.yaml", "tests/configs/micro.yaml")


def planned_keys(workdir: Path) -> dict[str, dict[str, str]]:
    """``{config: {"<stage>/<name>": key}}`` for each config, planned in ``workdir`` (a copy of the demo data)."""
    from cpt_scaling.config import normalise_config
    from cpt_scaling.plan import build_plan

    if not (workdir / "data" / "demo").exists():
        shutil.copytree(REPO / "data" / "demo", workdir / "data" / "demo")
    old = Path.cwd()
    os.chdir(workdir)
    try:
        out: dict[str, dict[str, str]] = {}
        for rel in CONFIGS:
            raw = yaml.safe_load((REPO / rel).read_text())
            plan = build_plan(normalise_config(raw, rel), cache_file=workdir / "digests.json")
            keys = {f"{art.stage}/{art.name}": key for key, art in plan.by_key.items()}
            assert len(keys) == len(plan.by_key), f"{rel}: two artifacts share a stage and name"
            out[rel] = dict(sorted(keys.items()))
        return out
    finally:
        os.chdir(old)


def test_planned_keys_match_fixture(tmp_path: Path) -> None:
    expected = json.loads(FIXTURE.read_text())
    actual = planned_keys(tmp_path)
    for rel in CONFIGS:
        exp, act = expected[rel], actual[rel]
        changed = sorted(k for k in exp.keys() & act.keys() if exp[k] != act[k])
        assert not changed and exp.keys() == act.keys(), (
            f"{rel}: planned keys differ from {FIXTURE.name} (changed: {changed[:5]}, "
            f"missing: {sorted(exp.keys() - act.keys())[:5]}, new: {sorted(act.keys() - exp.keys())[:5]}); "
            "if intended, run: python tests/test_planned_keys.py --update")


if __name__ == "__main__":
    import tempfile

    if sys.argv[1:] != ["--update"]:
        sys.exit("usage: python tests/test_planned_keys.py --update   (rewrites tests/fixtures/planned_keys.json)")
    with tempfile.TemporaryDirectory() as tmp:
        keys = planned_keys(Path(tmp))
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    FIXTURE.write_text(json.dumps(keys, indent=1) + "\n")
    print(f"wrote {FIXTURE} ({', '.join(f'{k}: {len(v)} artifacts' for k, v in keys.items())})")
