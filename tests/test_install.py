"""The package installs non-editable (a wheel built from a copy of the source) and works from outside the repo.

The wheel is built and installed offline into a fresh venv whose only cpt_scaling is the installed one; the
dependencies come from the project's .venv (a path entry, so its editable-install hook is not loaded). From a
directory that holds no source, `cpt-scaling fit` fits points and Snakemake's dry run plans the micro sweep.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from law_synth import chinchilla_points
from workflow_utils import REPO

pytestmark = pytest.mark.slow  # ~30 s: a wheel build, a venv and a Snakemake parse


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, " ".join(cmd) + "\n" + result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """(python of a fresh venv with cpt-scaling installed from a wheel, its environment)."""
    root = tmp_path_factory.mktemp("install")
    src = root / "source"  # the files a source checkout ships; config/schema.yaml is the schema's one copy
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    for package in ("cpt_scaling", "snakemake_logger_plugin_cpt_bill"):  # the package and its dry-run bill logger
        shutil.copytree(REPO / "src" / package, src / "src" / package, symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__"))
    (src / "config").mkdir()
    shutil.copy2(REPO / "config" / "schema.yaml", src / "config" / "schema.yaml")
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    env["PIP_NO_INDEX"] = "1"  # offline: no dependency is fetched
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(root / "dist"),
          str(src)], root, env)
    venv = root / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], root, env)
    python = venv / "bin" / "python"
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], root,
                     env).stdout.strip())
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # .venv's packages, not its .pth hooks
    wheel = next((root / "dist").glob("cpt_scaling-*.whl"))
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", str(wheel)], root, env)
    return python, env


def test_installed_package_is_not_the_checkout(installed: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    python, env = installed
    out = _run([str(python), "-c", "import cpt_scaling, cpt_scaling.config.load as c; "
                "print(cpt_scaling.__file__); print(len(c.load_schema()['properties']))"], tmp_path, env).stdout
    path, n_props = out.split()
    assert str(python.parents[1]) in path and str(REPO) not in path, path
    assert int(n_props) > 5
    schema = Path(path).parent / "config" / "schema.yaml"
    assert not schema.is_symlink() and schema.read_text() == (REPO / "config" / "schema.yaml").read_text()


def test_installed_fit_and_dry_run(installed: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    python, env = installed
    chinchilla_points()[["N", "D", "loss"]].to_csv(tmp_path / "points.csv", index=False)
    cli = python.with_name("cpt-scaling")
    _run([str(cli), "fit", "chinchilla", "--data", "points.csv", "--out", "law.json", "--bootstrap", "0"],
         tmp_path, env)
    doc = json.loads((tmp_path / "law.json").read_text())
    assert doc["law"] == "chinchilla" and doc["r2"] > 0.99
    shutil.copytree(REPO / "data" / "demo", tmp_path / "data" / "demo")
    dry = _run([str(python), "-m", "snakemake", "-n", "--snakefile", str(REPO / "Snakefile"), "--directory",
                str(tmp_path), "--configfile", str(REPO / "tests" / "configs" / "micro.yaml"), "--cores", "1"],
               tmp_path, env)
    log = dry.stdout + dry.stderr
    assert "rule train_classifier" in log and "rule figures_dcpt" in log, log[-3000:]
