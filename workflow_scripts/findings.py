"""Adaptor for rules/fit.smk's seed_findings: every seed finding's verdict from the study tables."""

from pathlib import Path

from cpt_scaling.core.adaptor import rule_job
from cpt_scaling.studies.findings import write_seed_findings

smk = snakemake  # type: ignore[name-defined]  # noqa: F821

with rule_job(smk):
    write_seed_findings(Path(smk.output.table).parent, list(smk.params.domains), smk.params.run_noise,
                        Path(smk.output.table), list(smk.params.split_domains))
