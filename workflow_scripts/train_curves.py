"""Adaptor for the training-curve rules of rules/train.smk: the stitched curves table, or one group's figure."""

from pathlib import Path
from typing import Any

from cpt_scaling.core.adaptor import rule_job, rule_step
from cpt_scaling.core.atomic import atomic_path
from cpt_scaling.figures.train_curves import draw
from cpt_scaling.plan.curves import PRETRAIN_GROUP
from cpt_scaling.train.curves import train_curves

smk = snakemake  # type: ignore[name-defined]  # noqa: F821


def table(job: dict[str, Any]) -> None:
    curves = train_curves(job["runs"])
    with atomic_path(Path(smk.output.csv)) as tmp:
        curves.to_csv(tmp, index=False, float_format="%.6g")


def figure(job: dict[str, Any]) -> None:
    group = smk.wildcards.group
    title = "pretraining runs" if group == PRETRAIN_GROUP else f"continued pretraining toward {group}"
    draw({**job, "title": f"Training loss: {title}"}, Path(smk.output.figure))


STEPS = {"train_curves": table, "figures_train_curves": figure}

with rule_job(smk) as job:
    rule_step(smk, STEPS)(job)
