"""Domain exams: multiple-choice questions scored through lm-eval-harness on a model already in memory.

An exam is an lm-eval task YAML (``output_type: multiple_choice``) over a local JSONL file with one question a
line: ``question`` (the context), ``choices`` (continuations) and ``answer`` (index of the right one). lm-eval
scores each choice by the summed log-likelihood of its tokens after the question; ``acc`` is the share of
questions whose right choice has the highest sum, ``acc_norm`` the same with sums divided by the choices' character
lengths. The answer perplexity (the specialisation paper's exam measure) is ``exp(-sum ll / sum tokens)`` of the
right choices.

Besides local YAMLs, ``evaluate.exams`` names standard lm-eval tasks (``{task: mmlu_professional_law,
num_fewshot: 5, data_dir: ...}``): the task's own prompt, choices, few-shot split and metrics come from lm-eval's
registry; its data from a local copy of the dataset (the splits' Parquet or JSON-lines files, as the Hub ships
them), so a job never downloads (:func:`named_task`).

The demo's exams are cloze questions built from held-out documents by :func:`build_cloze_exam` (see
``scripts/make_demo_exams.py``): a held-out sentence cut just before one of its domain terms is the question,
that term is the right choice and the distractors are domain terms of other documents of the same domain.
lm-eval is an optional dependency (``pip install -e '.[exams]'``).
"""

from __future__ import annotations

import json
import logging
import math
import random
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from cpt_scaling.core.errors import InputError

log = logging.getLogger(__name__)

WORD = re.compile(r"[A-Za-z][A-Za-z-]{3,}[A-Za-z]")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


# -- building cloze exams --------------------------------------------------------------------------------------
def domain_terms(domain_docs: Sequence[str], background_docs: Sequence[str], *, max_terms: int = 300,
                 min_docs: int = 2) -> list[str]:
    """Lower-cased words over-represented in the domain: in at least ``min_docs`` domain documents, ranked by the
    log ratio of their document frequency in the domain to that in the background (add-one smoothed)."""
    def doc_freq(docs: Sequence[str]) -> Counter[str]:
        return Counter(w for d in docs for w in {m.group().lower() for m in WORD.finditer(d)})

    dom, bg = doc_freq(domain_docs), doc_freq(background_docs)
    n_dom, n_bg = len(domain_docs), len(background_docs)
    scored = [(math.log((c + 1) / (n_dom + 1)) - math.log((bg[w] + 1) / (n_bg + 1)), w)
              for w, c in dom.items() if c >= min_docs]
    return [w for s, w in sorted(scored, key=lambda t: (-t[0], t[1])) if s > 0][:max_terms]


def build_cloze_exam(domain_docs: Sequence[str], background_docs: Sequence[str], *, n_questions: int,
                     n_choices: int = 4, per_doc: int = 3, min_context_words: int = 6, seed: int = 0
                     ) -> list[dict[str, Any]]:
    """Cloze questions from ``domain_docs`` (held-out documents of one domain).

    Each question is a sentence of a document cut just before a domain term (:func:`domain_terms`) that has at
    least ``min_context_words`` words before it; the right choice is that term (with its leading space and
    casing), the distractors are ``n_choices - 1`` distinct domain terms that occur in other documents of the
    domain but not in this one. At most ``per_doc`` questions per document, documents visited in a seeded order.
    """
    terms = domain_terms(domain_docs, background_docs)
    term_set = set(terms)
    doc_terms = [{m.group().lower() for m in WORD.finditer(d)} & term_set for d in domain_docs]
    rng = random.Random(seed)
    order = list(range(len(domain_docs)))
    rng.shuffle(order)
    questions: list[dict[str, Any]] = []
    for i in order:
        others = sorted(set().union(*(doc_terms[j] for j in range(len(domain_docs)) if j != i)) - doc_terms[i])
        if len(others) < n_choices - 1:
            continue
        asked = 0
        for sentence in SENTENCE_END.split(domain_docs[i]):
            if asked >= per_doc or len(questions) >= n_questions:
                break
            for m in WORD.finditer(sentence):
                word = m.group()
                if word.lower() not in term_set or len(sentence[:m.start()].split()) < min_context_words:
                    continue
                if not sentence[m.start() - 1:m.start()].isspace():
                    continue
                distractors = rng.sample(others, n_choices - 1)
                choices = [" " + word, *(" " + _cased_like(d, word) for d in distractors)]
                rng.shuffle(choices)
                questions.append({"id": f"q{len(questions):04d}", "question": sentence[:m.start() - 1],
                                  "choices": choices, "answer": choices.index(" " + word), "doc": i})
                asked += 1
                break
        if len(questions) >= n_questions:
            break
    return questions


