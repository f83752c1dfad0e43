"""`cpt-scaling explain`: the config keys and raw files behind every rerun.

Plan-level tests write one config's specs to disk as artifacts, change one config key (or a raw file, or a stage
version), and check that every artifact of the new plan that has an old artifact of its stage and name names
exactly that key. The workflow test does it through Snakemake's dry run on the finished micro sweep.
"""

from __future__ import annotations

import copy
import gzip
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from workflow_utils import REPO

from cpt_scaling.cli.main import main
from cpt_scaling.config.load import normalise_config
from cpt_scaling.dryrun.explain import SPEC, Explainer, artifact_contexts, leaf_diff, params_changes, spec_source
from cpt_scaling.plan import artifact as plan_artifact
from cpt_scaling.plan.sweep import build_plan

MICRO = REPO / "tests" / "configs" / "micro.yaml"


def _raw(path: Path = MICRO) -> dict[str, Any]:
    raw = yaml.safe_load(path.read_text())
    data = raw["data"]
    data["seeds"] = {k: [str(REPO / p) for p in v] for k, v in data["seeds"].items()}
    data["pool"] = [str(REPO / p) for p in data["pool"]]
    return raw


def _plan(raw: dict[str, Any], root: Path) -> Any:
    cfg = normalise_config({**raw, "artifacts_dir": str(root / "artifacts"), "results_dir": str(root / "res")},
                           "test")
    return build_plan(cfg, root / "digests.json")


def _write_specs(plan: Any) -> None:
    for art in plan.by_key.values():
        Path(art.dir).mkdir(parents=True, exist_ok=True)
        Path(art.file("spec.json")).write_text(json.dumps(art.spec))


def _set(raw: dict[str, Any], dotted_key: str, value: Any) -> dict[str, Any]:
    raw = copy.deepcopy(raw)
    node = raw
    *parents, last = dotted_key.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    node[last] = value
    return raw


def _explain_new(plan: Any, root: Path) -> dict[str, tuple[set[str], set[str], set[str], set[str]]]:
    """Per artifact of ``plan`` not on disk but with an old artifact of its stage and name: what changed."""
    ex = Explainer(plan, root / "artifacts")
    out = {}
    for art in plan.by_key.values():
        if Path(art.dir).is_dir():
            continue
        found = ex.nearest(art)
        if found is None:
            continue
        c = ex.diff(art, found[0].rsplit("-", 1)[1], found[1])
        out[f"{art.stage}/{art.name}"] = (c.keys, c.files, c.code, c.notes)
    return out


