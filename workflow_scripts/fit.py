"""Adaptor for rules/fit.smk: fit one study's laws to its evaluation tables."""

import json
from pathlib import Path

from cpt_scaling.adaptor import rule_job
from cpt_scaling.studies.chinchilla import fit_chinchilla_study
from cpt_scaling.studies.cross_domain import fit_cross_domain_study
from cpt_scaling.studies.dcpt import fit_dcpt_study
from cpt_scaling.studies.specialization import fit_specialization_study
from cpt_scaling.studies.split import fit_split_study

smk = snakemake  # type: ignore[name-defined]  # noqa: F821

with rule_job(smk):
    fit = json.loads(smk.params.fit)
    evals = [Path(p) for p in smk.input.evals]
    out = {name: Path(path) for name, path in smk.output.items()}
    if smk.rule == "fit_dcpt":
        study = json.loads(smk.params.study)
        manifest = json.loads(Path(smk.input.manifest).read_text())
        tokens = study["domain_tokens"] or manifest["train"]["n_tokens"]
        fit_dcpt_study(evals, smk.wildcards.domain, fit, study, tokens, out["law"], out["points"], out["usages"])
    elif smk.rule == "fit_cross_domain":
        fit_cross_domain_study(evals, list(smk.params.domains), fit, out["law"], out["points"])
    elif smk.rule == "fit_chinchilla":
        fit_chinchilla_study(evals, fit, out["law"], out["points"], out["frontier"])
    elif smk.rule == "fit_specialization":
        study = json.loads(smk.params.study)
        fit_specialization_study(evals, smk.wildcards.domain, study["specialist_ratio"], fit, out["law"],
                                 out["table"], out["compute"], sger_limit=study.get("sger_limit", 100.0))
    else:
        fit_split_study(evals, smk.wildcards.domain, json.loads(smk.params.study), fit, out["law"], out["points"],
                        out["decisions"])
