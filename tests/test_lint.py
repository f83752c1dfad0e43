"""Static checks: Snakemake's linter, ruff and import-linter's contracts (pyproject.toml) report nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from workflow_utils import REPO, SNAKEMAKE


def test_snakemake_lint_is_clean() -> None:
    result = subprocess.run([SNAKEMAKE, "--lint"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Congratulations" in result.stdout + result.stderr


def test_ruff_is_clean() -> None:
    ruff = str(Path(sys.executable).with_name("ruff"))
    result = subprocess.run([ruff, "check", "src", "tests", "workflow_scripts", "scripts"], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


LINT_IMPORTS = str(Path(sys.executable).with_name("lint-imports"))


def _lint_imports(package_root: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` with the repository's contracts over the package found under ``package_root``."""
    env = {**os.environ, "PYTHONPATH": str(package_root)}
    return subprocess.run([LINT_IMPORTS, "--no-cache", str(REPO / "pyproject.toml")], cwd=package_root, env=env,
                          capture_output=True, text=True, timeout=300)


def test_import_contracts_are_kept() -> None:
    result = _lint_imports(REPO / "src")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_import_contracts_fail_on_a_new_cycle(tmp_path: Path) -> None:
    """A copy of the package with the old registry re-export (laws -> fitting -> laws) breaks the contracts."""
    shutil.copytree(REPO / "src" / "cpt_scaling", tmp_path / "cpt_scaling")
    with (tmp_path / "cpt_scaling" / "laws" / "__init__.py").open("a") as f:
        f.write("\n\ndef __getattr__(name):\n    from cpt_scaling.fit import fitting\n\n"
                "    return getattr(fitting, name)\n")
    result = _lint_imports(tmp_path)
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert "Analyzed" in out and "No import cycles among the modules of a package BROKEN" in out, out
    assert "cpt_scaling.laws is not allowed to import cpt_scaling.fit" in out, out
