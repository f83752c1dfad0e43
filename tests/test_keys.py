"""Content addressing: canonical keys, config normalisation and the digest cache."""

from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path

import pytest
import yaml
from workflow_utils import REPO

from cpt_scaling.config.load import normalise_config
from cpt_scaling.core.errors import InputError
from cpt_scaling.core.keys import DigestCache, key_of
from cpt_scaling.plan.sweep import build_plan


@pytest.fixture
def micro_cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    shutil.copytree(REPO / "data" / "demo", tmp_path / "data" / "demo")
    monkeypatch.chdir(tmp_path)
    return yaml.safe_load((REPO / "tests" / "configs" / "micro.yaml").read_text())


def plan_keys(raw: dict) -> set[str]:
    return set(build_plan(normalise_config(copy.deepcopy(raw), "test.yaml")).by_key)


def test_key_ignores_dict_order_but_not_values() -> None:
    assert key_of({"a": 1, "b": [1, 2]}) == key_of({"b": [1, 2], "a": 1})
    assert key_of({"a": 1.0}) != key_of({"a": 1.5})
    assert len(key_of({})) == 16


def test_equivalent_configs_give_identical_keys(micro_cfg: dict) -> None:
    base = plan_keys(micro_cfg)
    spelled = copy.deepcopy(micro_cfg)
    spelled["optimizer"] = {"lr": "3e-3"}  # YAML 1.1 reads 3e-3 as a string; the default is 3.0e-3
    spelled["classifier"] = {"epoch": 25.0}  # the default, spelled as a float
    assert plan_keys(spelled) == base
    changed = copy.deepcopy(micro_cfg)
    changed["optimizer"] = {"lr": 1.0e-3}
    assert plan_keys(changed) != base


def test_ratio_zero_run_is_shared_by_domains(micro_cfg: dict) -> None:
    plan = build_plan(normalise_config(micro_cfg, "test.yaml"))
    assert plan.cpt[("xs", "legal", 0.0, 4096)].key == plan.cpt[("xs", "medical", 0.0, 4096)].key
    assert plan.cpt[("xs", "legal", 0.5, 4096)].key != plan.cpt[("xs", "medical", 0.5, 4096)].key


def test_every_artifact_path_carries_its_key(micro_cfg: dict) -> None:
    plan = build_plan(normalise_config(micro_cfg, "test.yaml"))
    for key, art in plan.by_key.items():
        assert art.dir.endswith(f"-{key}")
        assert art.dir.startswith(f"artifacts/{art.stage}/")


def test_digest_cache_follows_content_not_mtime(tmp_path: Path) -> None:
    f = tmp_path / "raw.txt"
    f.write_text("hello")
    cache = DigestCache(tmp_path / "cache.json")
    first = cache.digest(f)
    cache.save()
    os.utime(f, (1, 1))
    assert DigestCache(tmp_path / "cache.json").digest(f) == first
    f.write_text("world")
    assert DigestCache(tmp_path / "cache.json").digest(f) != first


@pytest.mark.parametrize(
    ("path", "value", "key"),
    [
        (("domains", "legal", "ratios"), [0.5, 2.0], "domains.legal.ratios[1]"),
        (("training", "batch_size"), 0, "training.batch_size"),
        (("shards", "seq_len"), "long", "shards.seq_len"),
        (("data", "pool"), ["nowhere/*.jsonl"], "data.pool"),
        (("optimizer", "lr"), float("nan"), "optimizer.lr"),
        (("models", "sizes", "xs", "n_heads"), 3, "models.sizes.xs"),
    ],
)
def test_bad_config_names_file_and_key(micro_cfg: dict, path: tuple, value, key: str) -> None:
    node = micro_cfg
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value
    with pytest.raises(InputError) as info:
        normalise_config(micro_cfg, "bad.yaml")
    assert str(info.value).startswith("bad.yaml: ") and key in str(info.value)
