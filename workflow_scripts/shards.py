"""Adaptor for rules/shards.smk: train (or copy) the tokenizer, or build one corpus's packed shards (``STEPS``)."""

from pathlib import Path
from typing import Any

from cpt_scaling.core.adaptor import rule_job, rule_step
from cpt_scaling.data.jobs import ShardsJob, TokenizerJob
from cpt_scaling.data.shards import build_shards
from cpt_scaling.data.tokenizer_source import install_tokenizer

smk = snakemake  # type: ignore[name-defined]  # noqa: F821


def tokenizer(data: dict[str, Any]) -> None:
    job = TokenizerJob.from_json(data)
    install_tokenizer(Path(smk.output.tokenizer).parent, files=[Path(p) for p in job.files],
                      vocab_size=job.vocab_size, path=job.path, text_column=job.text_column,
                      id_column=job.id_column)


def shards(data: dict[str, Any]) -> None:
    job = ShardsJob.from_json(data)
    build_shards(
        Path(smk.output.manifest).parent,
        pool_files=[Path(p) for p in job.pool_files], classified_files=[Path(p) for p in job.classified_files],
        domain=job.domain, threshold=job.threshold, tokenizer_path=Path(job.tokenizer_path), seq_len=job.seq_len,
        heldout_fraction=job.heldout_fraction, heldout_max_sequences=job.heldout_max_sequences,
        shard_max_sequences=job.shard_max_sequences, text_column=job.text_column, id_column=job.id_column,
    )


STEPS = {"tokenizer": tokenizer, "shards": shards}

with rule_job(smk) as job:
    rule_step(smk, STEPS)(job)