def _cased_like(term: str, word: str) -> str:
    """``term`` capitalised like ``word`` (so casing does not give the answer away)."""
    if word.isupper():
        return term.upper()
    return term.capitalize() if word[:1].isupper() else term


def write_exam(questions: Sequence[dict[str, Any]], out_dir: Path, name: str) -> Path:
    """Write ``<name>.jsonl`` and the lm-eval task ``<name>.yaml`` reading it; return the YAML's path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    data = out_dir / f"{name}.jsonl"
    data.write_text("".join(json.dumps(q, ensure_ascii=False) + "\n" for q in questions))
    task = task_config(name, data.name)
    path = out_dir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(task, sort_keys=False))
    return path


def task_config(name: str, data_file: str) -> dict[str, Any]:
    """An lm-eval multiple-choice task over a local JSONL file (question, choices, answer)."""
    return {
        "task": name,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": data_file}},
        "test_split": "test",
        "output_type": "multiple_choice",
        "doc_to_text": "{{question}}",
        "doc_to_choice": "{{choices}}",
        "doc_to_target": "answer",
        "target_delimiter": "",
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True},
                        {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True}],
        "metadata": {"version": 1.0},
    }


# -- exam entries of the config --------------------------------------------------------------------------------
@dataclass(frozen=True)
class ExamSpec:
    """One ``evaluate.exams`` entry: a local task YAML (``yaml``), or an lm-eval task by name (``task``) whose data
    is the local copy in ``data_dir``; ``num_fewshot`` examples from the task's few-shot split precede each
    question."""

    yaml: str | None = None
    task: str | None = None
    data_dir: str | None = None
    num_fewshot: int = 0

    @classmethod
    def parse(cls, entry: str | Mapping[str, Any], where: str) -> ExamSpec:
        """An entry as the config writes it: a YAML path, or a mapping with ``yaml`` or ``task`` + ``data_dir``."""
        if isinstance(entry, str):
            return cls(yaml=entry)
        if not isinstance(entry, Mapping):
            raise InputError(where, "an exam is a task YAML path or {task, data_dir, num_fewshot}")
        unknown = sorted(set(entry) - {"yaml", "task", "data_dir", "num_fewshot"})
        if unknown:
            raise InputError(where, f"unknown key(s) {', '.join(unknown)} (known: yaml, task, data_dir, num_fewshot)")
        spec = cls(**dict(entry))
        if (spec.yaml is None) == (spec.task is None):
            raise InputError(where, "give exactly one of yaml (a local task YAML) or task (an lm-eval task name)")
        if spec.task is not None and spec.data_dir is None:
            raise InputError(where, f"task {spec.task!r} needs data_dir: a local copy of its dataset (jobs never "
                                    "download)")
        if not isinstance(spec.num_fewshot, int) or spec.num_fewshot < 0:
            raise InputError(where, f"num_fewshot must be an integer >= 0, got {spec.num_fewshot!r}")
        return spec

    def files(self, where: str) -> list[str]:
        """The files a job scoring this exam reads: the YAML and its data files, or every file of ``data_dir``."""
        if self.yaml is not None:
            files = load_task(Path(self.yaml)).get("dataset_kwargs", {}).get("data_files") or {}
            return [self.yaml, *(files[s] for s in sorted(files))]
        root = Path(str(self.data_dir))
        found = sorted(str(f) for f in root.rglob("*") if f.is_file() and not f.name.startswith(".")) \
            if root.is_dir() else []
        if not found:
            raise InputError(where, f"data_dir '{root}' holds no files (a local copy of the task's dataset)")
        return found

    def to_job(self, files: Sequence[str]) -> Any:
        """The job description's value: the YAML path alone (as before named tasks existed), else a mapping."""
        if self.task is None and self.num_fewshot == 0:
            return files[0]
        out: dict[str, Any] = {"yaml": files[0]} if self.task is None else {"task": self.task,
                                                                            "data_dir": self.data_dir}
        return {**out, "num_fewshot": self.num_fewshot}


