"""Why does a job rerun? The config keys and raw files behind every job a dry run would run.

Each keyed artifact ``<artifacts>/<stage>/<name>-<key>/spec.json`` holds the inputs of its key: its own settings,
the keys of its upstream artifacts and the digests of raw input files. For a job the dry run plans, the nearest
artifact of the same stage and name on disk (the one whose spec differs in the fewest fields, newest first) is
diffed against the planned spec:

* a differing own setting maps to the dotted config key it comes from (:func:`spec_source`, which knows which
  config section the plan builds each spec field from: ``shards.threshold`` of the legal corpus is
  ``domains.legal.threshold``, a training job's ``model.d_model`` is ``models.sizes.<size>.d_model``, ...);
* a differing raw-file digest names the raw file;
* a differing upstream key is followed: the planned upstream artifact is diffed against the old one, found on disk
  by the key the old spec names, and so on up the chain;
* a differing stage version names ``STAGE_VERSIONS[<stage>]`` (code, not config).

Jobs without a keyed artifact (fits, figures, tables) inherit the changes of the planned jobs they read, plus the
config keys of their own params when Snakemake says those changed (a param that is a copy of a config section is
matched to that section by value). A keyed job with no artifact of its stage and name on disk is ``new``.
"""

from __future__ import annotations

import ast
import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cpt_scaling.config.names import GENERAL
from cpt_scaling.core.keys import KEY_PATTERN, canonical_json
from cpt_scaling.dryrun.cost_report import DECIDE_RULES

log = logging.getLogger(__name__)

# Kinds of sources of a spec field.
KEY, FILE, UPSTREAM, CODE, DERIVED, SPEC = "key", "file", "upstream", "code", "derived", "spec"
CONSTANT = "constant"  # the same for every artifact of one stage and name (its name says it)

Path_ = tuple[Any, ...]  # a path into a JSON value: dict keys and list indices


@dataclass
class Changes:
    """What differs between a planned artifact and an artifact on disk, as config keys, files and code."""

    keys: set[str] = field(default_factory=set)
    files: set[str] = field(default_factory=set)
    code: set[str] = field(default_factory=set)
    notes: set[str] = field(default_factory=set)

    def update(self, other: Changes) -> None:
        self.keys |= other.keys
        self.files |= other.files
        self.code |= other.code
        self.notes |= other.notes

    def __bool__(self) -> bool:
        return bool(self.keys or self.files or self.code or self.notes)

    def labels(self) -> list[str]:
        """Everything that changed, config keys first."""
        return [*sorted(self.keys), *sorted(self.files), *sorted(self.code), *sorted(self.notes)]


@dataclass(frozen=True)
class JobExplanation:
    """One job a dry run would run and why."""

    jobid: int
    rule: str
    output: str
    artifact: str | None  # "<stage>/<name>-<key>" of a keyed job
    status: str  # "new", "changed" or "rerun" (same key on disk: Snakemake reruns it for another reason)
    nearest: str | None  # the artifact on disk the spec was compared with
    keys: tuple[str, ...]
    files: tuple[str, ...]
    code: tuple[str, ...]
    notes: tuple[str, ...]
    reason: str  # Snakemake's own reason

    @property
    def changed(self) -> list[str]:
        return [*self.keys, *self.files, *self.code, *self.notes]


@dataclass(frozen=True)
class PlannedJob:
    """A job of the dry run, with what Snakemake recorded about it."""

    jobid: int
    rule: str
    output: str
    key: str | None
    deps: tuple[int, ...]
    reason: str
    params_old: tuple[str, ...] = ()  # serialized params only in the last run's metadata
    params_new: tuple[str, ...] = ()  # serialized params only in this plan


# -- diffing ---------------------------------------------------------------------------------------------------
def leaf_diff(new: Any, old: Any, path: Path_ = ()) -> list[tuple[Path_, bool]]:
    """Paths where two JSON values differ, each with whether both sides have it. Dicts are compared key by key,
    lists of equal length element by element; anything else (a list that changed length) is one leaf."""
    if isinstance(new, dict) and isinstance(old, dict):
        out: list[tuple[Path_, bool]] = []
        for k in sorted(set(new) | set(old), key=str):
            if k not in new or k not in old:
                out.append(((*path, k), False))
            else:
                out.extend(leaf_diff(new[k], old[k], (*path, k)))
        return out
    if isinstance(new, list) and isinstance(old, list) and len(new) == len(old):
        return [d for i, (a, b) in enumerate(zip(new, old, strict=True)) for d in leaf_diff(a, b, (*path, i))]
    return [] if canonical_json(new) == canonical_json(old) else [(path, True)]


