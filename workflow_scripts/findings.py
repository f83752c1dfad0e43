"""Adaptor for rules/fit.smk's seed_findings: every seed finding's verdict from the study tables."""

from pathlib import Path

from cpt_scaling.core.adaptor import rule_job
from cpt_scaling.studies.findings import write_seed_findings
from cpt_scaling.studies.split import read_split_findings

smk = snakemake  # type: ignore[name-defined]  # noqa: F821

with rule_job(smk):
    tables = Path(smk.output.table).parent
    split_rows = [row for domain in smk.params.split_domains for row in read_split_findings(tables, domain)]
    write_seed_findings(tables, list(smk.params.domains), smk.params.run_noise, Path(smk.output.table), split_rows)
