"""Adaptor for rules/evaluate.smk: evaluate a run on its suites, score it on the exams, or gather the table (one
step per rule in ``STEPS``)."""

from pathlib import Path
from typing import Any

from cpt_scaling.core.adaptor import rule_job, rule_step
from cpt_scaling.evaluate.jobs import EvalJob, ExamJob
from cpt_scaling.evaluate.tables import evaluate_with_meta, exams_with_meta, gather_eval_tables

smk = snakemake  # type: ignore[name-defined]  # noqa: F821


def evaluate(data: dict[str, Any]) -> None:
    evaluate_with_meta(EvalJob.from_json(data), Path(smk.output.losses))


def exam(data: dict[str, Any]) -> None:
    exams_with_meta(ExamJob.from_json(data), Path(smk.output.scores))


def eval_table(job: dict[str, Any]) -> None:
    gather_eval_tables([Path(p) for p in smk.input], Path(smk.output.parquet), Path(smk.output.csv),
                       Path(smk.output.checkpoints))


STEPS = {"evaluate": evaluate, "exam": exam, "eval_table": eval_table}

with rule_job(smk) as job:
    rule_step(smk, STEPS)(job)
