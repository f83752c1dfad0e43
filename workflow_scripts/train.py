"""Adaptor for rules/train.smk: one pretraining or continued-pretraining run."""

from pathlib import Path

from cpt_scaling.adaptor import rule_job
from cpt_scaling.runs import resolve_init
from cpt_scaling.trainer import train

smk = snakemake  # type: ignore[name-defined]  # noqa: F821

with rule_job(smk) as job:
    job["init"] = resolve_init(job["init"])
    job["threads"] = int(smk.threads)
    train(job, Path(smk.output.checkpoints).parent)