def dotted(prefix: str, rest: Iterable[Any]) -> str:
    """``prefix`` plus the dict keys of ``rest`` (list indices stop it: a list is one config value)."""
    parts = [prefix] if prefix else []
    for p in rest:
        if isinstance(p, int):
            break
        parts.append(str(p))
    return ".".join(parts)


# -- where spec fields come from -------------------------------------------------------------------------------
def artifact_contexts(plan: Any) -> dict[str, dict[str, Any]]:
    """Per artifact key, what the plan built it for: model size, domain or corpus, kind of run, pool file."""
    ctx: dict[str, dict[str, Any]] = {}
    for i, art in enumerate(plan.classified):
        ctx[art.key] = {"pool_index": i}
    for corpus, art in plan.shards.items():
        ctx[art.key] = {"corpus": corpus}
    for size, art in plan.pretrain.items():
        ctx[art.key] = {"size": size, "kind": "pretrain"}
    for (size, domain, _, _), art in plan.cpt.items():
        ctx.setdefault(art.key, {"size": size, "domain": domain, "kind": "cpt"})
    for (size, _), art in plan.generalist.items():
        ctx.setdefault(art.key, {"size": size, "kind": "generalist"})
    for (size, domain, _, _), art in plan.split.items():  # the final-checkpoint branch is a D-CPT run (same key)
        ctx.setdefault(art.key, {"size": size, "domain": domain, "kind": "split"})
    for size, curve in getattr(plan, "pretrain_curve", {}).items():  # WSD pretraining: every branch end
        for art in curve.values():
            ctx.setdefault(art.key, {"size": size, "kind": "pretrain"})
    # A WSD trunk segment ("trunk-<curve>-t<T>") was built for the same run as its curve's branches.
    curves = {name: ctx[key] for key, name in getattr(plan, "curve_of", {}).items() if key in ctx}
    for key, size in plan.size_of.items():
        name = plan.artifact(key).name
        if name.startswith("trunk-"):
            ctx.setdefault(key, curves.get(name.removeprefix("trunk-").rsplit("-t", 1)[0], {"size": size}))
    plan.evals  # noqa: B018 (builds the evaluation stage, base_evals included)
    for size, art in getattr(plan, "base_evals", {}).items():
        ctx[art.key] = {"size": size, "kind": "base"}
    for art in getattr(plan, "_exams", {}).values():  # exams of a local base model name its size's checkpoint
        if "base" in art.spec:
            ctx[art.key] = {"size": art.job.meta["size"], "kind": "base"}
    return ctx


