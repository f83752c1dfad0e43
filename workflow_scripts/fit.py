"""Adaptor for rules/fit.smk: fit one study's laws to its evaluation tables (one step per rule in ``STEPS``)."""

import json
from pathlib import Path
from typing import Any

from cpt_scaling.core.adaptor import rule_job, rule_step
from cpt_scaling.studies.chinchilla import fit_chinchilla_study
from cpt_scaling.studies.cross_domain import fit_cross_domain_study
from cpt_scaling.studies.dcpt import fit_dcpt_study
from cpt_scaling.studies.specialization import fit_specialization_study
from cpt_scaling.studies.split import fit_split_study

smk = snakemake  # type: ignore[name-defined]  # noqa: F821


def dcpt(fit: dict[str, Any], evals: list[Path], out: dict[str, Path]) -> None:
    study = json.loads(smk.params.study)
    manifest = json.loads(Path(smk.input.manifest).read_text())
    tokens = study["domain_tokens"] or manifest["train"]["n_tokens"]
    fit_dcpt_study(evals, smk.wildcards.domain, fit, study, tokens, out["law"], out["points"], out["usages"])


def cross_domain(fit: dict[str, Any], evals: list[Path], out: dict[str, Path]) -> None:
    fit_cross_domain_study(evals, list(smk.params.domains), fit, out["law"], out["points"])


def chinchilla(fit: dict[str, Any], evals: list[Path], out: dict[str, Path]) -> None:
    fit_chinchilla_study(evals, fit, out["law"], out["points"], out["frontier"])


def specialization(fit: dict[str, Any], evals: list[Path], out: dict[str, Path]) -> None:
    study = json.loads(smk.params.study)
    fit_specialization_study(evals, smk.wildcards.domain, study["specialist_ratio"], fit, out["law"], out["table"],
                             out["compute"], sger_limit=study.get("sger_limit", 100.0))


def split(fit: dict[str, Any], evals: list[Path], out: dict[str, Path]) -> None:
    fit_split_study(evals, smk.wildcards.domain, json.loads(smk.params.study), fit, out["law"], out["points"],
                    out["decisions"], out["findings"])


STEPS = {
    "fit_dcpt": dcpt,
    "fit_cross_domain": cross_domain,
    "fit_chinchilla": chinchilla,
    "fit_specialization": specialization,
    "fit_split": split,
}

with rule_job(smk):
    step = rule_step(smk, STEPS)
    step(json.loads(smk.params.fit), [Path(p) for p in smk.input.evals],
         {name: Path(path) for name, path in smk.output.items()})