#: Data-file suffixes of a local dataset copy, and the ``datasets`` builder that reads each.
_SPLIT_FORMATS = {".parquet": "parquet", ".jsonl": "json", ".json": "json"}


def _split_files(data_dir: Path, subset: str | None, split: str) -> list[str]:
    """Files of ``split`` in a local dataset copy: ``<split>.<ext>`` or Hub-style shards ``<split>-*.<ext>``,
    in ``data_dir`` or its ``<subset>`` folder (the Hub layout of a dataset with configurations)."""
    for folder in ([data_dir / subset] if subset else []) + [data_dir]:
        if folder.is_dir():
            files = sorted(str(f) for f in folder.iterdir() if f.suffix in _SPLIT_FORMATS
                           and (f.stem == split or f.name.startswith(f"{split}-")))
            if files:
                return files
    return []


def named_task(name: str, data_dir: Path, num_fewshot: int, where: str) -> dict[str, Any]:
    """lm-eval's registered task ``name`` (prompt, choices, target, few-shot split, metrics), reading its splits
    from the local copy ``data_dir`` instead of the Hub."""
    from lm_eval.tasks import TaskManager

    entry = TaskManager().task_index.get(name)
    if entry is None or not isinstance(getattr(entry, "cfg", None), dict) or "output_type" not in entry.cfg:
        raise InputError(where, f"lm-eval has no single task named {name!r} (a group? name its tasks)")
    task = dict(entry.cfg)
    subset = task.pop("dataset_name", None)
    needed = {task.get("test_split") or task.get("validation_split")}
    if num_fewshot:
        needed.add(task.get("fewshot_split") or task.get("training_split") or task.get("validation_split"))
    data_files: dict[str, list[str]] = {}
    for key in ("training_split", "validation_split", "test_split", "fewshot_split"):
        split = task.get(key)
        if split and split not in data_files:
            files = _split_files(Path(data_dir), subset, split)
            if files:
                data_files[split] = files
            elif split in needed:
                raise InputError(where, f"task {name!r}: no '{split}' split in {data_dir} (expected {split}.parquet, "
                                        f"{split}.jsonl or {split}-*.parquet, there or in {data_dir}/{subset})")
    builders = {_SPLIT_FORMATS[Path(f).suffix] for fs in data_files.values() for f in fs}
    if len(builders) != 1:
        raise InputError(where, f"task {name!r}: mix of Parquet and JSON files in {data_dir}; use one format")
    task.update(dataset_path=builders.pop(), dataset_kwargs={"data_files": data_files})
    return task


def resolve_exam(entry: str | Path | Mapping[str, Any], where: str) -> tuple[dict[str, Any], int]:
    """The lm-eval task dict of a job's exam entry (a YAML path, or the mapping of :meth:`ExamSpec.to_job`) and its
    number of few-shot examples."""
    spec = ExamSpec.parse(str(entry) if isinstance(entry, Path) else entry, where)
    if spec.yaml is not None:
        return load_task(Path(spec.yaml)), spec.num_fewshot
    return named_task(str(spec.task), Path(str(spec.data_dir)), spec.num_fewshot, where), spec.num_fewshot


# -- scoring ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ExamScore:
    """One exam's scores on one model, and the per-question log-likelihoods lm-eval computed."""

    task: str
    n: int
    acc: float
    acc_norm: float
    answer_ppl: float
    loglik: list[list[float]]  # per question, per choice: summed log-likelihood
    answers: list[int]
    contexts: list[str]  # per question: the prompt the choices continue (few-shot examples included)