def _leaves(obj: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(obj, dict) and obj:
        return [p for k, v in obj.items() for p in _leaves(v, (*path, k))]
    if isinstance(obj, list) and obj:
        return [p for i, v in enumerate(obj) for p in _leaves(v, (*path, i))]
    return [path]


PAPER = REPO / "config" / "examples" / "paper_qwen.yaml"


@pytest.mark.parametrize("config", [MICRO, REPO / "config" / "demo.yaml", PAPER])
def test_every_spec_field_has_a_known_source(config: Path, tmp_path: Path) -> None:
    plan = _plan(_raw(config), tmp_path)
    contexts = artifact_contexts(plan)
    unknown = set()
    for art in plan.by_key.values():
        for path in _leaves(art.spec):
            kind, value = spec_source(plan.cfg, art.stage, contexts.get(art.key, {}), path, True)
            if kind == SPEC:
                unknown.add(value)
    assert not unknown


# (dotted config key, new value): each must be named, and only it, by every artifact it re-keys.
CHANGES = [
    ("domains.legal.threshold", 0.6), ("general.threshold", 0.4), ("classifier.epoch", 3),
    ("classifier.lr", 0.3), ("shards.heldout_fraction", 0.2), ("shards.seq_len", 32),
    ("tokenizer.vocab_size", 600), ("training.seed", 7), ("training.batch_size", 16), ("optimizer.lr", 1e-3),
    ("cpt.lr", 1e-4), ("pretrain.tokens", 16384), ("pretrain.checkpoints", 2), ("cpt.checkpoints", 2),
    ("models.sizes.xs.d_ff", 48), ("evaluate.batch_size", 4), ("data.text_column", "body"),
]


@pytest.mark.parametrize(("key", "value"), CHANGES, ids=[k for k, _ in CHANGES])
def test_one_changed_key_is_named_exactly(key: str, value: Any, tmp_path: Path) -> None:
    raw = _raw()
    _write_specs(_plan(raw, tmp_path))
    explained = _explain_new(_plan(_set(raw, key, value), tmp_path), tmp_path)
    assert explained, f"changing {key} re-keyed no artifact that has an old one of its name"
    wrong = {name: c for name, c in explained.items() if c != ({key}, set(), set(), set())}
    assert not wrong


@pytest.mark.parametrize(("key", "value"), [("models.sizes.qwen2_5_3b.base_checkpoint_id", "Qwen/Qwen2.5-3B@abc"),
                                            ("models.sizes.qwen2_5_3b.vocab_size", 152064)])
def test_checkpoint_sizes_name_their_keys(key: str, value: Any, tmp_path: Path) -> None:
    raw = _raw(PAPER)
    _write_specs(_plan(raw, tmp_path))
    explained = _explain_new(_plan(_set(raw, key, value), tmp_path), tmp_path)
    assert explained and all("qwen2_5_3b" in name for name in explained)
    if "checkpoint" in key:  # the base model's own evaluation too
        assert any(name.startswith("eval/base-qwen2_5_3b--") for name in explained)
    assert all(c == ({key}, set(), set(), set()) for c in explained.values())


def test_legal_threshold_rekeys_exactly_the_legal_chain(tmp_path: Path) -> None:
    raw = _raw()
    _write_specs(_plan(raw, tmp_path))
    explained = _explain_new(_plan(_set(raw, "domains.legal.threshold", 0.6), tmp_path), tmp_path)
    assert {n.split("/")[0] for n in explained} == {"shards", "train", "eval"}
    assert all("legal" in n for n in explained)
    assert "shards/legal" in explained and "shards/medical" not in explained
    # Shared ratio-0 runs read no domain data: untouched.
    assert not any("-r0-" in n and n.startswith("train/") for n in explained)


def test_changed_raw_file_is_named(tmp_path: Path) -> None:
    raw = _raw()
    seed = tmp_path / "legal_seed.jsonl.gz"
    shutil.copy(raw["data"]["seeds"]["legal"][0], seed)
    raw["data"]["seeds"]["legal"] = [str(seed)]
    _write_specs(_plan(raw, tmp_path))
    with gzip.open(seed, "at") as f:
        f.write(json.dumps({"id": "extra-legal-doc", "text": "the court held the contract void"}) + "\n")
    explained = _explain_new(_plan(raw, tmp_path), tmp_path)
    assert "classifier/fasttext" in explained and "tokenizer/bpe512" in explained
    assert all(c == (set(), {str(seed)}, set(), set()) for c in explained.values())


def test_stage_version_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = _raw()
    _write_specs(_plan(raw, tmp_path))
    monkeypatch.setitem(plan_artifact.STAGE_VERSIONS, "shards", plan_artifact.STAGE_VERSIONS["shards"] + 1)
    explained = _explain_new(_plan(raw, tmp_path), tmp_path)
    assert {n.split("/")[0] for n in explained} == {"shards", "train", "eval"}
    assert all(c == (set(), set(), {"STAGE_VERSIONS['shards']"}, set()) for c in explained.values())


def test_nearest_is_the_closest_artifact_of_the_name(tmp_path: Path) -> None:
    raw = _raw()
    _write_specs(_plan(raw, tmp_path))
    _write_specs(_plan(_set(raw, "shards.heldout_fraction", 0.3), tmp_path))
    # Both old shards artifacts differ from the new one; the one differing in one field (threshold) is chosen.
    changed = _set(_set(raw, "shards.heldout_fraction", 0.3), "domains.legal.threshold", 0.6)
    explained = _explain_new(_plan(changed, tmp_path), tmp_path)
    assert explained["shards/legal"][0] == {"domains.legal.threshold"}


def test_params_of_a_fit_map_to_config_keys() -> None:
    cfg = {"fit": {"bootstrap": 0, "huber_delta": 0.001}, "studies": {"dcpt": {"general_tolerance": 0.02}}}
    old = [repr(json.dumps({"bootstrap": 0, "huber_delta": 0.001})), repr(json.dumps({"general_tolerance": 0.05}))]
    new = [repr(json.dumps({"general_tolerance": 0.02}))]
    assert params_changes(cfg, "fit_dcpt", old, new).keys == {"studies.dcpt.general_tolerance"}


def test_leaf_diff() -> None:
    assert leaf_diff({"a": 1, "b": [1, 2]}, {"a": 1, "b": [1, 3]}) == [(("b", 1), True)]
    assert leaf_diff({"a": [1, 2]}, {"a": [1], "c": 0}) == [(("a",), True), (("c",), False)]
    assert leaf_diff({"a": {"b": None}}, {"a": {"b": None}}) == []


@pytest.mark.slow
def test_explain_names_the_changed_threshold_after_a_micro_run(micro_copy: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """Must-show: after a finished micro run, changing domains.legal.threshold makes explain name exactly that
    key for every legal job it plans; after reverting, nothing to run."""
    config = micro_copy / "micro.yaml"
    original = config.read_text()
    raw = yaml.safe_load(original)
    raw["domains"]["legal"]["threshold"] = 0.6
    config.write_text(yaml.safe_dump(raw))
    out = tmp_path / "explain.json"
    args = ["explain", "--directory", str(micro_copy), "--configfile", "micro.yaml",
            "--profile", str(REPO / "profiles" / "local")]
    assert main([*args, "--json", str(out)]) == 0
    table = capsys.readouterr().out
    report = json.loads(out.read_text())
    jobs = report["jobs"]
    keyed = [j for j in jobs if j["artifact"]]
    assert {j["artifact"].split("/")[0] for j in keyed} == {"shards", "train", "eval"}
    assert all("legal" in j["artifact"] for j in keyed)
    assert all(j["status"] == "changed" for j in jobs)
    wrong = [j for j in jobs if (j["keys"], j["files"], j["code"], j["notes"]) !=
             (["domains.legal.threshold"], [], [], [])]
    assert not wrong, wrong[:3]
    assert {j["rule"] for j in jobs} >= {"shards", "train", "evaluate", "fit_dcpt", "eval_table"}
    assert report["keys"] == ["domains.legal.threshold"]
    assert "domains.legal.threshold" in table and "changed" in table

    config.write_text(original)
    assert main(args) == 0
    assert capsys.readouterr().out.strip() == "nothing to run"


def test_missing_config_file_is_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", "--directory", str(tmp_path), "--configfile", "nope.yaml"]) == 2
    assert capsys.readouterr().err.strip() == "cpt-scaling: error: nope.yaml: config file not found"
