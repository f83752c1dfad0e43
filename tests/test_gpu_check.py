"""The GPU check's CPU-sized variant (``bench/gpu_check.sh --cpu``) runs the real trainer path end to end."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_cpu_variant_reports_throughput_mfu_and_memory(tmp_path: Path) -> None:
    done = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh"), "--cpu", "--workdir", str(tmp_path)],
                          env={**os.environ, "PYTHON": sys.executable}, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert "activation checkpointing True" in done.stdout and "attention sdpa" in done.stdout
    values = dict(item.split("=") for item in lines[-1].split())
    assert set(values) == {"tokens_per_s", "mfu", "peak_gib", "predicted_gib"}
    numbers = {k: float(v) for k, v in values.items()}
    assert numbers["tokens_per_s"] > 0 and 0 < numbers["mfu"] < 1 and numbers["peak_gib"] > 0.1
    assert math.isfinite(numbers["predicted_gib"]) and numbers["predicted_gib"] > 0
    # Its MFU is the trainer's own (the cost model's FLOPs per token): the two printed values agree.
    match = re.search(r"MFU ([0-9.]+) \(the trainer's logged MFU, same formula: ([0-9.]+)\)", done.stdout)
    assert match, done.stdout
    own, logged = float(match.group(1)), float(match.group(2))
    assert math.isclose(own, logged, rel_tol=1e-3, abs_tol=1e-4)
