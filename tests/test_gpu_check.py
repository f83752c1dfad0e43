"""The GPU check's CPU-sized variant (``bench/gpu_check.sh --cpu``) runs the real trainer path end to end: ZeRO-0
under torchrun, a ZeRO-3 run stopped by SIGUSR1 and resumed, the evaluation's forward pass; ``--offline`` does it
on a clean venv that holds only the listed wheels over torch and transformers (what a bare GPU machine has)."""

from __future__ import annotations

import importlib.metadata as md
import math
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
KEYS = {"tokens_per_s", "mfu", "peak_gib", "predicted_gib", "zero3_peak_gib", "zero3_predicted_gib", "save_s",
        "eval_tokens_per_s", "resume_max_rel"}


def check_output(done: subprocess.CompletedProcess[str]) -> dict[str, float]:
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "activation checkpointing True" in done.stdout and "attention sdpa" in done.stdout
    assert re.search(r"SIGUSR1 at step \d+, exit status 75 \(expected 75\)", done.stdout), done.stdout
    values = {k: float(v) for k, v in (item.split("=") for item in done.stdout.strip().splitlines()[-1].split())}
    assert set(values) == KEYS
    assert values["tokens_per_s"] > 0 and 0 < values["mfu"] < 1 and values["peak_gib"] > 0.1
    assert values["save_s"] > 0 and values["eval_tokens_per_s"] > 0 and values["resume_max_rel"] <= 1e-4
    assert math.isfinite(values["predicted_gib"]) and values["predicted_gib"] > 0
    # Its MFU is the trainer's own (the cost model's FLOPs per token): the two printed values agree.
    match = re.search(r"MFU ([0-9.]+) \(the trainer's logged MFU, same formula: ([0-9.]+)\)", done.stdout)
    assert match, done.stdout
    assert math.isclose(float(match.group(1)), float(match.group(2)), rel_tol=1e-3, abs_tol=1e-4)
    return values


def test_gpu_check_cpu_variant_stops_resumes_and_reports(tmp_path: Path) -> None:
    done = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh"), "--cpu", "--workdir", str(tmp_path)],
                          env={**os.environ, "PYTHON": sys.executable}, capture_output=True, text=True, timeout=900)
    check_output(done)


def _closure(names: list[str]) -> list[md.Distribution]:
    """The installed distributions ``names`` need (their requirements without extras, recursively)."""
    found: dict[str, md.Distribution] = {}
    todo = list(names)
    while todo:
        name = re.sub(r"[-_.]+", "-", todo.pop()).lower()
        if name in found:
            continue
        try:
            found[name] = dist = md.distribution(name)
        except md.PackageNotFoundError:
            continue
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return list(found.values())


@pytest.mark.slow
def test_offline_gpu_check_runs_on_a_clean_venv_with_the_listed_wheels(tmp_path: Path) -> None:
    """A bare machine: a venv of the base interpreter whose only other packages are torch and transformers with
    their dependencies (linked from this environment), the listed wheels, and the project on PYTHONPATH."""
    names = [line.strip() for line in (ROOT / "bench" / "gpu_check_wheels.txt").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    wheels = ROOT / ".whl"
    if not all(list(wheels.glob(f"{n.replace('-', '_')}-*.whl")) for n in names):  # build them (needs PyPI)
        wheels = tmp_path / "whl"
        subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                        str(wheels), *names], env={**os.environ, "DS_BUILD_OPS": "0"}, check=True, timeout=600)
    machine = tmp_path / "machine"  # the machine's own torch and transformers
    machine.mkdir()
    site = Path(sysconfig.get_paths()["purelib"])
    for dist in _closure(["torch", "transformers"]):
        for top in {Path(str(f)).parts[0] for f in dist.files or []}:
            if (site / top).exists() and not (machine / top).exists() and not top.endswith(".pth"):
                (machine / top).symlink_to(site / top)
    base = Path(sys._base_executable)  # the interpreter under this venv, without its packages
    venv = tmp_path / "venv"
    subprocess.run([str(base), "-m", "venv", str(venv)], check=True)
    purelib = subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()"
                              "['purelib'])"], capture_output=True, text=True, check=True).stdout.strip()
    (Path(purelib) / "machine.pth").write_text(f"{machine}\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PYTHON=str(base), GPU_CHECK_VENV=str(venv), GPU_CHECK_WHEELS=str(wheels),
               PATH=f"{venv / 'bin'}:{env['PATH']}", TORCH_EXTENSIONS_DIR=str(tmp_path / "extensions"))
    shutil.rmtree(tmp_path / "work", ignore_errors=True)
    (tmp_path / "work").mkdir()
    done = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh"), "--offline", "--cpu", "--workdir",
                           str(tmp_path / "work")], env=env, capture_output=True, text=True, timeout=900)
    check_output(done)
    listed = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "list", "--format=freeze", "--path", purelib],
                            capture_output=True, text=True, check=True).stdout
    installed = {re.sub(r"[-_.]+", "-", line.split("==")[0]).lower() for line in listed.splitlines() if line}
    assert installed - {"pip", "setuptools"} <= set(names), installed  # the listed wheels (or the machine's), no more
