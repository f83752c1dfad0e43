"""Adaptor for rules/classify.smk: train the fastText classifier, or classify one pool file (``STEPS``)."""

from pathlib import Path
from typing import Any

from cpt_scaling.core.adaptor import rule_job, rule_step
from cpt_scaling.core.atomic import copy_file
from cpt_scaling.data.classify import classify_file, label_file, train_classifier
from cpt_scaling.data.jobs import ClassifierJob, ClassifyJob

smk = snakemake  # type: ignore[name-defined]  # noqa: F821


def train(data: dict[str, Any]) -> None:
    job = ClassifierJob.from_json(data)
    train_classifier(
        {label: [Path(p) for p in paths] for label, paths in job.seed_files.items()},
        Path(smk.output.model).parent,
        epoch=job.epoch, lr=job.lr, word_ngrams=job.word_ngrams, dim=job.dim, min_count=job.min_count,
        validation_fraction=job.validation_fraction, seed=job.seed, text_column=job.text_column,
        id_column=job.id_column, model=None if job.model is None else Path(job.model),
    )


def classify(data: dict[str, Any]) -> None:
    job = ClassifyJob.from_json(data)
    if job.model is None:  # labels the user already has
        label_file(Path(job.pool_file), Path(smk.output.labels), label=job.label, label_column=job.label_column,
                   text_column=job.text_column, id_column=job.id_column)
    else:
        classify_file(Path(job.model), Path(job.pool_file), Path(smk.output.labels), text_column=job.text_column,
                      id_column=job.id_column)


def report(data: dict[str, Any]) -> None:
    for name in ("metrics", "confusion", "thresholds"):
        copy_file(Path(smk.input[name]), Path(smk.output[name]))


STEPS = {"train_classifier": train, "classify_pool_file": classify, "classifier_report": report}

with rule_job(smk) as job:
    rule_step(smk, STEPS)(job)
