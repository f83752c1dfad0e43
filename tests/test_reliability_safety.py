"""Safety: artifacts are never unpickled and config cannot run code.

A source scan of everything the workflow executes (``src/``, ``workflow_scripts/``, ``Snakefile``, ``rules/``)
plus real config loads of a YAML file with a Python tag.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import make_workdir
from workflow_utils import REPO, run_snakemake

from cpt_scaling.config.load import read_config_file
from cpt_scaling.core.errors import InputError

SOURCES = [REPO / "Snakefile", *sorted((REPO / "src").rglob("*.py")), *sorted((REPO / "workflow_scripts").glob("*.py")),
           *sorted((REPO / "rules").glob("*.smk"))]

# (pattern, why it is refused) - any match is a finding.
FORBIDDEN = [
    (r"\b(import|from)\s+(pickle|cPickle|_pickle|dill|cloudpickle|joblib|shelve|marshal)\b", "pickle-based module"),
    (r"\b(pickle|dill|cloudpickle|joblib|marshal)\.(loads?|Unpickler)\b", "unpickling"),
    (r"\bread_pickle\(", "pandas unpickling"),
    (r"allow_pickle\s*=\s*True", "numpy unpickling"),
    (r"trust_remote_code\s*=\s*True", "code from a checkpoint directory"),
    (r"\byaml\.(unsafe_load|full_load|load_all|unsafe_load_all)\(", "unsafe YAML loader"),
    (r"\b(UnsafeLoader|FullLoader|yaml\.Loader)\b", "unsafe YAML loader"),
    (r"(?<![\w.])(eval|exec)\(", "eval/exec builtin"),
    (r"\b(__import__|importlib\.import_module)\((?!\s*[\"'])", "import by a computed name (config could choose it)"),
]


def _calls(text: str, name: str) -> list[str]:
    """The argument text of every call ``name(...)`` in ``text`` (parentheses matched)."""
    calls = []
    for m in re.finditer(re.escape(name) + r"\(", text):
        depth, i = 1, m.end()
        while depth and i < len(text):
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            i += 1
        calls.append(text[m.end():i - 1])
    return calls


def _strip_comments_and_docstrings(text: str) -> str:
    text = re.sub(r'"""(?:.|\n)*?"""', '""', text)
    return re.sub(r"#[^\n]*", "", text)


def test_sources_never_unpickle_or_eval() -> None:
    findings = []
    for path in SOURCES:
        text = _strip_comments_and_docstrings(path.read_text())
        rel = path.relative_to(REPO)
        for pattern, why in FORBIDDEN:
            findings += [f"{rel}: {why}: {m.group(0)}" for m in re.finditer(pattern, text)]
        findings += [f"{rel}: torch.load without weights_only=True" for args in _calls(text, "torch.load")
                     if not re.search(r"weights_only\s*=\s*True", args)]
        findings += [f"{rel}: yaml.load without SafeLoader" for args in _calls(text, "yaml.load")
                     if not re.search(r"Loader\s*=\s*(yaml\.)?C?SafeLoader", args)]
        findings += [f"{rel}: model loaded without use_safetensors=True"
                     for args in _calls(text, "AutoModelForCausalLM.from_pretrained")
                     if not re.search(r"use_safetensors\s*=\s*True", args)]
    assert SOURCES and not findings, "\n".join(findings)


def test_scan_finds_what_it_forbids(tmp_path: Path) -> None:
    """The scan is not vacuous: each forbidden construct in a sample file is found."""
    sample = "import pickle\nx = torch.load(f)\ny = yaml.load(s)\neval(cfg['expr'])\n"
    text = _strip_comments_and_docstrings(sample)
    assert re.search(FORBIDDEN[0][0], text) and re.search(FORBIDDEN[7][0], text)
    assert _calls(text, "torch.load") == ["f"] and _calls(text, "yaml.load") == ["s"]


PYTHON_TAG = 'pwn: !!python/object/apply:os.system ["touch PWNED"]\n'


def test_config_reader_refuses_python_tags(tmp_path: Path) -> None:
    path = tmp_path / "evil.yaml"
    path.write_text(PYTHON_TAG)
    with pytest.raises(InputError, match=r"evil\.yaml: not valid YAML"):
        read_config_file(path)
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.slow
def test_snakemake_refuses_config_with_python_tag(tmp_path: Path) -> None:
    workdir = make_workdir(tmp_path / "w")
    (workdir / "evil.yaml").write_text(PYTHON_TAG + (workdir / "micro.yaml").read_text())
    result = run_snakemake(workdir, "evil.yaml", "--dry-run")
    assert result.returncode != 0
    assert "not valid JSON or YAML" in result.stdout + result.stderr
    assert not (workdir / "PWNED").exists() and not (workdir / "artifacts").exists()


YTE_CONFIG = "__use_yte__: true\npwn: ?__import__('pathlib').Path('YTE_RAN').touch()\n"


def test_cost_command_refuses_a_templated_config_before_it_renders(tmp_path: Path) -> None:
    """``cpt-scaling cost`` checks config files before Snakemake reads them: the template never runs."""
    workdir = make_workdir(tmp_path / "w")
    (workdir / "yte.yaml").write_text(YTE_CONFIG + (workdir / "micro.yaml").read_text())
    result = subprocess.run([str(Path(sys.executable).with_name("cpt-scaling")), "cost", "--directory",
                             str(workdir), "--configfile", "yte.yaml", "--quiet"],
                            cwd=workdir, capture_output=True, text=True)
    assert result.returncode != 0
    assert "yte.yaml: '__use_yte__' found: templated configs (YTE) are not accepted" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (workdir / "YTE_RAN").exists() and not (workdir / "artifacts").exists()


@pytest.mark.slow
def test_workflow_refuses_a_templated_config(tmp_path: Path) -> None:
    """Direct ``snakemake --configfile``: Snakemake renders the template before the Snakefile starts (that
    cannot be prevented from a workflow); the workflow then stops, so nothing runs from such a config."""
    workdir = make_workdir(tmp_path / "w")
    (workdir / "yte.yaml").write_text(YTE_CONFIG + (workdir / "micro.yaml").read_text())
    result = run_snakemake(workdir, "yte.yaml")
    assert result.returncode != 0
    assert "yte.yaml: '__use_yte__' found: templated configs (YTE) are not accepted" in result.stdout + result.stderr
    assert not (workdir / "artifacts").exists() and not (workdir / "results").exists()
    assert (workdir / "YTE_RAN").exists(), "Snakemake rendered the template: the expression the cost test stops is live"
