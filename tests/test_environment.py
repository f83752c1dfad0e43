"""Training stops at its start, with one line naming the cause, where the machine cannot train as the job asks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny_shards import make_shards, tiny_spec

from cpt_scaling.core.errors import InputError
from cpt_scaling.train.model import attention_implementation, flash_attn_problem
from cpt_scaling.train.trainer import train

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="the no-CUDA path needs a machine without CUDA")


def test_a_job_given_gpus_on_a_machine_without_cuda_exits_with_one_line(tmp_path: Path) -> None:
    general = make_shards(tmp_path / "general", domain=False)
    spec = tiny_spec(general, None, device="cuda")
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    done = subprocess.run([sys.executable, "-m", "cpt_scaling.cli", "train", "--spec", str(tmp_path / "spec.json"),
                           "--out", str(tmp_path / "run")], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if "device:" in line]
    assert len(errors) == 1 and "sees no CUDA device" in errors[0] and torch.__version__ in errors[0], done.stderr
    assert not (tmp_path / "run").exists()  # nothing was started, nothing written


def test_flash_attention_asked_for_without_cuda_is_an_error_and_sdpa_is_the_default(tmp_path: Path) -> None:
    assert flash_attn_problem() == "CUDA is not available"
    assert attention_implementation() == "sdpa" and attention_implementation("sdpa") == "sdpa"
    with pytest.raises(InputError, match="attention: flash_attention_2 was asked for but CUDA is not available"):
        attention_implementation("flash_attention_2")
    general = make_shards(tmp_path / "general", domain=False)
    with pytest.raises(InputError, match=r"^attention: flash_attention_2 was asked for"):
        train(tiny_spec(general, None, attention="flash_attention_2"), tmp_path / "run")
    assert not (tmp_path / "run").exists()
