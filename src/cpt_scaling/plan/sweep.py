"""The sweep plan: every artifact of a config, with its key, path and the job that makes it.

Built once per parse from the normalised config alone (plus cached digests of raw inputs), so the DAG never needs
Snakemake checkpoints to know a path. Rules look artifacts up by key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from cpt_scaling.config.load import GENERAL, SPLIT_SEP
from cpt_scaling.core.keys import DigestCache, canonical_json, key_of
from cpt_scaling.cost import model as cost
from cpt_scaling.cost import resources
from cpt_scaling.train.schedule import warmup_steps, wsd_decay_start

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
    job: dict[str, Any] = field(default_factory=dict, compare=False)

    @cached_property
    def key(self) -> str:
        """Content address of the spec (computed once: specs are never mutated after construction)."""
        return key_of(self.spec)

    @cached_property
    def inputs(self) -> tuple[str, ...]:
        """What Snakemake must have made before this artifact's job: the references in its job."""
        return job_inputs(self.job)

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


class Plan:
    """All artifacts of one config, indexed by key."""

    def __init__(self, cfg: dict[str, Any], digests: DigestCache) -> None:
        self.cfg = cfg
        self.root = cfg["artifacts_dir"]
        self.results = cfg["results_dir"]
        self._by_key: dict[str, Artifact] = {}
        self._evals: dict[str, Artifact] | None = None
        self.digests = digests
        self.domains: list[str] = list(cfg["domains"])
        self._data_stage()
        self._train_stage()
        # The evaluation stage (half of all artifacts) is built on first use: a cluster job that trains, which
        # re-parses the workflow, never needs it (bench/bench_dag.py: ~0.3 s of each such job's start-up).

    @property
    def by_key(self) -> dict[str, Artifact]:
        """Every artifact of the sweep, by key."""
        self._ensure_evals()
        return self._by_key

    @property
    def evals(self) -> dict[str, Artifact]:
        """The evaluation artifacts, by key."""
        self._ensure_evals()
        assert self._evals is not None
        return self._evals

    def _ensure_evals(self) -> None:
        if self._evals is None:
            self._evals = {}
            self._exams: dict[str, Artifact] = {}
            self.exam_eval: dict[str, str] = {}  # exam key -> an eval key of the same model (its resources)
            self._eval_stage()
            if self.cfg["evaluate"].get("exams"):
                self._exam_stage()

    # -- helpers -------------------------------------------------------------------------------------------
    def _add(self, art: Artifact) -> Artifact:
        existing = self._by_key.get(art.key)
        if existing is not None and existing.name != art.name:
            raise ValueError(f"key collision between {existing.name} and {art.name}")
        self._by_key[art.key] = art
        return art

    def _spec(self, stage: str, **parts: Any) -> dict[str, Any]:
        return {"stage": stage, "version": STAGE_VERSIONS[stage], **parts}

    # -- data ----------------------------------------------------------------------------------------------
    def _data_stage(self) -> None:
        cfg, data = self.cfg, self.cfg["data"]
        columns = {"text": data["text_column"], "id": data["id_column"]}
        seeds = {label: [self.digests.digest(p) for p in paths] for label, paths in data["seeds"].items()}
        self.classifier = self._add(Artifact(
            "classifier", "fasttext",
            self._spec("classifier", params=cfg["classifier"], seeds=seeds, columns=columns), self.root,
            job={"seed_files": {label: [raw(p) for p in paths] for label, paths in data["seeds"].items()},
                 **cfg["classifier"], "text_column": columns["text"], "id_column": columns["id"]},
        ))
        self.classified: list[Artifact] = []
        for pool_file in data["pool"]:
            stem = Path(pool_file).name.split(".")[0]
            self.classified.append(self._add(Artifact(
                "classified", stem,
                self._spec("classified", classifier=self.classifier.key,
                           pool=self.digests.digest(pool_file), columns=columns), self.root,
                job={"pool_file": raw(pool_file), "model": self.classifier.ref(MAIN_OUTPUT["classifier"]),
                     "text_column": columns["text"], "id_column": columns["id"]},
            )))
        tok = cfg["tokenizer"]
        seed_files: list[str] = [p for paths in data["seeds"].values() for p in paths]
        path = tok["path"]
        if path and tok.get("path_id"):
            # A declared identity stands in for the content digest; the path is read at run time.
            tok_spec = self._spec("tokenizer", path_id=tok["path_id"])
        elif path:
            tok_spec, path = self._spec("tokenizer", path_digest=self.digests.digest(path)), raw(path)
        else:  # trained on the seed files
            tok_spec = self._spec("tokenizer", vocab_size=tok["vocab_size"], seeds=seeds, columns=columns)
            seed_files = [raw(p) for p in seed_files]
        self.tokenizer = self._add(Artifact(
            "tokenizer", f"bpe{tok['vocab_size']}" if not tok["path"] else "local", tok_spec, self.root,
            job={"files": seed_files, "vocab_size": tok["vocab_size"], "path": path, "text_column": columns["text"],
                 "id_column": columns["id"]},
        ))
        self.shards: dict[str, Artifact] = {}
        for corpus in [GENERAL, *self.domains]:
            threshold = cfg["general"]["threshold"] if corpus == GENERAL else cfg["domains"][corpus]["threshold"]
            self.shards[corpus] = self._add(Artifact(
                "shards", corpus,
                self._spec("shards", corpus=corpus, threshold=threshold, params=cfg["shards"],
                           tokenizer=self.tokenizer.key, classified=[a.key for a in self.classified],
                           columns=columns), self.root,
                job={"domain": corpus, "threshold": threshold, "pool_files": [raw(p) for p in data["pool"]],
                     "classified_files": [a.ref(MAIN_OUTPUT["classified"]) for a in self.classified],
                     "tokenizer_path": self.tokenizer.ref(), **cfg["shards"],
                     "text_column": columns["text"], "id_column": columns["id"]},
            ))

    # -- training ------------------------------------------------------------------------------------------
    def vocab_size(self, size: str) -> int:
        """Embedding rows of a size: a checkpoint's own (config.json), else the size's or the tokenizer's."""
        return self.cfg["models"]["sizes"][size]["vocab_size"] or self.cfg["tokenizer"]["vocab_size"]

    def _train_common(self) -> dict[str, Any]:
        t = self.cfg["training"]
        return {"seq_len": self.cfg["shards"]["seq_len"], "batch_size": t["batch_size"],
                "micro_batch_size": t["micro_batch_size"], "seed": t["seed"],
                # ZeRO stage, optimizer offload (DeepSpeed's CPU Adam) and the gradient accumulation dtype change
                # the numerics: in keys. Activation checkpointing does not: it reaches the job as a resource.
                "deepspeed": {"zero_stage": t["zero_stage"], "offload_optimizer": t["offload_optimizer"],
                              "grad_accum_dtype": t["grad_accum_dtype"]},
                "tokenizer": self.tokenizer.dir}

    def _step_tokens(self) -> int:
        return self.cfg["training"]["batch_size"] * self.cfg["shards"]["seq_len"]

    def _train_artifact(self, name: str, spec_parts: dict[str, Any], job: dict[str, Any]) -> Artifact:
        return self._add(Artifact("train", name, self._spec("train", **spec_parts), self.root, job=job))

    def _train_stage(self) -> None:
        cfg = self.cfg
        common = self._train_common()
        general = self.shards[GENERAL]
        self.pretrain: dict[str, Artifact] = {}  # size -> the pretraining run (its final checkpoint: the base)
        self.pretrain_curve: dict[str, dict[int, Artifact]] = {}  # size -> tokens -> run with that checkpoint
        self.base_init: dict[str, dict[str, Any]] = {}
        self.size_of: dict[str, str] = {}  # train artifact key -> model size name (for the cost model)
        self.trained: dict[str, int] = {}  # trunk segment or branch key -> tokens it trains (else: its budget)
        self.curve_of: dict[str, str] = {}  # branch key -> its trunk's name: the run its points belong to
        self.branch_point: dict[str, Artifact] = {}  # branch key -> the trunk segment whose end state it continues
        self.start_tokens: dict[str, int] = {}  # run key -> tokens its initial state had trained (split branches)
        for size, arch in cfg["models"]["sizes"].items():
            model = {k: arch[k] for k in ("n_layers", "d_model", "n_heads", "d_ff")}
            if arch["base_checkpoint"]:
                ckpt = arch["base_checkpoint"]
                if arch.get("base_checkpoint_id"):
                    # A declared identity (e.g. 'Qwen/Qwen2.5-7B@<commit>') stands in for the content
                    # digest: the plan builds without the checkpoint on disk; the path is read at run time.
                    spec = {"checkpoint_id": arch["base_checkpoint_id"]}
                else:
                    spec, ckpt = {"checkpoint": self.digests.digest(ckpt)}, raw(ckpt)
                self.base_init[size] = {"spec": spec, "init": {"kind": "checkpoint", "path": ckpt}}
                continue
            tokens = cfg["pretrain"]["tokens"]
            budgets = checkpoint_schedule(tokens, cfg["pretrain"]["checkpoints"], self._step_tokens())
            if self.pretrain_branches:  # every checkpoint an annealed WSD branch end (Chinchilla's points)
                scratch = {"spec": {"init": "scratch"}, "init": {"kind": "scratch"}}
                run_of = {"vocab_size": self.vocab_size(size), "model": model, "general_shards": general.ref(),
                          "domain_shards": None, "ratio": 0.0}
                self.pretrain_curve[size] = self._wsd_curve(
                    f"pt-{size}", size, scratch, run_of, {"general": general.key, "domain": None},
                    budgets, self._wsd_optimizers(cfg["optimizer"], budgets[-1]), common)
                art = self.pretrain_curve[size][tokens]
            else:
                job = {**common, "vocab_size": self.vocab_size(size), "model": model, "init": {"kind": "scratch"},
                       "general_shards": general.ref(), "domain_shards": None, "ratio": 0.0, "tokens": tokens,
                       "optimizer": cfg["optimizer"], "checkpoint_tokens": budgets}
                art = self._train_artifact(
                    f"pt-{size}", {"job": {k: v for k, v in job.items() if k not in JOB_PATHS},
                                   "general": general.key}, job)
                self.pretrain_curve[size] = dict.fromkeys(budgets, art)
            self.pretrain[size] = art
            self.size_of[art.key] = size
            self.base_init[size] = {"spec": {"pretrain": art.key}, "init": {"kind": "run", "run_dir": art.ref()}}
        self.cpt: dict[tuple[str, str, float, int], Artifact] = {}
        optimizer = dict(cfg["optimizer"])
        if cfg["cpt"]["lr"] is not None:
            optimizer["lr"] = cfg["cpt"]["lr"]
        for size, arch in cfg["models"]["sizes"].items():
            model = {k: arch[k] for k in ("n_layers", "d_model", "n_heads", "d_ff")}
            base = self.base_init[size]
            for domain, dcfg in cfg["domains"].items():
                for ratio in dcfg["ratios"]:
                    if self.branches:
                        runs = self._cpt_branches(size, model, base, domain, ratio, optimizer, common)
                    else:
                        runs = {tokens: self._cpt_run(size, model, base, domain, ratio, tokens, optimizer, common)
                                for tokens in cfg["cpt"]["tokens"]}
                    for tokens, run in runs.items():
                        self.cpt[(size, domain, ratio, tokens)] = run
                        self.size_of[run.key] = size
        self._split_stage(optimizer, common)

    @property
    def pretrain_branches(self) -> bool:
        """Whether pretraining checkpoints are WSD branch ends (annealed) of one trunk per size (the default
        with more than one checkpoint; ``pretrain.budgets: single_run`` keeps one cosine run)."""
        return self.cfg["pretrain"]["budgets"] == "branches" and self.cfg["pretrain"]["checkpoints"] > 1

    @property
    def branches(self) -> bool:
        """Whether CPT budgets are WSD branches of one trunk per (size, domain, ratio): the default with more
        than one budget (``cpt.budgets: separate_runs`` keeps one cosine run per budget)."""
        cpt = self.cfg["cpt"]
        return cpt["budgets"] == "branches" and len(cpt["tokens"]) > 1

    def _wsd_optimizers(self, optimizer: dict[str, Any], warmup_budget: int
                        ) -> tuple[dict[str, Any], dict[str, Any]]:
        """(trunk, branch) optimizer settings: warmup in absolute steps (the same for every budget: that of a
        cosine run of ``warmup_budget`` tokens unless ``cpt.warmup_steps``), then a constant LR on the trunk;
        each branch decays over the last ``cpt.decay_fraction`` of its budget, in ``cpt.decay_shape``."""
        cpt = self.cfg["cpt"]
        warmup = cpt["warmup_steps"]
        if warmup is None:
            warmup = warmup_steps(warmup_budget // self._step_tokens(), optimizer["warmup_fraction"])
        common = {k: v for k, v in optimizer.items() if k not in ("warmup_fraction", "schedule")}
        trunk = {**common, "schedule": "constant", "warmup_steps": warmup}
        branch = {**trunk, "schedule": "wsd", "decay_fraction": cpt["decay_fraction"],
                  "decay_shape": cpt["decay_shape"]}
        return trunk, branch

    def _cpt_branches(self, size: str, model: dict[str, Any], base: dict[str, Any], domain: str, ratio: float,
                      optimizer: dict[str, Any], common: dict[str, Any]) -> dict[int, Artifact]:
        """One WSD trunk per (size, domain, ratio) and a decay branch per budget D off the trunk's state at its
        branch point. The trunk is a chain of segments, one per branch point, each keyed by the trunk and its end
        only: a larger budget added later extends the trunk from its last state, and nothing done reruns."""
        budgets = self.cfg["cpt"]["tokens"]  # the smallest budget sets the warmup: a larger one can be added
        general = self.shards[GENERAL]
        dom = self.shards[domain] if ratio > 0 else None
        run_of = {"vocab_size": self.vocab_size(size), "model": model, "general_shards": general.ref(),
                  "domain_shards": dom.ref() if dom else None, "ratio": ratio}
        label = f"{size}{base.get('label', '')}-{domain if dom else 'general'}-{ratio_label(ratio)}"
        return self._wsd_curve(f"cpt-{label}", size, base, run_of,
                               {"general": general.key, "domain": dom.key if dom else None},
                               budgets, self._wsd_optimizers(optimizer, budgets[0]), common)

    def _wsd_curve(self, name: str, size: str, base: dict[str, Any], run_of: dict[str, Any],
                   data: dict[str, Any], budgets: list[int],
                   optimizers: tuple[dict[str, Any], dict[str, Any]], common: dict[str, Any],
                   start: int = 0, direct: bool = False) -> dict[int, Artifact]:
        """The trunk segments and branches of one WSD curve ``name`` (branch ``<name>-d<D>`` per budget D, trunk
        segments ``trunk-<name>-t<T>``), from ``base`` (whose state is at ``start`` tokens: 0 for a model, a
        trunk's branch point for a curve continuing another trunk); returns the branches by budget.

        A budget whose decay would begin at or before ``start`` decays from ``base`` itself, over all of its
        tokens past ``start`` (``decay_fraction`` = (D - start) / D for that branch). ``direct``: no trunk
        segments, each branch one job from ``base`` (constant LR to its decay, then the decay): for a curve of
        one budget, where a segment would be shared by nothing."""
        trunk_opt, branch_opt = optimizers
        step_tokens = self._step_tokens()
        decays = {tokens: wsd_decay_start(tokens // step_tokens, branch_opt) * step_tokens for tokens in budgets}
        points = {tokens: start if direct else max(start, decay) for tokens, decay in decays.items()}
        segments: dict[int, Artifact] = {}
        previous: Artifact | None = None
        for point in sorted(set(points.values()) - {start}):
            init = base["init"] if previous is None else {"kind": "run_state", "run_dir": previous.ref()}
            job = {**common, **run_of, "init": init, "tokens": point, "optimizer": trunk_opt,
                   "checkpoint_tokens": [point], "keep_final_state": True}
            trunk = {k: v for k, v in job.items() if k not in (*JOB_PATHS, "init")}
            seg = self._train_artifact(f"trunk-{name}-t{point}", {"trunk": trunk, "base": base["spec"], **data}, job)
            self.trained[seg.key] = point - (previous.job["tokens"] if previous else start)
            self.size_of[seg.key] = size
            segments[point] = previous = seg
        runs: dict[int, Artifact] = {}
        for tokens, point in points.items():
            if point == start:  # from the base's own state; all of it a decay when the decay starts before it
                opt = (branch_opt if decays[tokens] > start
                       else {**branch_opt, "decay_fraction": (tokens - start) / tokens})
                job = {**common, **run_of, "init": base["init"], "tokens": tokens, "optimizer": opt,
                       "checkpoint_tokens": [tokens]}
                branch = {k: v for k, v in job.items() if k not in (*JOB_PATHS, "init")}
                runs[tokens] = self._train_artifact(f"{name}-d{tokens}", {"branch": branch, "base": base["spec"],
                                                    **data}, job)
            else:
                seg = segments[point]
                job = {**common, **run_of, "init": {"kind": "run_state", "run_dir": seg.ref()}, "tokens": tokens,
                       "optimizer": branch_opt, "checkpoint_tokens": [tokens]}
                branch = {k: v for k, v in job.items() if k not in (*JOB_PATHS, "init")}
                runs[tokens] = self._train_artifact(f"{name}-d{tokens}", {"branch": branch, "trunk": seg.key},
                                                    job)
                self.branch_point[runs[tokens].key] = seg
            self.trained[runs[tokens].key] = tokens - point
            self.size_of[runs[tokens].key] = size
            self.curve_of[runs[tokens].key] = name
        return runs

    def _split_stage(self, optimizer: dict[str, Any], common: dict[str, Any]) -> None:
        """Split study: every pretraining checkpoint D branched into specialisation runs of D' tokens per domain.

        With pretraining branches (WSD), a split curve continues the pretraining trunk's full state (weights,
        optimizer, RNG, step) at each budget's branch point P, at constant LR on the study's mixture, and
        decays per D' like any WSD curve: the run "pretrain P, specialise D'" is the pretraining run of P + D'
        tokens whose last D' tokens are domain data. With one cosine pretraining run, each checkpoint is
        specialised by a fresh CPT run; the branch from the final checkpoint with a D-CPT budget is the D-CPT
        run itself (same key)."""
        self.split: dict[tuple[str, str, int, int], Artifact] = {}
        study = self.cfg["studies"]["split"]
        if not study["enabled"]:
            return
        spec_tokens = study["spec_tokens"] or self.cfg["cpt"]["tokens"]
        for size, curve in self.pretrain_curve.items():
            model = self.pretrain[size].job["model"]
            if self.pretrain_branches:
                for domain in self.split_domains:
                    self._split_curves(size, model, curve, domain, spec_tokens, common)
                continue
            final = max(curve)
            for branch, pre in curve.items():
                if branch == final:
                    base = self.base_init[size]
                else:  # an intermediate checkpoint of the single cosine pretraining run
                    base = {"spec": {"pretrain": pre.key, "branch_tokens": branch},
                            "init": {"kind": "run", "run_dir": pre.ref(), "tokens": branch}, "label": f"-p{branch}"}
                for domain in self.split_domains:
                    for tokens in spec_tokens:
                        run = self._cpt_run(size, model, base, domain, study["ratio"], tokens, optimizer, common)
                        self.split[(size, domain, branch, tokens)] = run
                        self.size_of[run.key] = size

    def _split_curves(self, size: str, model: dict[str, Any], curve: dict[int, Artifact], domain: str,
                      spec_tokens: list[int], common: dict[str, Any]) -> None:
        """The split curves of one size and domain off its pretraining trunk (see :meth:`_split_stage`)."""
        ratio = self.cfg["studies"]["split"]["ratio"]
        general, dom = self.shards[GENERAL], self.shards[domain]
        run_of = {"vocab_size": self.vocab_size(size), "model": model, "general_shards": general.ref(),
                  "domain_shards": dom.ref(), "ratio": ratio}
        optimizers = self._wsd_optimizers(self.cfg["optimizer"], max(curve))  # the pretraining curve's
        trunk = [self.branch_point[a.key] for a in curve.values() if a.key in self.branch_point]
        for seg in {a.key: a for a in trunk}.values():
            point = seg.job["tokens"]
            base = {"spec": {"pretrain_trunk": seg.key}, "init": {"kind": "run_state", "run_dir": seg.ref()}}
            runs = self._wsd_curve(f"split-{size}-p{point}-{domain}-{ratio_label(ratio)}", size, base, run_of,
                                   {"general": general.key, "domain": dom.key},
                                   [point + tokens for tokens in spec_tokens], optimizers, common, start=point,
                                   direct=len(spec_tokens) == 1)
            for total, run in runs.items():
                self.split[(size, domain, point, total - point)] = run
                self.start_tokens[run.key] = point

    @property
    def chinchilla_enabled(self) -> bool:
        """Whether the Chinchilla study has data: pretraining runs, i.e. sizes trained from scratch."""
        return bool(self.pretrain)

    def unavailable_studies(self) -> dict[str, str]:
        """Studies that this config cannot feed, each with the reason and the config keys that would enable it.

        Both need pretraining runs of ours: Chinchilla fits them, the split study branches from their
        checkpoints. A sweep whose every size continues from a local checkpoint has none.
        """
        if self.pretrain:
            return {}
        reason = ("needs pretraining runs, but every size continues from models.sizes.<name>.base_checkpoint; "
                  "add a size trained from scratch (n_layers, d_model, n_heads, d_ff and no base_checkpoint) "
                  "to run it")
        studies = {"chinchilla": f"the Chinchilla study {reason}"}
        if self.cfg["studies"]["split"]["enabled"]:
            studies["split"] = f"the split study (studies.split.enabled) {reason}"
        return studies

    @property
    def split_domains(self) -> list[str]:
        """Domains of the split study; none without pretraining runs (it branches from their checkpoints)."""
        study = self.cfg["studies"]["split"]
        if not study["enabled"] or not self.pretrain:
            return []
        return [d for d in self.domains if study["domains"] is None or d in study["domains"]]

    @property
    def cross_domain_enabled(self) -> bool:
        """Whether the cross-domain study runs: enabled and at least two domains to learn across."""
        return self.cfg["studies"]["cross_domain"]["enabled"] and len(self.domains) >= 2

    @property
    def specialization_domains(self) -> list[str]:
        """Domains whose sweep has both a ratio-0 (generalist) and the specialist ratio."""
        study = self.cfg["studies"]["specialization"]
        if not study["enabled"]:
            return []
        wanted = {0.0, study["specialist_ratio"]}
        return [d for d, c in self.cfg["domains"].items() if wanted <= set(c["ratios"])]

    def _cpt_run(self, size: str, model: dict[str, Any], base: dict[str, Any], domain: str, ratio: float,
                 tokens: int, optimizer: dict[str, Any], common: dict[str, Any]) -> Artifact:
        """One continued-pretraining run. A ratio-0 run never reads domain data, so its key (and its artifact)
        is shared by every domain."""
        general = self.shards[GENERAL]
        dom = self.shards[domain] if ratio > 0 else None
        job = {**common, "vocab_size": self.vocab_size(size), "model": model, "init": base["init"],
               "general_shards": general.ref(),
               "domain_shards": dom.ref() if dom else None, "ratio": ratio, "tokens": tokens,
               "optimizer": optimizer,
               "checkpoint_tokens": checkpoint_schedule(tokens, self.cfg["cpt"]["checkpoints"],
                                                        self._step_tokens())}
        stable = {k: v for k, v in job.items() if k not in (*JOB_PATHS, "init")}
        label = domain if dom else "general"
        name = f"cpt-{size}{base.get('label', '')}-{label}-{ratio_label(ratio)}-d{tokens}"
        return self._train_artifact(
            name, {"job": stable, "base": base["spec"], "general": general.key, "domain": dom.key if dom else None},
            job)

    # -- evaluation ----------------------------------------------------------------------------------------
    def n_params(self, size: str) -> int:
        """Non-embedding parameters ``N`` of a size, exact for its architecture (:mod:`cpt_scaling.cost.model`)."""
        return cost.size_non_embedding_params(self.cfg["models"]["sizes"][size])

    def _eval_stage(self) -> None:
        pre_tokens = self.cfg["pretrain"]["tokens"]
        self.base_evals: dict[str, Artifact] = {}
        for size, base in self.base_init.items():
            if base["init"]["kind"] == "checkpoint":  # a local base model: evaluated like a run's checkpoint
                meta = {"kind": "base", "size": size, "N": self.n_params(size), "domain": None, "ratio": None,
                        "budget": 0, "pretrain_tokens": 0}
                self.base_evals[size] = self._eval(None, [GENERAL, *self.domains], meta, base=(size, base))
        for size, curve in self.pretrain_curve.items():
            for run in {a.key: a for a in curve.values()}.values():
                meta = {"kind": "pretrain", "size": size, "N": self.n_params(size), "domain": None, "ratio": None,
                        "budget": pre_tokens, "pretrain_tokens": 0}
                if run.key in self.curve_of:  # a WSD branch end: one annealed point of the size's curve
                    meta |= {"run": self.curve_of[run.key], "budget": None}
                for corpus in [GENERAL, *self.domains]:
                    self._eval(run, [corpus], meta)
        for (size, domain, ratio, tokens), run in self.cpt.items():
            base_tokens = 0 if size not in self.pretrain else pre_tokens
            meta = {"kind": "cpt", "size": size, "N": self.n_params(size), "domain": domain if ratio > 0 else None,
                    "ratio": ratio, "budget": tokens, "pretrain_tokens": base_tokens}
            if run.key in self.curve_of:  # a WSD branch: its annealed end is one point of its trunk's curve
                meta |= {"run": self.curve_of[run.key], "budget": None}
            if ratio > 0:
                self._eval(run, [domain, GENERAL], meta)
            else:  # shared by every domain: one job per suite keeps domains independent
                self._eval(run, [domain], meta)
                self._eval(run, [GENERAL], meta)

        cpt_runs = {a.key for a in self.cpt.values()}
        for (size, domain, branch, tokens), run in self.split.items():
            meta = {"kind": "cpt" if run.key in cpt_runs else "split", "size": size, "N": self.n_params(size),
                    "domain": domain,
                    "ratio": self.cfg["studies"]["split"]["ratio"], "budget": tokens, "pretrain_tokens": branch}
            if run.key in self.start_tokens:  # a split curve's branch: D counts the tokens past its branch point
                meta |= {"run": self.curve_of[run.key], "budget": None, "start_tokens": self.start_tokens[run.key]}
            self._eval(run, [domain, GENERAL], meta)

    def _eval(self, run: Artifact | None, corpora: list[str], meta: dict[str, Any],
              base: tuple[str, dict[str, Any]] | None = None) -> Artifact:
        """Loss of every checkpoint of ``run`` (or of the local base model ``base`` = (size, base init)) on the
        held-out suites of ``corpora`` (one job, one model load per checkpoint)."""
        suites = {c: self.shards[c] for c in corpora}
        if run is not None:
            source, name, target = {"run": run.key}, run.name, {"run_dir": run.ref()}
        else:
            assert base is not None
            size, init = base
            source, name = {"base": init["spec"]}, f"base-{size}"
            target = {"checkpoint_dir": init["init"]["path"]}
        art = Artifact(
            "eval", f"{name}--{'+'.join(corpora)}",
            self._spec("eval", **source, suites={c: a.key for c, a in suites.items()},
                       batch_size=self.cfg["evaluate"]["batch_size"]),
            self.root,
            job={**target, "corpora": corpora,
                 "suites": {f"{c}{SPLIT_SEP}{split}": a.ref(f"{fname}.parquet") for c, a in suites.items()
                            for split, fname in (("test", "heldout"), ("val", "validation"))},
                 "batch_size": self.cfg["evaluate"]["batch_size"], "meta": {"run": name, **meta}},
        )
        assert self._evals is not None
        self._evals[art.key] = art
        return self._add(art)

    def _exam_stage(self) -> None:
        """One exam job per evaluated training run and per local base model: every checkpoint on every exam of
        ``evaluate.exams`` (lm-eval task YAMLs; their data files are raw inputs)."""
        from cpt_scaling.evaluate.exams import load_task

        exams = dict(sorted(self.cfg["evaluate"]["exams"].items()))
        files: dict[str, list[str]] = {}
        for name, path in exams.items():
            task = load_task(Path(path))
            data_files = task.get("dataset_kwargs", {}).get("data_files") or {}
            files[name] = [str(path), *(relative_to_cwd(data_files[s]) for s in sorted(data_files))]
        digests = {name: [self.digests.digest(f) for f in fs] for name, fs in files.items()}
        bases = {a.key for a in self.base_evals.values()}
        for ev in list(self._evals.values()):
            run_key = ev.spec.get("run")
            if run_key is None and ev.key not in bases:
                continue
            if run_key is not None:
                run = self.artifact(run_key)
                source, name, target = {"run": run_key}, run.name, {"run_dir": run.ref()}
            else:
                source, name = {"base": ev.spec["base"]}, ev.job["meta"]["run"]
                target = {"checkpoint_dir": ev.job["checkpoint_dir"]}
            art = Artifact(
                "exam", name,
                self._spec("exam", **source, tokenizer=self.tokenizer.key, exams=digests,
                           batch_size=self.cfg["evaluate"]["batch_size"]),
                self.root,
                job={**target, "tokenizer_dir": self.tokenizer.ref(),
                     "exams": {n: raw(*files[n]) for n in exams},  # a task YAML and the data files it names
                     "batch_size": self.cfg["evaluate"]["batch_size"], "meta": ev.job["meta"]},
            )
            if art.key not in self._exams:
                self._exams[art.key] = self._add(art)
                self.exam_eval[art.key] = ev.key

    # -- queries used by rules -----------------------------------------------------------------------------
    def artifact(self, key: str) -> Artifact:
        art = self._by_key.get(key)
        return art if art is not None else self.by_key[key]

    def job_json(self, key: str) -> str:
        """The job's parameters as a canonical string (Snakemake compares params by repr)."""
        return canonical_json(self.artifact(key).job)

    def outputs(self, stage: str) -> list[str]:
        return [a.output for a in self.by_key.values() if a.stage == stage]

    def dcpt_evals(self, domain: str) -> list[str]:
        """Eval tables a domain's D-CPT fit needs: its CPT runs and the base models, on its suite and general."""
        runs = {a.key for (_, d, _, _), a in self.cpt.items() if d == domain}
        return self._evals_of_runs(runs | {a.key for a in self.pretrain.values()}, {domain, GENERAL})

    def _evals_of_runs(self, runs: set[str], corpora: set[str]) -> list[str]:
        """Eval tables of the given runs on any of ``corpora``, plus the local base models' (every suite)."""
        evals = self.evals  # builds the evaluation stage (and base_evals) on first use
        bases = {a.key for a in self.base_evals.values()}
        return sorted(a.output for a in evals.values()
                      if (a.spec.get("run") in runs and set(a.job["corpora"]) & corpora) or a.key in bases)

    def cross_domain_evals(self) -> list[str]:
        """Eval tables of the cross-domain fit: every domain's D-CPT evaluations."""
        return sorted({path for domain in self.domains for path in self.dcpt_evals(domain)})

    def specialization_evals(self, domain: str) -> list[str]:
        """Eval tables of the specialisation study: base models, generalist (r=0) and specialist runs."""
        ratios = {0.0, self.cfg["studies"]["specialization"]["specialist_ratio"]}
        runs = {a.key for (_, d, r, _), a in self.cpt.items() if d == domain and r in ratios}
        return self._evals_of_runs(runs | {a.key for a in self.pretrain.values()}, {domain, GENERAL})

    def split_evals(self, domain: str) -> list[str]:
        """Eval tables of the split study on the domain: every branch of every pretraining checkpoint, and the
        pretraining checkpoints themselves (the unsplit points, D' = 0)."""
        runs = {a.key for (_, d, _, _), a in self.split.items() if d == domain}
        if runs:
            runs |= {a.key for curve in self.pretrain_curve.values() for a in curve.values()}
        return self._evals_of_runs(runs, {domain})

    def pretrain_evals(self) -> list[str]:
        """Eval tables of the Chinchilla study: the from-scratch pretraining runs on the general suite."""
        runs = {a.key for curve in self.pretrain_curve.values() for a in curve.values()}
        return sorted(a.output for a in self.evals.values()
                      if a.spec.get("run") in runs and GENERAL in a.job["corpora"])

    def all_evals(self) -> list[str]:
        return sorted({a.output for a in self.evals.values()})

    def exam_eval_key(self, key: str) -> str:
        """An evaluation job of the same model as the exam job ``key`` (whose resources it takes)."""
        self._ensure_evals()
        return self.exam_eval[key]

    def all_exams(self) -> list[str]:
        """Score tables of the exam jobs (none unless ``evaluate.exams`` lists exams)."""
        self._ensure_evals()
        return sorted(a.output for a in self._exams.values())

    def train_flops(self, key: str) -> float:
        """Training FLOPs of one run: ``tokens · (6·(N + d·V) + 12·L·d·T)`` (:mod:`cpt_scaling.cost.model`), with the
        size's exact ``N`` and its embedding rows."""
        job = self.artifact(key).job
        arch = self.cfg["models"]["sizes"][self.size_of[key]]
        return self.trained_tokens(key) * cost.size_flops_per_token(arch, job["seq_len"], job["vocab_size"])

    def trained_tokens(self, key: str) -> int:
        """Tokens one training job trains: a run's budget, a trunk segment's or a branch's own stretch."""
        return self.trained.get(key, self.artifact(key).job["tokens"])

    def train_resources(self, key: str) -> dict[str, int | str]:
        """SLURM resources of a training job from the cost model (see :mod:`cpt_scaling.cost.resources`)."""
        return resources.train_resources_of(self, key)

    def train_resource_names(self) -> list[str]:
        """Resource names every training job of this config carries (fixed at parse time)."""
        return resources.train_resource_names(self.cfg["cost"], self.cfg.get("cluster"))


def relative_to_cwd(path: str) -> str:
    """A path relative to the working directory when it lies below it (artifact inputs stay portable)."""
    p, cwd = Path(path).resolve(), Path.cwd().resolve()
    return str(p.relative_to(cwd)) if p.is_relative_to(cwd) else str(path)


def build_plan(cfg: dict[str, Any], cache_file: str | Path = ".snakemake/cpt-scaling-digests.json") -> Plan:
    """The plan of a normalised config; raw-input digests are cached in ``cache_file``."""
    digests = DigestCache(cache_file)
    plan = Plan(cfg, digests)
    digests.save()
    return plan
