"""Adaptor for rules/train.smk: one pretraining or continued-pretraining run."""

from pathlib import Path

from cpt_scaling.adaptor import rule_job
from cpt_scaling.launch import run_training
from cpt_scaling.runs import resolve_init

smk = snakemake  # type: ignore[name-defined]  # noqa: F821

with rule_job(smk) as job:
    job["init"] = resolve_init(job["init"])
    job["threads"] = int(smk.threads)
    job["activation_checkpointing"] = bool(int(smk.resources.get("activation_checkpointing", 0)))
    run_training(job, Path(smk.output.checkpoints).parent,
                 processes_per_node=int(smk.resources.get("processes_per_node", 1)),
                 nodes=int(smk.resources.get("nodes", 1)))
