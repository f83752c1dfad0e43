"""The data stages' job descriptions as typed values: built by the plan, read by the rules' scripts.

A job's JSON form (:meth:`DataJob.to_json`) is its fields by name, values as they are (path fields keep the
plan's :class:`~cpt_scaling.plan.artifact.Ref` strings, so a job's inputs are read off it);
:meth:`DataJob.from_json` reads it back, refusing a missing or unknown key by name.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Self

from cpt_scaling.core.errors import InputError


class DataJob:
    """A dataclass job description whose JSON form is its fields; ``OPTIONAL`` fields (default None) are left
    out of the JSON while None, so jobs that do not use them keep the form they had before the fields existed."""

    OPTIONAL: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        names = [f.name for f in fields(cls)]
        missing = [n for n in names if n not in data and n not in cls.OPTIONAL]
        unknown = sorted(set(data) - set(names))
        if missing or unknown:
            raise InputError(f"{cls.__name__} job", f"missing keys {missing}, unknown keys {unknown}")
        return cls(**{n: data[n] for n in names if n in data})

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)
                if not (f.name in self.OPTIONAL and getattr(self, f.name) is None)}


@dataclass(frozen=True)
class ClassifierJob(DataJob):
    """Train the fastText domain classifier (:func:`cpt_scaling.data.classify.train_classifier`) on the seed
    files of each label; ``epoch`` … ``seed`` are fastText's settings (config ``classifier``), a
    ``validation_fraction`` of the seeds held out for its metrics. ``model``: an existing fastText model used
    instead, its metrics computed on every seed document."""

    OPTIONAL = ("model",)

    seed_files: dict[str, list[str]]
    epoch: int
    lr: float
    word_ngrams: int
    dim: int
    min_count: int
    validation_fraction: float
    seed: int
    text_column: str
    id_column: str
    model: str | None = None


@dataclass(frozen=True)
class ClassifyJob(DataJob):
    """Label every document of ``pool_file``: with the classifier ``model`` (its ``model.bin``), or with the
    labels a user has: ``label`` for every document of the file, or each document's ``label_column``."""

    OPTIONAL = ("label", "label_column")

    pool_file: str
    model: str | None
    text_column: str
    id_column: str
    label: str | None = None
    label_column: str | None = None


@dataclass(frozen=True)
class TokenizerJob(DataJob):
    """The tokenizer (:func:`cpt_scaling.data.tokenizer_source.install_tokenizer`): a copy of the local HF
    tokenizer at ``path``, else a BPE tokenizer of ``vocab_size`` trained on ``files``."""

    files: list[str]
    vocab_size: int | None
    path: str | None
    text_column: str
    id_column: str


@dataclass(frozen=True)
class ShardsJob(DataJob):
    """One corpus's packed shards (:func:`cpt_scaling.data.shards.build_shards`): the documents of
    ``pool_files`` whose label in ``classified_files`` is ``domain`` with probability ≥ ``threshold``,
    tokenized by ``tokenizer_path`` and packed into sequences of ``seq_len`` tokens; a ``heldout_fraction`` of
    the documents (at most ``heldout_max_sequences`` sequences) held out, ``shard_max_sequences`` per shard."""

    domain: str
    threshold: float
    pool_files: list[str]
    classified_files: list[str]
    tokenizer_path: str
    seq_len: int
    heldout_fraction: float
    heldout_max_sequences: int
    shard_max_sequences: int
    text_column: str
    id_column: str