def load_task(task_yaml: Path) -> dict[str, Any]:
    """An exam YAML as an lm-eval task dict, with its local data files resolved against the YAML's folder."""
    try:
        task = yaml.safe_load(Path(task_yaml).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(str(task_yaml), f"cannot read exam task: {exc}") from None
    if not isinstance(task, dict) or "task" not in task or task.get("output_type") != "multiple_choice":
        raise InputError(str(task_yaml), "an exam is an lm-eval task with a 'task' name and "
                                         "output_type: multiple_choice")
    files = task.get("dataset_kwargs", {}).get("data_files")
    if task.get("dataset_path") == "json" and isinstance(files, dict):
        resolved = {}
        for split, f in files.items():
            path = Path(f) if Path(f).is_absolute() else Path(task_yaml).parent / f
            if not path.is_file():
                raise InputError(str(task_yaml), f"data file {f} not found")
            resolved[split] = str(path.resolve())
        task = {**task, "dataset_kwargs": {**task["dataset_kwargs"], "data_files": resolved}}
    return task


def score_exam(model: Any, tokenizer: Any, exam: str | Path | Mapping[str, Any], *, batch_size: int = 8
               ) -> ExamScore:
    """Score a loaded HF causal LM on one exam (a task YAML path, or an :meth:`ExamSpec.to_job` mapping) through
    lm-eval-harness's Python API (no download, no reload)."""
    where = str(exam if not isinstance(exam, Mapping) else exam.get("yaml") or exam.get("task"))
    try:
        from lm_eval import simple_evaluate
        from lm_eval.models.huggingface import HFLM
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise InputError(where, "scoring exams needs lm-eval: pip install -e '.[exams]'") from None
    task, num_fewshot = resolve_exam(exam, where)
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, max_length=_max_length(model))
    out = simple_evaluate(model=lm, tasks=[task], task_manager=TaskManager(include_defaults=False),
                          num_fewshot=num_fewshot, log_samples=True, bootstrap_iters=0, random_seed=0)
    name = task["task"]
    metrics = out["results"][name]
    samples = sorted(out["samples"][name], key=lambda s: s["doc_id"])
    loglik = [[float(r[0][0]) for r in s["resps"]] for s in samples]
    answers = [int(s["target"]) for s in samples]
    ll_right, n_tokens = 0.0, 0
    for s, lls, a in zip(samples, loglik, answers, strict=True):
        context, continuation = s["arguments"][a][0], s["arguments"][a][1]
        n_tokens += len(lm._encode_pair(context, continuation)[1])
        ll_right += lls[a]
    acc_norm = metrics.get("acc_norm,none", float("nan"))  # a registry task may report acc only (MMLU)
    return ExamScore(name, len(samples), float(metrics["acc,none"]), float(acc_norm),
                     math.exp(-ll_right / max(1, n_tokens)), loglik, answers, [s["arguments"][0][0]
                                                                               for s in samples])


def _max_length(model: Any) -> int | None:
    return getattr(model.config, "max_position_embeddings", None)


EXAM_FIELDS = ("checkpoint_tokens", "suite", "metric", "value", "n_questions")


def score_checkpoints(checkpoints: Sequence[tuple[int, Path]], tokenizer_dir: Path,
                      exams: Mapping[str, str | Path | Mapping[str, Any]], *, batch_size: int = 8) -> Any:
    """Tidy exam scores of each checkpoint, one row per (checkpoint, exam, metric): ``checkpoint_tokens``,
    ``suite`` (the exam's name), ``metric`` (acc, acc_norm, answer_ppl), ``value``, ``n_questions``. Each
    checkpoint is loaded once and scored on every exam in memory."""
    import pyarrow as pa
    import torch

    from cpt_scaling.data.tokenizer import load_tokenizer
    from cpt_scaling.train.model import load_model

    tokenizer = load_tokenizer(Path(tokenizer_dir))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rows: dict[str, list[Any]] = {f: [] for f in EXAM_FIELDS}
    for tokens, path in checkpoints:
        model = load_model(Path(path)).to(device).eval()
        for name, task in sorted(exams.items()):
            score = score_exam(model, tokenizer, task, batch_size=batch_size)
            for metric in ("acc", "acc_norm", "answer_ppl"):
                if not math.isfinite(getattr(score, metric)):
                    continue
                rows["checkpoint_tokens"].append(int(tokens))
                rows["suite"].append(name)
                rows["metric"].append(metric)
                rows["value"].append(float(getattr(score, metric)))
                rows["n_questions"].append(score.n)
            log.info("checkpoint %s exam %s: acc %.3f acc_norm %.3f answer ppl %.2f", path, name, score.acc,
                     score.acc_norm, score.answer_ppl)
        del model
    return pa.table(rows, schema=pa.schema([("checkpoint_tokens", pa.int64()), ("suite", pa.string()),
                                            ("metric", pa.string()), ("value", pa.float64()),
                                            ("n_questions", pa.int64())]))