def spec_source(cfg: Mapping[str, Any], stage: str, ctx: Mapping[str, Any], path: Path_, both: bool
                ) -> tuple[str, Any]:
    """Where the plan takes the spec field at ``path`` of a ``stage`` artifact from: ``(KEY, dotted config key)``,
    ``(FILE, raw file path)``, ``(UPSTREAM, None)`` (an upstream artifact's key), ``(CODE, label)``,
    ``(DERIVED, (config key, spec paths that also determine it))``, ``(CONSTANT, stage:path)`` for a field fixed
    by the artifact's stage and name, or ``(SPEC, stage:path)`` when unknown.
    ``both``: whether the old and the new spec both have the field (a file digest present on one side only is a
    changed config key, not a changed file)."""
    head, rest = path[0], path[1:]
    where = f"{stage}:{'.'.join(str(p) for p in path)}"
    if head == "stage" or (stage == "shards" and head == "corpus") or path[:2] == ("job", "domain_shards"):
        return CONSTANT, where
    if head == "version":
        return CODE, f"STAGE_VERSIONS[{stage!r}]"
    if head == "columns":
        return KEY, {"text": "data.text_column", "id": "data.id_column"}.get(rest[0] if rest else "", "data")
    if head == "seeds":  # classifier, tokenizer: one digest per seed file and label
        if both and len(rest) == 2:
            return FILE, cfg["data"]["seeds"][rest[0]][rest[1]]
        return KEY, dotted("data.seeds", rest)
    if stage == "classifier" and head == "params":
        return KEY, dotted("classifier", rest)
    if stage == "classified":
        if head == "classifier":
            return UPSTREAM, None
        if head == "pool":
            return (FILE, cfg["data"]["pool"][ctx["pool_index"]]) if both else (KEY, "data.pool")
    if stage == "tokenizer":
        if head == "path_digest":
            return (FILE, cfg["tokenizer"]["path"]) if both else (KEY, "tokenizer.path")
        if head in ("path_id", "vocab_size"):
            return KEY, f"tokenizer.{head}"
    if stage == "shards":
        if head == "threshold":
            corpus = ctx["corpus"]
            return KEY, "general.threshold" if corpus == GENERAL else f"domains.{corpus}.threshold"
        if head == "params":
            return KEY, dotted("shards", rest)
        if head == "tokenizer" or (head == "classified" and len(rest) == 1):
            return UPSTREAM, None
        if head == "classified":
            return KEY, "data.pool"
    if stage == "train":
        if head in ("job", "trunk", "branch") and rest:  # a run's, a WSD trunk segment's or a branch's settings
            return _train_job_source(cfg, ctx, rest)
        if head == "trunk":  # a branch's trunk segment
            return UPSTREAM, None
        if head in ("general", "domain") and both:
            return UPSTREAM, None
        if head == "base":
            return _base_source(cfg, ctx.get("size"), rest, both)
    if stage == "eval":
        if head == "base":  # a local base model's own evaluation
            return _base_source(cfg, ctx.get("size"), rest, both)
        if head == "run" or (head == "suites" and len(rest) == 1 and both):
            return UPSTREAM, None
        if head == "batch_size":
            return KEY, "evaluate.batch_size"
    if stage == "exam":
        if head == "base":  # a local base model's exams
            return _base_source(cfg, ctx.get("size"), rest, both)
        if head in ("run", "tokenizer"):
            return UPSTREAM, None
        if head == "exams":  # one digest per exam: its task YAML, then its data files
            if both and len(rest) == 2:
                return FILE, _exam_file(cfg, str(rest[0]), int(rest[1]))
            return KEY, dotted("evaluate.exams", rest)
        if head == "batch_size":
            return KEY, "evaluate.batch_size"
    return SPEC, where


def _builder(where: str) -> str:
    """The plan module that builds the artifacts of the stage of ``where`` (``stage:path``)."""
    stage = where.split(":", 1)[0]
    return {"train": "train_stage", "eval": "eval_stage", "exam": "eval_stage"}.get(stage, "data_stage")


def _exam_file(cfg: Mapping[str, Any], name: str, index: int) -> str:
    """The ``index``-th file of exam ``name`` as the plan digests it: 0 the task YAML, then its data files."""
    task_yaml = cfg["evaluate"]["exams"][name]
    if index == 0:
        return str(task_yaml)
    from cpt_scaling.evaluate.exams import load_task
    from cpt_scaling.plan.artifact import relative_to_cwd

    files = load_task(Path(task_yaml)).get("dataset_kwargs", {}).get("data_files") or {}
    return relative_to_cwd(files[sorted(files)[index - 1]])


def _base_source(cfg: Mapping[str, Any], size: Any, rest: Path_, both: bool) -> tuple[str, Any]:
    """Source of a field of a run's (or base evaluation's) ``base``: the pretraining run or the size's checkpoint."""
    if rest[:1] in (("pretrain",), ("pretrain_trunk",)) and both:  # a run, or a trunk segment whose state it continues
        return UPSTREAM, None
    if rest[:1] == ("branch_tokens",):
        return KEY, "pretrain.checkpoints"
    if rest[:1] == ("checkpoint",) and both:
        return FILE, cfg["models"]["sizes"][size]["base_checkpoint"]
    if rest[:1] == ("checkpoint_id",) and both:
        return KEY, f"models.sizes.{size}.base_checkpoint_id"
    return KEY, f"models.sizes.{size}.base_checkpoint"


