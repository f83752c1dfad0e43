"""The plan's queries used by rules and reports: artifacts by key, the studies a config feeds and the eval
tables each needs, training FLOPs and resources."""

from __future__ import annotations

from cpt_scaling.config.names import GENERAL
from cpt_scaling.core.keys import canonical_json
from cpt_scaling.cost import model as cost
from cpt_scaling.cost import resources
from cpt_scaling.laws import LAWS
from cpt_scaling.plan.artifact import Artifact

#: The split study's specialisation term needs this many D' levels spanning this factor (fitted on one level, the
#: demo's law put the whole specialisation gain within ~100 tokens of D' = 0, 650x below that level).
SPLIT_MIN_LEVELS = 3
SPLIT_MIN_SPAN = 8.0


def split_identified(levels: list[int]) -> bool:
    """Whether the nonzero D' levels identify the split law's specialisation term: at least
    :data:`SPLIT_MIN_LEVELS` of them spanning at least :data:`SPLIT_MIN_SPAN` times."""
    return len(levels) >= SPLIT_MIN_LEVELS and max(levels) >= SPLIT_MIN_SPAN * min(levels)


#: Jobs above which the parse warns that the sweep is large (Snakemake's DAG time and memory grow with the jobs:
#: bench/bench_dag.py, bench/RESULTS.md).
LARGE_SWEEP_JOBS = 20_000


