"""The planned artifact keys and training spec digests of the demo and micro configs equal a committed fixture.

A pure refactor (moving modules, renaming helpers) must not change any key: a changed key reruns that artifact and
everything downstream of it, and a changed training spec digest stops a run from resuming its checkpoints. When a
change is meant to re-key (a stage version bump, a re-tuned demo config), regenerate the fixture and commit it with
the change:

    .venv/bin/python tests/test_planned_keys.py --update
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

import yaml

from cpt_scaling.train.spec_types import NON_DETERMINING, spec_digest

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "planned_keys.json"
CONFIGS = ("config/demo.yaml", "tests/configs/micro.yaml")


def plans(workdir: Path) -> list:
    """The plans of :data:`CONFIGS`, built in ``workdir`` (a copy of the demo data is made there)."""
    from cpt_scaling.config.load import normalise_config
    from cpt_scaling.plan.sweep import build_plan

    if not (workdir / "data" / "demo").exists():
        shutil.copytree(REPO / "data" / "demo", workdir / "data" / "demo")
    old = Path.cwd()
    os.chdir(workdir)
    try:
        return [build_plan(normalise_config(yaml.safe_load((REPO / rel).read_text()), rel),
                           cache_file=workdir / "digests.json") for rel in CONFIGS]
    finally:
        os.chdir(old)


def planned_keys(workdir: Path) -> dict[str, dict[str, str]]:
    """``{config: {"<stage>/<name>": key}}`` and ``{"<config> train spec digests": {"<name>": digest}}`` for each
    config, planned in ``workdir`` (a copy of the demo data)."""
    out: dict[str, dict[str, str]] = {}
    for rel, plan in zip(CONFIGS, plans(workdir), strict=True):
        keys = {f"{art.stage}/{art.name}": key for key, art in plan.by_key.items()}
        assert len(keys) == len(plan.by_key), f"{rel}: two artifacts share a stage and name"
        out[rel] = dict(sorted(keys.items()))
        out[f"{rel} train spec digests"] = {art.name: spec_digest(art.job.to_json()) for art in
                                            sorted(plan.by_key.values(), key=lambda a: a.name) if art.stage == "train"}
    return out


def test_planned_keys_match_fixture(tmp_path: Path) -> None:
    expected = json.loads(FIXTURE.read_text())
    actual = planned_keys(tmp_path)
    assert expected.keys() == actual.keys()
    for rel in expected:
        exp, act = expected[rel], actual[rel]
        changed = sorted(k for k in exp.keys() & act.keys() if exp[k] != act[k])
        assert not changed and exp.keys() == act.keys(), (
            f"{rel}: planned keys differ from {FIXTURE.name} (changed: {changed[:5]}, "
            f"missing: {sorted(exp.keys() - act.keys())[:5]}, new: {sorted(act.keys() - exp.keys())[:5]}); "
            "if intended, run: python tests/test_planned_keys.py --update")


def _digest_before_keys_helpers(spec: dict) -> str:
    """The training spec digest as train/train_spec.py computed it before it used cpt_scaling.core.keys."""
    core = {k: v for k, v in spec.items() if k not in NON_DETERMINING}
    core["init"] = {k: v for k, v in spec["init"].items() if k != "path"}
    return hashlib.sha256(json.dumps(core, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def test_train_spec_digest_bytes_unchanged(tmp_path: Path) -> None:
    """Resumes compare digests written by earlier code: the shared canonical-JSON helper gives the same bytes,
    also for non-ASCII text and NaN (which artifact keys refuse)."""
    specs = [art.job for plan in plans(tmp_path) for art in plan.by_key.values() if art.stage == "train"]
    assert len(specs) > 20
    specs = [{"init": {"kind": "scratch", "path": "x"}, "model": {"d_model": 16}, "optimizer": {"lr": 3e-3},
              "seed": 1, "threads": 4}]
    specs.append({**specs[-1], "name": "médical-法律", "optimizer": {"lr": float("nan")}, "ratio": 0.5})
    specs.append({**specs[-2], "init": {"kind": "checkpoint", "path": "/ckpt/ü", "id": "Qwen/Qwen2.5@abc"}})
    for spec in specs:
        assert spec_digest(spec) == _digest_before_keys_helpers(spec), spec


if __name__ == "__main__":
    import tempfile

    if sys.argv[1:] != ["--update"]:
        sys.exit("usage: python tests/test_planned_keys.py --update   (rewrites tests/fixtures/planned_keys.json)")
    with tempfile.TemporaryDirectory() as tmp:
        keys = planned_keys(Path(tmp))
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    FIXTURE.write_text(json.dumps(keys, indent=1) + "\n")
    print(f"wrote {FIXTURE} ({', '.join(f'{k}: {len(v)} artifacts' for k, v in keys.items())})")