_TRAIN_KEYS = {"seq_len": "shards.seq_len", "batch_size": "training.batch_size",
               "micro_batch_size": "training.micro_batch_size", "seed": "training.seed",
               "deepspeed": "training.zero_stage"}


def _train_job_source(cfg: Mapping[str, Any], ctx: Mapping[str, Any], rest: Path_) -> tuple[str, Any]:
    """Source of a field of a training run's job settings (``spec.job``)."""
    head, kind, size = rest[0], ctx.get("kind"), ctx.get("size")
    if head in _TRAIN_KEYS:
        return KEY, _TRAIN_KEYS[head]
    if head == "vocab_size":  # the size's embedding rows, else the tokenizer's vocabulary
        own = size is not None and cfg["models"]["sizes"][size].get("vocab_size")
        return KEY, f"models.sizes.{size}.vocab_size" if own else "tokenizer.vocab_size"
    if head == "model":
        return KEY, dotted(f"models.sizes.{size}", rest[1:])
    if head == "init":  # a pretraining run starts from scratch; a size with base weights has none
        return KEY, f"models.sizes.{size}.base_checkpoint"
    if head == "ratio":
        return KEY, "studies.split.ratio" if kind == "split" else f"domains.{ctx.get('domain')}.ratios"
    if head == "tokens":
        if kind == "pretrain":
            return KEY, "pretrain.tokens"
        if kind == "split" and cfg["studies"]["split"]["spec_tokens"]:
            return KEY, "studies.split.spec_tokens"
        return KEY, "cpt.tokens"
    if head == "keep_final_state":  # a WSD trunk segment keeps its state for the next segment and branches
        return CONSTANT, f"train:{'.'.join(str(p) for p in rest)}"
    if head == "optimizer":
        # Split curves off a pretraining trunk continue its optimizer (optimizer.lr, not cpt.lr).
        trunk_split = kind == "split" and cfg["pretrain"]["budgets"] == "branches"
        if rest[1:2] == ("lr",) and kind != "pretrain" and not trunk_split and cfg["cpt"]["lr"] is not None:
            return KEY, "cpt.lr"
        if rest[1:2] == ("warmup_steps",):  # WSD: absolute warmup, given or from the fraction
            return KEY, "cpt.warmup_steps" if cfg["cpt"]["warmup_steps"] is not None else "optimizer.warmup_fraction"
        if rest[1:2] in (("decay_fraction",), ("decay_shape",)):
            return KEY, f"cpt.{rest[1]}"
        if rest[1:2] == ("schedule",) and cfg[kind if kind == "pretrain" else "cpt"]["budgets"] == "branches":
            return KEY, "pretrain.budgets" if kind == "pretrain" else "cpt.budgets"
        return KEY, dotted("optimizer", rest[1:])
    if head == "checkpoint_tokens":  # a schedule of (tokens, count, batch_size * seq_len)
        primary = "pretrain.checkpoints" if kind == "pretrain" else "cpt.checkpoints"
        return DERIVED, (primary, (("job", "tokens"), ("job", "batch_size"), ("job", "seq_len")))
    return SPEC, f"train:job.{'.'.join(str(p) for p in rest)}"


