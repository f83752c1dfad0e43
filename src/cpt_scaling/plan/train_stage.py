"""The training stage of the plan: pretraining runs, continued-pretraining runs and WSD curves (trunk segments
and decay branches)."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from cpt_scaling.config.names import GENERAL, POOL
from cpt_scaling.plan.artifact import Artifact, checkpoint_schedule, keyed_settings, ratio_label, raw
from cpt_scaling.train.schedule import warmup_steps, wsd_decay_start
from cpt_scaling.train.spec_types import DeepSpeedSpec, InitSpec, ModelSpec, OptimizerSpec, TrainSpec


class TrainStage:
    """Builds the training artifacts of a :class:`~cpt_scaling.plan.sweep.Plan` (a mixin: it uses the plan's
    config, digests, data artifacts, ``_add`` and ``_spec``; the split study's runs come from
    :class:`~cpt_scaling.plan.split_study.SplitStudy`)."""

    def vocab_size(self, size: str) -> int:
        """Embedding rows of a size: a checkpoint's own (config.json), else the size's or the tokenizer's."""
        return self.cfg["models"]["sizes"][size]["vocab_size"] or self.cfg["tokenizer"]["vocab_size"]

    def _model(self, size: str) -> ModelSpec:
        """The shape of a size (None where a checkpoint's config.json has it)."""
        arch = self.cfg["models"]["sizes"][size]
        return ModelSpec(arch["n_layers"], arch["d_model"], arch["n_heads"], arch["d_ff"])

    def _train_common(self) -> dict[str, Any]:
        """The :class:`TrainSpec` fields every training job of the sweep shares."""
        t = self.cfg["training"]
        return {"seq_len": self.cfg["shards"]["seq_len"], "batch_size": t["batch_size"],
                "micro_batch_size": t["micro_batch_size"], "seed": t["seed"],
                # ZeRO stage, optimizer offload (DeepSpeed's CPU Adam) and the gradient accumulation dtype change
                # the numerics: in keys. Activation checkpointing does not: it reaches the job as a resource.
                "deepspeed": DeepSpeedSpec(t["zero_stage"], t["offload_optimizer"], t["grad_accum_dtype"]),
                "tokenizer": self.tokenizer.dir}

    def _step_tokens(self) -> int:
        return self.cfg["training"]["batch_size"] * self.cfg["shards"]["seq_len"]

    def _train_artifact(self, name: str, spec_parts: dict[str, Any], job: TrainSpec) -> Artifact:
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
        for size, arch in cfg["models"]["sizes"].items():
            model = self._model(size)
            if arch["base_checkpoint"]:
                ckpt = arch["base_checkpoint"]
                if arch.get("base_checkpoint_id"):
                    # A declared identity (e.g. 'Qwen/Qwen2.5-7B@<commit>') stands in for the content
                    # digest: the plan builds without the checkpoint on disk; the path is read at run time.
                    spec = {"checkpoint_id": arch["base_checkpoint_id"]}
                else:
                    spec, ckpt = {"checkpoint": self.digests.digest(ckpt)}, raw(ckpt)
                self.base_init[size] = {"spec": spec, "init": InitSpec("checkpoint", path=ckpt)}
                continue
            tokens = cfg["pretrain"]["tokens"]
            budgets = checkpoint_schedule(tokens, cfg["pretrain"]["checkpoints"], self._step_tokens())
            if self.pretrain_branches:  # every checkpoint an annealed WSD branch end (Chinchilla's points)
                scratch = {"spec": {"init": "scratch"}, "init": InitSpec("scratch")}
                run_of = {"vocab_size": self.vocab_size(size), "model": model, "general_shards": general.ref(),
                          "domain_shards": None, "ratio": 0.0}
                self.pretrain_curve[size] = self._wsd_curve(
                    f"pt-{size}", size, scratch, run_of, {"general": general.key, "domain": None},
                    budgets, self._wsd_optimizers(OptimizerSpec(**cfg["optimizer"]), budgets[-1]), common)
                art = self.pretrain_curve[size][tokens]
            else:
                job = TrainSpec(**common, vocab_size=self.vocab_size(size), model=model, init=InitSpec("scratch"),
                                general_shards=general.ref(), domain_shards=None, ratio=0.0, tokens=tokens,
                                optimizer=OptimizerSpec(**cfg["optimizer"]), checkpoint_tokens=tuple(budgets))
                art = self._train_artifact(
                    f"pt-{size}", {"job": keyed_settings(job),
                                   "general": general.key}, job)
                self.pretrain_curve[size] = dict.fromkeys(budgets, art)
            self.pretrain[size] = art
            self.size_of[art.key] = size
            self.base_init[size] = {"spec": {"pretrain": art.key}, "init": InitSpec("run", run_dir=art.ref())}
        self.cpt: dict[tuple[str, str, float, int], Artifact] = {}
        optimizer = self._cpt_optimizer()
        for size in cfg["models"]["sizes"]:
            model = self._model(size)
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
        self._generalist_stage(optimizer, common)
        self._split_stage(optimizer, common)

    def _cpt_optimizer(self) -> OptimizerSpec:
        """The optimizer of continued pretraining: ``optimizer`` with ``cpt.lr`` as its peak LR when set."""
        optimizer = OptimizerSpec(**self.cfg["optimizer"])
        lr = self.cfg["cpt"]["lr"]
        return optimizer if lr is None else replace(optimizer, lr=lr)

    def _generalist_stage(self, optimizer: OptimizerSpec, common: dict[str, Any]) -> None:
        """The specialisation study's pool generalists: per size, continued pretraining on the unfiltered pool
        from the same base as the CPT runs (shared by every domain). With ``generalist_tokens_factor`` > 1 the
        generalist is one WSD trunk per size with a decay branch at every CPT budget and at the multiples of the
        largest one that SGER reads (:func:`generalist_budgets`), so every point of its curve is annealed."""
        self.generalist: dict[tuple[str, int], Artifact] = {}  # (size, tokens) -> run
        if not self.pool_generalist:
            return
        factor = self.cfg["studies"]["specialization"]["generalist_tokens_factor"]
        budgets = generalist_budgets(list(self.cfg["cpt"]["tokens"]), factor, self._step_tokens())
        for size in self.cfg["models"]["sizes"]:
            model, base = self._model(size), self.base_init[size]
            if len(budgets) > 1 and self.cfg["cpt"]["budgets"] == "branches":
                runs = self._cpt_branches(size, model, base, POOL, 0.0, optimizer, common, general_corpus=POOL,
                                          budgets=budgets)
            else:
                runs = {tokens: self._cpt_run(size, model, base, POOL, 0.0, tokens, optimizer, common,
                                              general_corpus=POOL) for tokens in budgets}
            for tokens, run in runs.items():
                self.generalist[(size, tokens)] = run
                self.size_of[run.key] = size

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

    def _wsd_optimizers(self, optimizer: OptimizerSpec, warmup_budget: int) -> tuple[OptimizerSpec, OptimizerSpec]:
        """(trunk, branch) optimizer settings: warmup in absolute steps (the same for every budget: that of a
        cosine run of ``warmup_budget`` tokens unless ``cpt.warmup_steps``), then a constant LR on the trunk;
        each branch decays over the last ``cpt.decay_fraction`` of its budget, in ``cpt.decay_shape``."""
        cpt = self.cfg["cpt"]
        warmup = cpt["warmup_steps"]
        if warmup is None:
            warmup = warmup_steps(warmup_budget // self._step_tokens(), float(optimizer.warmup_fraction or 0.0))
        trunk = replace(optimizer, warmup_fraction=None, schedule="constant", warmup_steps=warmup)
        branch = replace(trunk, schedule="wsd", decay_fraction=cpt["decay_fraction"], decay_shape=cpt["decay_shape"])
        return trunk, branch

    def _cpt_branches(self, size: str, model: ModelSpec, base: dict[str, Any], domain: str, ratio: float,
                      optimizer: OptimizerSpec, common: dict[str, Any],
                      general_corpus: str = GENERAL, budgets: list[int] | None = None) -> dict[int, Artifact]:
        """One WSD trunk per (size, domain, ratio) and a decay branch per budget D off the trunk's state at its
        branch point. The trunk is a chain of segments, one per branch point, each keyed by the trunk and its end
        only: a larger budget added later extends the trunk from its last state, and nothing done reruns.
        ``general_corpus``: the shards of the non-domain share (the unfiltered pool for a pool generalist);
        ``budgets``: the branch budgets (default ``cpt.tokens``)."""
        budgets = budgets or self.cfg["cpt"]["tokens"]  # the smallest sets the warmup: a larger one can be added
        general = self.shards[general_corpus]
        dom = self.shards[domain] if ratio > 0 else None
        run_of = {"vocab_size": self.vocab_size(size), "model": model, "general_shards": general.ref(),
                  "domain_shards": dom.ref() if dom else None, "ratio": ratio}
        label = f"{size}{base.get('label', '')}-{domain if dom else general_corpus}-{ratio_label(ratio)}"
        return self._wsd_curve(f"cpt-{label}", size, base, run_of,
                               {"general": general.key, "domain": dom.key if dom else None},
                               budgets, self._wsd_optimizers(optimizer, budgets[0]), common)

    def _wsd_curve(self, name: str, size: str, base: dict[str, Any], run_of: dict[str, Any],
                   data: dict[str, Any], budgets: list[int],
                   optimizers: tuple[OptimizerSpec, OptimizerSpec], common: dict[str, Any],
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
            init = base["init"] if previous is None else InitSpec("run_state", run_dir=previous.ref())
            job = TrainSpec(**common, **run_of, init=init, tokens=point, optimizer=trunk_opt,
                            checkpoint_tokens=(point,), keep_final_state=True)
            trunk = keyed_settings(job, "init")
            seg = self._train_artifact(f"trunk-{name}-t{point}", {"trunk": trunk, "base": base["spec"], **data}, job)
            self.trained[seg.key] = point - (previous.job.tokens if previous else start)
            self.size_of[seg.key] = size
            segments[point] = previous = seg
        runs: dict[int, Artifact] = {}
        for tokens, point in points.items():
            if point == start:  # from the base's own state; all of it a decay when the decay starts before it
                opt = (branch_opt if decays[tokens] > start
                       else replace(branch_opt, decay_fraction=(tokens - start) / tokens))
                job = TrainSpec(**common, **run_of, init=base["init"], tokens=tokens, optimizer=opt,
                                checkpoint_tokens=(tokens,))
                branch = keyed_settings(job, "init")
                runs[tokens] = self._train_artifact(f"{name}-d{tokens}", {"branch": branch, "base": base["spec"],
                                                    **data}, job)
            else:
                seg = segments[point]
                job = TrainSpec(**common, **run_of, init=InitSpec("run_state", run_dir=seg.ref()), tokens=tokens,
                                optimizer=branch_opt, checkpoint_tokens=(tokens,))
                branch = keyed_settings(job, "init")
                runs[tokens] = self._train_artifact(f"{name}-d{tokens}", {"branch": branch, "trunk": seg.key},
                                                    job)
                self.branch_point[runs[tokens].key] = seg
            self.trained[runs[tokens].key] = tokens - point
            self.size_of[runs[tokens].key] = size
            self.curve_of[runs[tokens].key] = name
        return runs

    def _cpt_run(self, size: str, model: ModelSpec, base: dict[str, Any], domain: str, ratio: float,
                 tokens: int, optimizer: OptimizerSpec, common: dict[str, Any],
                 general_corpus: str = GENERAL) -> Artifact:
        """One continued-pretraining run. A ratio-0 run never reads domain data, so its key (and its artifact)
        is shared by every domain. ``general_corpus``: as for :meth:`_cpt_branches`."""
        general = self.shards[general_corpus]
        dom = self.shards[domain] if ratio > 0 else None
        checkpoints = checkpoint_schedule(tokens, self.cfg["cpt"]["checkpoints"], self._step_tokens())
        job = TrainSpec(**common, vocab_size=self.vocab_size(size), model=model, init=base["init"],
                        general_shards=general.ref(), domain_shards=dom.ref() if dom else None, ratio=ratio,
                        tokens=tokens, optimizer=optimizer, checkpoint_tokens=tuple(checkpoints))
        stable = keyed_settings(job, "init")
        label = domain if dom else general_corpus
        name = f"cpt-{size}{base.get('label', '')}-{label}-{ratio_label(ratio)}-d{tokens}"
        return self._train_artifact(
            name, {"job": stable, "base": base["spec"], "general": general.key, "domain": dom.key if dom else None},
            job)


def generalist_budgets(cpt_tokens: list[int], factor: float, step_tokens: int) -> list[int]:
    """The pool generalist's annealed budgets: every CPT budget, then the largest one B times 2, 4, ... and
    ``factor`` itself (each rounded to whole steps), so SGER up to ``factor`` is read between annealed points
    at most a factor 2 apart."""
    largest = max(cpt_tokens)
    multiples = [2.0**k for k in range(1, math.floor(math.log2(factor)) + 1)] + [factor]
    extra = [max(step_tokens, round(m * largest / step_tokens) * step_tokens) for m in multiples if m > 1]
    return sorted(set(cpt_tokens) | set(extra))
