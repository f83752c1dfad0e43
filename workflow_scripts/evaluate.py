"""Adaptor for rules/evaluate.smk: evaluate a run on one suite, score it on the exams, or gather the table."""

from pathlib import Path

from cpt_scaling.adaptor import rule_job
from cpt_scaling.tables import evaluate_with_meta, exams_with_meta, gather_eval_tables

smk = snakemake  # type: ignore[name-defined]  # noqa: F821

with rule_job(smk) as job:
    if smk.rule == "evaluate":
        evaluate_with_meta(job, Path(smk.output.losses))
    elif smk.rule == "exam":
        exams_with_meta(job, Path(smk.output.scores))
    else:
        gather_eval_tables([Path(p) for p in smk.input], Path(smk.output.parquet), Path(smk.output.csv))