# -- explaining ------------------------------------------------------------------------------------------------
class Explainer:
    """Diffs planned artifacts against the artifacts on disk under ``root``."""

    def __init__(self, plan: Any, root: str | Path) -> None:
        self.plan = plan
        self.cfg = plan.cfg
        self.root = Path(root)
        self.contexts = artifact_contexts(plan)
        self._memo: dict[tuple[str, str], Changes] = {}
        self._dirs: dict[str, dict[str, list[tuple[str, Path]]]] = {}
        self._keys: dict[tuple[str, str], Path] = {}

    def _read_spec(self, path: Path) -> dict[str, Any] | None:
        try:
            spec = json.loads(path.read_text())
        except (OSError, ValueError):
            log.warning("ignoring unreadable %s", path)
            return None
        return spec if isinstance(spec, dict) else None

    def _index(self, stage: str) -> dict[str, list[tuple[str, Path]]]:
        """The artifacts of ``stage`` on disk with a spec.json, by name: [(key, spec.json)] (listed once)."""
        if stage not in self._dirs:
            index: dict[str, list[tuple[str, Path]]] = {}
            pattern = re.compile(f"(.+)-({KEY_PATTERN})")
            folder = self.root / stage
            for entry in sorted(folder.iterdir()) if folder.is_dir() else []:
                m = pattern.fullmatch(entry.name)
                if m and (entry / "spec.json").is_file():
                    index.setdefault(m.group(1), []).append((m.group(2), entry / "spec.json"))
                    self._keys[(stage, m.group(2))] = entry / "spec.json"
            self._dirs[stage] = index
        return self._dirs[stage]

    def on_disk(self, stage: str, name: str) -> list[tuple[str, Path]]:
        """(key, spec.json) of every artifact of ``stage`` and ``name`` on disk."""
        return self._index(stage).get(name, [])

    def by_key(self, stage: str, key: str) -> Path | None:
        """The spec.json of the artifact of ``stage`` with ``key`` on disk, if any."""
        self._index(stage)
        return self._keys.get((stage, key))

    def nearest(self, art: Any) -> tuple[str, dict[str, Any]] | None:
        """The artifact of the same stage and name on disk whose spec differs from ``art``'s in the fewest
        fields (the newest among equals), as (``<name>-<key>``, spec); None when there is none."""
        best: tuple[tuple[int, float], str, dict[str, Any]] | None = None
        for key, path in self.on_disk(art.stage, art.name):
            if key == art.key:
                continue
            spec = self._read_spec(path)
            if spec is None:
                continue
            rank = (len(leaf_diff(art.spec, spec)), -path.stat().st_mtime)
            if best is None or rank < best[0]:
                best = (rank, path.parent.name, spec)
        return None if best is None else (best[1], best[2])

    def diff(self, art: Any, old_key: str, old: dict[str, Any]) -> Changes:
        """What makes the planned ``art`` differ from the artifact ``old`` (key ``old_key``), up the chain."""
        memo = (art.key, old_key)
        if memo in self._memo:
            return self._memo[memo]
        out = Changes()
        self._memo[memo] = out  # a spec chain has no cycles; this only guards against a corrupt one
        ctx = self.contexts.get(art.key, {})
        diffs = leaf_diff(art.spec, old)
        changed_paths = {p for p, _ in diffs}
        for path, both in diffs:
            kind, value = spec_source(self.cfg, art.stage, ctx, path, both)
            if kind == KEY:
                out.keys.add(value)
            elif kind == FILE:
                out.files.add(str(value))
            elif kind == CODE:
                out.code.add(value)
            elif kind == DERIVED:
                primary, also = value
                if not any(p in changed_paths for p in also):
                    out.keys.add(primary)
            elif kind == UPSTREAM:
                out.update(self._upstream(_get(art.spec, path), _get(old, path)))
            elif kind == CONSTANT:  # fixed by stage and name: only a change of the plan's code moves it
                out.code.add(f"src/cpt_scaling/plan/{_builder(value)}.py ({value})")
            else:
                out.notes.add(f"{value} (no config key known)")
        return out

    def _upstream(self, new_key: Any, old_key: Any) -> Changes:
        up = self.plan.artifact(new_key) if isinstance(new_key, str) else None
        if up is None or not isinstance(old_key, str):
            return Changes(notes={"upstream artifact replaced"})
        path = self.by_key(up.stage, old_key)
        spec = self._read_spec(path) if path is not None else None
        if spec is None:
            return Changes(notes={f"{up.stage}/{up.name}: the old artifact {old_key} is not on disk"})
        return self.diff(up, old_key, spec)


def _get(obj: Any, path: Path_) -> Any:
    for p in path:
        obj = obj[p]
    return obj


