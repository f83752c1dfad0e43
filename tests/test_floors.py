"""The dependency floors in pyproject.toml match what the code uses, and the installed versions meet them."""

from __future__ import annotations

import re
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path

import torch
from packaging.version import Version
from torch.distributed.run import get_args_parser

from cpt_scaling.train.launch import launch_command
from cpt_scaling.train.model import build_model, load_model, save_model

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
FLOORS = {m.group(1): Version(m.group(2)) for dep in PROJECT["dependencies"]
          if (m := re.match(r"^([A-Za-z0-9_.-]+)>=([0-9.]+)", dep))}


def test_installed_versions_meet_the_floors() -> None:
    for name, floor in FLOORS.items():
        assert Version(version(name)) >= floor, name
    assert sys.version_info >= (3, 11)


def test_requires_python_covers_typing_self() -> None:
    uses_self = any(re.search(r"\bfrom typing import .*\bSelf\b|typing\.Self\b", p.read_text())
                    for p in (ROOT / "src").rglob("*.py"))
    needed = Version("3.11") if uses_self else Version("3.10")  # typing.Self: new in 3.11
    assert Version(PROJECT["requires-python"].removeprefix(">=")) >= needed


def test_torchrun_knows_every_option_the_launcher_passes(tmp_path: Path) -> None:
    """``--shutdown-timeout`` came with torch 2.12 (pytorch#172596): the torch floor."""
    assert FLOORS["torch"] >= Version("2.12")
    options = {s for action in get_args_parser()._actions for s in action.option_strings}
    cmd = launch_command(tmp_path / "s.json", tmp_path / "o", processes_per_node=2, nodes=1)
    passed = {arg for arg in cmd[cmd.index("torch.distributed.run") + 1:cmd.index("-m", 3)] if arg.startswith("--")}
    assert passed and passed <= options, passed - options


def test_from_pretrained_honours_dtype(tmp_path: Path) -> None:
    """``dtype=`` (transformers >= 4.56; older versions ignore it and load fp32): the transformers floor."""
    assert FLOORS["transformers"] >= Version("4.56")
    torch.manual_seed(0)
    save_model(build_model({"n_layers": 1, "d_model": 16, "n_heads": 2, "d_ff": 32}, 64, 32), tmp_path / "m")
    loaded = load_model(tmp_path / "m", dtype=torch.bfloat16)
    assert {p.dtype for p in loaded.parameters()} == {torch.bfloat16}
