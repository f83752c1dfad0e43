"""The evaluation stage's job descriptions as typed values: built by the plan
(:mod:`cpt_scaling.plan.eval_stage`), read by ``workflow_scripts/evaluate.py`` and :mod:`cpt_scaling.evaluate.tables`.

A job's JSON form (``to_json``) is the dict its rule receives: its fields by name, values as they are (path fields
keep the plan's :class:`~cpt_scaling.plan.artifact.Ref` strings, so a job's inputs are read off it), the one of
``run_dir`` / ``checkpoint_dir`` that is not set left out. ``from_json`` reads it back, refusing a missing or
mistyped key with an :class:`~cpt_scaling.core.errors.InputError` that names it.

Both jobs score the checkpoints of one model: every checkpoint of a training run (``run_dir``), or a local base
model (``checkpoint_dir``, before any training of ours: 0 tokens). ``meta`` is an open bag of the sweep
coordinates attached to every row of the job's table (:data:`cpt_scaling.evaluate.tables.META_COLUMNS`: ``run``,
``kind``, ``size``, ``N``, ``domain``, ``ratio``, ``budget``, ``pretrain_tokens``, and ``start_tokens`` for a run
that continues another run's state); it stays a dict, its keys set by the plan's studies.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar, Self

from cpt_scaling.core.errors import InputError


def _field(what: str, data: dict[str, Any], key: str, kind: type) -> Any:
    """``data[key]``, refused (naming the key) when it is missing or not of ``kind``."""
    if key not in data:
        raise InputError(what, f"missing key {key!r}")
    value = data[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise InputError(what, f"key {key!r}: expected {kind.__name__}, got {type(value).__name__}")
    return value


@dataclass(frozen=True)
class CheckpointsJob:
    """A job over the checkpoints of one model: exactly one of ``run_dir`` and ``checkpoint_dir`` is set."""

    run_dir: str | None
    checkpoint_dir: str | None
    batch_size: int
    meta: dict[str, Any]

    _WHAT = "job"  # how errors name the job

    @classmethod
    def _source(cls, data: dict[str, Any]) -> dict[str, Any]:
        """The common fields of ``data``, checked: one model source, a batch size, a meta bag naming the run;
        a key no field has (a misspelling) refused too."""
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise InputError(cls._WHAT, f"unknown keys {unknown}")
        sources = [k for k in ("run_dir", "checkpoint_dir") if k in data]
        if len(sources) != 1:
            raise InputError(cls._WHAT, "a job names exactly one of keys 'run_dir' (a training run) and "
                             f"'checkpoint_dir' (a local base model); got {sources or 'neither'}")
        for key in sources:
            _field(cls._WHAT, data, key, str)
        meta = _field(cls._WHAT, data, "meta", dict)
        if not isinstance(meta.get("run"), str):
            raise InputError(cls._WHAT, "key 'meta' has no 'run' name (every row of the table carries it)")
        return {"run_dir": data.get("run_dir"), "checkpoint_dir": data.get("checkpoint_dir"),
                "batch_size": _field(cls._WHAT, data, "batch_size", int), "meta": meta}

    _ORDER: ClassVar[tuple[str, ...]] = ()  # the JSON's key order (the plan's: Snakemake compares params by repr)

    def to_json(self) -> dict[str, Any]:
        """The plan's job dict, keys in :attr:`_ORDER`, without the unset one of ``run_dir``/``checkpoint_dir``."""
        return {k: getattr(self, k) for k in self._ORDER if getattr(self, k) is not None}


@dataclass(frozen=True)
class EvalJob(CheckpointsJob):
    """Held-out loss (:func:`cpt_scaling.evaluate.tables.evaluate_with_meta`) of every checkpoint on the suites
    of ``corpora``: ``suites`` maps ``<corpus><SPLIT_SEP><split>`` (split ``test`` or ``val``) to a suite's
    parquet file; ``batch_size`` sequences per forward pass."""

    corpora: list[str]
    suites: dict[str, str]

    _WHAT = "eval job"
    _ORDER = ("run_dir", "checkpoint_dir", "corpora", "suites", "batch_size", "meta")

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        return cls(**cls._source(data), corpora=_field(cls._WHAT, data, "corpora", list),
                   suites=_field(cls._WHAT, data, "suites", dict))


@dataclass(frozen=True)
class ExamJob(CheckpointsJob):
    """Exam scores (:func:`cpt_scaling.evaluate.tables.exams_with_meta`, lm-eval-harness offline) of every
    checkpoint: ``exams`` maps an exam's name to its lm-eval task YAML, or to the mapping of
    :meth:`cpt_scaling.evaluate.exams.ExamSpec.to_job` (an lm-eval task by name, few-shot), the text read with the
    tokenizer of ``tokenizer_dir``; ``batch_size`` requests per forward pass."""

    tokenizer_dir: str
    exams: dict[str, Any]

    _WHAT = "exam job"
    _ORDER = ("run_dir", "checkpoint_dir", "tokenizer_dir", "exams", "batch_size", "meta")

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        return cls(**cls._source(data), tokenizer_dir=_field(cls._WHAT, data, "tokenizer_dir", str),
                   exams=_field(cls._WHAT, data, "exams", dict))