class Queries:
    """What rules ask of a :class:`~cpt_scaling.plan.sweep.Plan` (a mixin over its built stages)."""

    # -- studies -------------------------------------------------------------------------------------------
    @property
    def chinchilla_enabled(self) -> bool:
        """Whether the Chinchilla study runs: pretraining runs with two or more annealed budgets per size."""
        return "chinchilla" not in self.unavailable_studies()

    @property
    def dcpt_enabled(self) -> bool:
        """Whether the D-CPT fits are identified by the points ``fit.intermediate_points`` lets them use."""
        return "dcpt" not in self.unavailable_studies()

    def annealed_budgets(self) -> dict[str, int]:
        """Annealed token budgets per run curve that the fits see: ``cpt`` (a WSD branch end or a cosine run's
        last checkpoint per cpt.tokens entry) and ``pretrain`` (each pretraining branch end with
        pretrain.budgets: branches; only the final checkpoint of one cosine run)."""
        pretrain = max((len(c) if self.pretrain_branches else 1 for c in self.pretrain_curve.values()), default=0)
        return {"cpt": len(self.cfg["cpt"]["tokens"]), "pretrain": pretrain}

    def unavailable_studies(self) -> dict[str, str]:
        """Studies that this config cannot feed, each with the reason and the config keys that would enable it
        (keys: the prefix of the study's output names).

        Chinchilla and split need pretraining runs of ours: Chinchilla fits them, the split study branches from
        their checkpoints; a sweep whose every size continues from a local checkpoint has none. The fits use
        annealed points (see fit.intermediate_points in config/schema.yaml): Chinchilla always, so it needs two
        or more annealed pretraining budgets per size; D-CPT and cross-domain (and next_runs, which reads the
        D-CPT fit) unless fit.intermediate_points is true, so they need two or more cpt.tokens. The split fit
        needs at least three D' levels spanning 8x (:func:`split_identified`).
        """
        studies: dict[str, str] = {}
        annealed = self.annealed_budgets()
        if not self.pretrain:
            reason = ("needs pretraining runs, but every size continues from models.sizes.<name>.base_checkpoint; "
                      "add a size trained from scratch (n_layers, d_model, n_heads, d_ff and no base_checkpoint) "
                      "to run it")
            studies["chinchilla"] = f"the Chinchilla study {reason}"
            if self.cfg["studies"]["split"]["enabled"]:
                studies["split"] = f"the split study (studies.split.enabled) {reason}"
        elif annealed["pretrain"] < 2:
            studies["chinchilla"] = (
                "the Chinchilla study fits annealed points only and this config has one per size (pretrain.budgets: "
                f"{self.cfg['pretrain']['budgets']}, pretrain.checkpoints: {self.cfg['pretrain']['checkpoints']}): "
                "the data exponent is not identified; set pretrain.budgets: branches with pretrain.checkpoints >= 2 "
                "to run it")
        elif (points := len(self.pretrain) * annealed["pretrain"]) <= (params := len(LAWS["chinchilla"].params)):
            studies["chinchilla"] = (
                f"the Chinchilla study fits annealed points only and this config has {points} (sizes x "
                f"pretrain.checkpoints = {len(self.pretrain)} x {annealed['pretrain']}), not more than the law's "
                f"{params} parameters; "
                "add sizes trained from scratch or pretrain.checkpoints to run it")
        if annealed["cpt"] < 2 and not self.cfg["fit"]["intermediate_points"]:
            reason = ("fit annealed points only (fit.intermediate_points: false) and cpt.tokens lists one budget: one "
                      "annealed D per run, so the data exponent is not identified; list several cpt.tokens "
                      "(budgets: branches) or set fit.intermediate_points: true")
            studies["dcpt"] = f"the D-CPT study would {reason}"
            if self.cross_domain_wanted:
                studies["cross_domain"] = f"the cross-domain study would {reason}"
            studies["next_runs"] = f"next_runs (reads the D-CPT fit): the D-CPT study would {reason}"
        levels = self.split_levels()
        if self.split_domains and not split_identified(levels):
            span = f", spanning {levels[-1] / levels[0]:.3g}x" if levels else ""
            studies["split"] = (
                f"the split study would fit {len(levels)} specialisation budget(s) D' ({', '.join(map(str, levels))} "
                f"tokens{span}), which do not identify its specialisation term; list at least {SPLIT_MIN_LEVELS} "
                f"studies.split.spec_tokens spanning >= {SPLIT_MIN_SPAN:g}x (empty: cpt.tokens) to run it")
        return studies

    def split_levels(self) -> list[int]:
        """The nonzero specialisation budgets D' the split fit sees: each split run's D' and, with cosine split
        runs (pretrain.budgets: single_run) and fit.intermediate_points, their intermediate checkpoints too."""
        levels = {tokens for (_, _, _, tokens) in self.split}
        if not self.pretrain_branches and self.cfg["fit"]["intermediate_points"]:
            levels |= {t for a in self.split.values() for t in a.job.checkpoint_tokens}
        return sorted(levels)

    @property
    def split_domains(self) -> list[str]:
        """Domains of the split study; none without pretraining runs (it branches from their checkpoints)."""
        study = self.cfg["studies"]["split"]
        if not study["enabled"] or not self.pretrain:
            return []
        return [d for d in self.domains if study["domains"] is None or d in study["domains"]]

    @property
    def cross_domain_wanted(self) -> bool:
        """Whether the cross-domain study is asked for: enabled and at least two domains to learn across."""
        return self.cfg["studies"]["cross_domain"]["enabled"] and len(self.domains) >= 2

    @property
    def cross_domain_enabled(self) -> bool:
        """Whether the cross-domain study runs: asked for, and its D-CPT points identify the law."""
        return self.cross_domain_wanted and "cross_domain" not in self.unavailable_studies()

    @property
    def specialization_domains(self) -> list[str]:
        """Domains whose sweep has the specialist ratio (and the ratio-0 run, for the ``general`` generalist)."""
        if not self.cfg["studies"]["specialization"]["enabled"]:
            return []
        wanted = self._specialization_ratios()
        return [d for d, c in self.cfg["domains"].items() if wanted <= set(c["ratios"])]

    def _specialization_ratios(self) -> set[float]:
        """The CPT ratios the specialisation study reads: the specialist's, and 0 for the ``general`` generalist."""
        study = self.cfg["studies"]["specialization"]
        return {study["specialist_ratio"]} | ({0.0} if study["generalist"] == "general" else set())

    @property
    def pool_generalist(self) -> bool:
        """Whether the specialisation study's generalist continues pretraining on the unfiltered pool (the seed's
        generalist): then the plan has pool shards and one generalist run per size and CPT budget."""
        study = self.cfg["studies"]["specialization"]
        return study["generalist"] == "pool" and bool(self.specialization_domains)

    # -- artifacts and eval tables -------------------------------------------------------------------------
    def artifact(self, key: str) -> Artifact:
        art = self._by_key.get(key)
        return art if art is not None else self.by_key[key]

    def job_json(self, key: str) -> str:
        """The job's parameters as a canonical string (Snakemake compares params by repr)."""
        return canonical_json(self.artifact(key).job_data)

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
                      if (a.spec.get("run") in runs and set(a.job.corpora) & corpora) or a.key in bases)

    def cross_domain_evals(self) -> list[str]:
        """Eval tables of the cross-domain fit: every domain's D-CPT evaluations."""
        return sorted({path for domain in self.domains for path in self.dcpt_evals(domain)})

    def specialization_evals(self, domain: str) -> list[str]:
        """Eval tables of the specialisation study: base models, the generalist (pool or r=0) and specialist runs."""
        ratios = self._specialization_ratios()
        runs = {a.key for (_, d, r, _), a in self.cpt.items() if d == domain and r in ratios}
        runs |= {a.key for a in self.generalist.values()}
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
                      if a.spec.get("run") in runs and GENERAL in a.job.corpora)

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
        return self.trained_tokens(key) * cost.size_flops_per_token(arch, job.seq_len, job.vocab_size)

    def train_gpu_hours(self) -> float:
        """GPU-hours of every training job of the sweep (finished or not) under the plan's cost model; the
        decision target's own candidate runs are not the sweep's (:mod:`~cpt_scaling.plan.decide_stage`)."""
        return sum(resources.gpu_hours(self.train_flops(key), self.cfg["cost"]) for key in self.size_of
                   if key not in self.decide_only)

    def job_counts(self) -> dict[str, int]:
        """Artifacts of the sweep per stage (each is one Snakemake job), the evaluation stage included."""
        counts: dict[str, int] = {}
        sweep_evals = {a.key for a in self.evals.values()}  # builds the evaluation stage, the decision's too
        decide_only = self.decide_only | (set(self.decide_evals) - sweep_evals)  # the decision target's own
        for art in self.by_key.values():
            if art.key not in decide_only:
                counts[art.stage] = counts.get(art.stage, 0) + 1
        return counts

    def size_summary(self) -> tuple[str, str | None]:
        """One line with the sweep's job count per stage and its training GPU-hours, and a warning naming the
        dimensions to cut when it plans more than :data:`LARGE_SWEEP_JOBS` jobs (None otherwise)."""
        counts = self.job_counts()
        total = sum(counts.values())
        parts = ", ".join(f"{n:,} {stage}" for stage, n in sorted(counts.items(), key=lambda kv: -kv[1]))
        training = (f"training {self.train_gpu_hours():,.0f} GPU-hours" if self.cfg["cost"]["gpus_per_job"]
                    else "training on CPUs (cost.gpus_per_job: 0)")
        line = f"this config plans {total:,} artifact jobs ({parts}) besides its fits and figures; {training}"
        if total <= LARGE_SWEEP_JOBS:
            return line, None
        cfg = self.cfg
        ratios = sum(len(d["ratios"]) for d in cfg["domains"].values())
        dims = (f"{len(cfg['models']['sizes'])} sizes x {ratios} (domain, ratio) pairs x {len(cfg['cpt']['tokens'])} "
                "CPT budgets")
        warning = (f"large sweep: {total:,} jobs (more than {LARGE_SWEEP_JOBS:,}) from {dims}; Snakemake's dry run "
                   "and DAG grow with the jobs (bench/bench_dag.py): fewer ratios or budgets (cpt-scaling next "
                   "proposes the informative ones), or one config per domain, plan faster")
        return line, warning

    def trained_tokens(self, key: str) -> int:
        """Tokens one training job trains: a run's budget, a trunk segment's or a branch's own stretch."""
        return self.trained.get(key, self.artifact(key).job.tokens)

    def train_resources(self, key: str) -> dict[str, int | str]:
        """SLURM resources of a training job from the cost model (see :mod:`cpt_scaling.cost.resources`)."""
        return resources.train_resources_of(self, key)

    def train_resource_names(self) -> list[str]:
        """Resource names every training job of this config carries (fixed at parse time)."""
        return resources.train_resource_names(self.cfg["cost"], self.cfg.get("cluster"))
