"""Adaptor for rules/fit.smk: fit a study's laws to its evaluation tables."""

import json
from pathlib import Path

from cpt_scaling.adaptor import rule_job
from cpt_scaling.studies import fit_chinchilla_study, fit_dcpt_study

smk = snakemake  # type: ignore[name-defined]  # noqa: F821

with rule_job(smk):
    fit = json.loads(smk.params.fit)
    inputs = [Path(p) for p in smk.input]
    if smk.rule == "fit_dcpt":
        fit_dcpt_study(inputs, smk.wildcards.domain, fit, Path(smk.output.law), Path(smk.output.points))
    else:
        fit_chinchilla_study(inputs, fit, Path(smk.output.law), Path(smk.output.points))
