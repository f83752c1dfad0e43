"""The artifact model of the plan: content-addressed artifacts, the references a job reads, stage versions.

An artifact is ``<root>/<stage>/<name>-<key>/``, its key the content address of its spec; a job's inputs are the
:class:`Ref` paths of its job description.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

from cpt_scaling.core.keys import key_of
from cpt_scaling.train.spec_types import TrainSpec

# Bump a stage's version when its algorithm changes: every artifact of that stage (and downstream) gets a new key.
STAGE_VERSIONS: dict[str, int] = {
    "classifier": 2,
    "classified": 2,
    "tokenizer": 1,
    "shards": 3,
    "train": 1,
    "eval": 1,
    "exam": 1,
}

# Paths in a training job: where its inputs are, not what they hold (their keys are in the spec), so not in keys.
JOB_PATHS = ("general_shards", "domain_shards", "tokenizer")


def keyed_settings(job: TrainSpec, *also: str) -> dict[str, Any]:
    """A training job's settings that enter its key: all of its JSON but :data:`JOB_PATHS` and ``also``
    (``init``, where the spec names the initial state by its own key)."""
    return {k: v for k, v in job.to_json().items() if k not in (*JOB_PATHS, *also)}


class Job(Protocol):
    """A typed job description (:class:`~cpt_scaling.train.spec_types.TrainSpec`); its JSON form is what the
    rule's script receives."""

    def to_json(self) -> dict[str, Any]: ...

# The file each stage's job writes last; its presence means the artifact is complete.
MAIN_OUTPUT: dict[str, str] = {
    "classifier": "model.bin",
    "classified": "labels.parquet",
    "tokenizer": "tokenizer.json",
    "shards": "manifest.json",
    "train": "checkpoints.json",
    "eval": "losses.parquet",
    "exam": "scores.parquet",
}


class Ref(str):
    """A path in a job description that the job reads, carrying the files Snakemake must have made first: an
    upstream artifact's main output (:meth:`Artifact.ref`), or raw files (:func:`raw`; an exam's task YAML also
    names its data files). It is the plain path everywhere else (JSON, keys, the job's own reading), so a job's
    inputs are stated once: by its job description."""

    inputs: tuple[str, ...]

    def __new__(cls, path: str, inputs: tuple[str, ...] | None = None) -> Ref:
        obj = super().__new__(cls, path)
        obj.inputs = (path,) if inputs is None else inputs
        return obj


def raw(path: str, *also: str) -> Ref:
    """A raw input file (or a directory such as a local checkpoint) that a job reads, and any files it names."""
    return Ref(str(path), (str(path), *also))


def job_inputs(job: Any) -> tuple[str, ...]:
    """The files a job needs: the inputs of every :class:`Ref` in its description, each once, in order."""
    found: dict[str, None] = {}

    def walk(value: Any) -> None:
        if isinstance(value, Ref):
            found.update(dict.fromkeys(value.inputs))
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, (list, tuple)):
            for v in value:
                walk(v)

    walk(job)
    return tuple(found)


@dataclass(frozen=True)
class Artifact:
    """One content-addressed artifact: ``<root>/<stage>/<name>-<key>/``. Its inputs are the :class:`Ref` paths of
    its job description."""

    stage: str
    name: str
    spec: dict[str, Any]
    root: str
    job: dict[str, Any] | Job = field(default_factory=dict, compare=False)

    @cached_property
    def key(self) -> str:
        """Content address of the spec (computed once: specs are never mutated after construction)."""
        return key_of(self.spec)

    @cached_property
    def inputs(self) -> tuple[str, ...]:
        """What Snakemake must have made before this artifact's job: the references in its job."""
        return job_inputs(self.job_data)

    @property
    def job_data(self) -> dict[str, Any]:
        """The job description in its JSON form (its :class:`Ref` paths kept)."""
        return self.job if isinstance(self.job, dict) else self.job.to_json()

    def ref(self, name: str | None = None) -> Ref:
        """This artifact's directory (or its file ``name``) as a reference of a downstream job."""
        return Ref(self.dir if name is None else self.file(name), (self.output,))

    @property
    def dir(self) -> str:
        return f"{self.root}/{self.stage}/{self.name}-{self.key}"

    @property
    def output(self) -> str:
        return f"{self.dir}/{MAIN_OUTPUT[self.stage]}"

    def file(self, name: str) -> str:
        return f"{self.dir}/{name}"


def ratio_label(r: float) -> str:
    """Readable ratio for artifact names: 0.25 -> 'r0.25'."""
    return f"r{r:g}"


def checkpoint_schedule(total: int, n: int, step_tokens: int) -> list[int]:
    """``n`` geometrically spaced checkpoint token counts ending at the run's final token count."""
    steps = total // step_tokens
    points = {max(1, round(steps / 2 ** (n - 1 - i))) * step_tokens for i in range(n)}
    return sorted(points)


def relative_to_cwd(path: str) -> str:
    """A path relative to the working directory when it lies below it (artifact inputs stay portable)."""
    p, cwd = Path(path).resolve(), Path.cwd().resolve()
    return str(p.relative_to(cwd)) if p.is_relative_to(cwd) else str(path)

