"""Static checks: Snakemake's linter and ruff report nothing."""

from __future__ import annotations

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