# -- params of jobs without a key ------------------------------------------------------------------------------
def _parse_param(text: str) -> Any:
    """A serialized Snakemake param (a repr) as a JSON value; a canonical-JSON string param is decoded."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return None
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def config_paths_of(cfg: Any, value: Any, path: Path_ = ()) -> list[Path_]:
    """Paths of the config subtrees equal to ``value`` (dicts and lists only)."""
    out: list[Path_] = []
    if isinstance(cfg, dict | list) and canonical_json(cfg) == canonical_json(value):
        out.append(path)
    if isinstance(cfg, dict):
        for k, v in cfg.items():
            out += config_paths_of(v, value, (*path, k))
    return out


#: An artifact's content key in a path or name (``<name>-<16 hex digits>``).
ARTIFACT_KEY = re.compile(r"-[0-9a-f]{16}\b")


def params_changes(cfg: Mapping[str, Any], rule: str, old: Sequence[str], new: Sequence[str]) -> Changes:
    """Config keys behind a rule's changed params: each new param that is a copy of one config section is
    diffed against the old param of the same shape. Params that differ only in the content keys of the artifacts
    they name (e.g. the training-curve jobs' run directories) add nothing: those artifacts' own changes explain
    them."""
    out = Changes()
    if sorted(ARTIFACT_KEY.sub("-<key>", t) for t in old) == sorted(ARTIFACT_KEY.sub("-<key>", t) for t in new):
        return out
    olds = [v for v in (_parse_param(t) for t in old) if v is not None]
    for text in new:
        value = _parse_param(text)
        where = config_paths_of(cfg, value) if isinstance(value, dict | list) else []
        match = [o for o in olds if type(o) is type(value)]
        if isinstance(value, dict):  # the old copy of the same section: the one sharing most of its keys
            match = [o for o in match if len(set(o) & set(value)) * 2 > len(set(o) | set(value))]
        if len(where) != 1 or not match:
            out.notes.add(f"params of rule {rule}")
            continue
        prefix = ".".join(str(p) for p in where[0])
        best = min(match, key=lambda o: len(leaf_diff(value, o)))
        out.keys |= {dotted(prefix, p) for p, _ in leaf_diff(value, best)} or {prefix}
    if old and not new:
        out.notes.add(f"params of rule {rule}")
    return out


# -- the report ------------------------------------------------------------------------------------------------
def explain_jobs(plan: Any, jobs: Sequence[PlannedJob], workdir: str | Path = ".") -> list[JobExplanation]:
    """Explain each planned job (``jobs`` in any order; dependencies are ids among them)."""
    root = Path(plan.root)
    explainer = Explainer(plan, root if root.is_absolute() else Path(workdir) / root)
    by_id = {j.jobid: j for j in jobs}
    done: dict[int, tuple[Changes, JobExplanation, frozenset[int]]] = {}

    def visit(job: PlannedJob) -> tuple[Changes, JobExplanation, frozenset[int]]:
        """(what changed, the explanation, the new keyed jobs among this job and its planned inputs)."""
        if job.jobid in done:
            return done[job.jobid]
        changes, nearest, artifact, notes = Changes(), None, None, set()
        new: frozenset[int] = frozenset()
        if job.key is not None:
            art = plan.artifact(job.key)
            artifact = f"{art.stage}/{art.name}-{art.key}"
            if (explainer.root / art.stage / f"{art.name}-{art.key}" / "spec.json").is_file():
                status = "rerun"
            else:
                found = explainer.nearest(art)
                if found is None:
                    status, new = "new", frozenset({job.jobid})
                else:
                    nearest = f"{art.stage}/{found[0]}"
                    changes = explainer.diff(art, found[0].rsplit("-", 1)[1], found[1])
                    status = "changed"
        else:
            for d in job.deps:
                dep_changes, _, dep_new = visit(by_id[d])
                changes.update(dep_changes)
                new |= dep_new
            if job.params_new or job.params_old:
                changes.update(params_changes(plan.cfg, job.rule, job.params_old, job.params_new))
            status = "changed" if changes else "new" if new or "Missing output" in job.reason else "rerun"
            if new:
                notes.add(f"reads {len(new)} new artifact(s)")
            if job.rule in DECIDE_RULES:  # a dry run sees the first round only
                notes.add(plan.decide_summary())
        result = JobExplanation(job.jobid, job.rule, job.output, artifact, status, nearest,
                                tuple(sorted(changes.keys)), tuple(sorted(changes.files)),
                                tuple(sorted(changes.code)), tuple(sorted(changes.notes | notes)), job.reason)
        done[job.jobid] = (changes, result, new)
        return done[job.jobid]

    return [visit(j)[1] for j in sorted(jobs, key=lambda j: j.jobid)]


def format_table(explained: Sequence[JobExplanation], max_rows: int = 500) -> str:
    """An aligned table: rule, job, status, what changed, the artifact compared with."""
    if not explained:
        return "nothing to run"
    head = ("rule", "job", "status", "changed", "compared with")
    rows = [(e.rule, _label(e), e.status, ", ".join(c for c in e.changed if not _is_rounds(c)) or "-",
             e.nearest or "-") for e in explained[:max_rows]]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    out = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
           for r in [head, tuple("-" * w for w in widths), *rows]]
    if len(explained) > max_rows:
        out.append(f"... {len(explained) - max_rows} more jobs (see --json)")
    counts = {s: sum(e.status == s for e in explained) for s in ("new", "changed", "rerun")}
    out += ["", f"jobs that would run: {len(explained)} ({counts['new']} new, {counts['changed']} changed, "
            f"{counts['rerun']} rerun for other reasons)"]
    keys = sorted({k for e in explained for k in (*e.keys, *e.files, *e.code)})
    if keys:
        out.append("changed: " + ", ".join(keys))
    out += sorted({n for e in explained for n in e.notes if _is_rounds(n)})
    return "\n".join(out)


def _is_rounds(note: str) -> bool:
    """Whether a note is the decision target's cost line (``Plan.decide_summary``),
    printed once below the table rather than in a job's row."""
    return note.startswith("decision ") and "rounds: up to" in note


def _label(e: JobExplanation) -> str:
    if e.artifact:
        return e.artifact
    return e.output


def to_json(explained: Sequence[JobExplanation]) -> dict[str, Any]:
    """A JSON-able report: one entry per job and the union of what changed."""
    jobs = [{"jobid": e.jobid, "rule": e.rule, "output": e.output, "artifact": e.artifact, "status": e.status,
             "nearest": e.nearest, "keys": list(e.keys), "files": list(e.files), "code": list(e.code),
             "notes": list(e.notes), "reason": e.reason} for e in explained]
    return {"jobs": jobs, "keys": sorted({k for e in explained for k in e.keys}),
            "files": sorted({f for e in explained for f in e.files}),
            "code": sorted({c for e in explained for c in e.code})}


# -- the dry run -----------------------------------------------------------------------------------------------
def dry_run(targets: Sequence[str], *, snakefile: str | Path, workdir: str | Path,
            configfiles: Sequence[str | Path] = (), profile: Mapping[str, Any] | None = None
            ) -> tuple[list[PlannedJob], Any]:
    """The jobs ``snakemake -n TARGETS`` would run, with Snakemake's reasons, and the workflow's plan."""
    from cpt_scaling.dryrun.cost_report import dry_run_dag

    with dry_run_dag(targets, snakefile=snakefile, workdir=workdir, configfiles=configfiles,
                     profile=profile) as (workflow, dag, needrun):
        ids = {job: i for i, job in enumerate(needrun)}
        jobs = []
        for job in needrun:
            reason = dag.reason(job)
            params = reason.params_changed
            jobs.append(PlannedJob(
                ids[job], job.rule.name, str(job.output[0]) if job.output else job.rule.name,
                job.wildcards_dict.get("key"), tuple(sorted(ids[d] for d in dag.dependencies[job] if d in ids)),
                str(reason), tuple(sorted(getattr(params, "only_old", ()) or ())),
                tuple(sorted(getattr(params, "only_new", ()) or ()))))
        return jobs, workflow.globals["PLAN"]


def explain(targets: Sequence[str] = (), *, snakefile: str | Path, workdir: str | Path = ".",
            configfiles: Sequence[str | Path] = (), profile: str | Path | None = None) -> list[JobExplanation]:
    """Explain every job a dry run of ``targets`` (default: the workflow's default target) would run."""
    from cpt_scaling.dryrun.cost_report import read_profile

    jobs, plan = dry_run(targets, snakefile=snakefile, workdir=workdir, configfiles=configfiles,
                         profile=read_profile(profile))
    return explain_jobs(plan, jobs, Path(workdir).resolve())
