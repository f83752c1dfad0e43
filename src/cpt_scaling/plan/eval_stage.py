"""The evaluation stage of the plan: held-out loss of every run's checkpoints per suite, and the exam jobs."""

from __future__ import annotations

from typing import Any

from cpt_scaling.config.names import GENERAL, SPLIT_SEP
from cpt_scaling.cost import model as cost
from cpt_scaling.evaluate.exams import ExamSpec
from cpt_scaling.evaluate.jobs import EvalJob, ExamJob
from cpt_scaling.plan.artifact import Artifact, raw, relative_to_cwd


class EvalStage:
    """Builds the evaluation and exam artifacts of a :class:`~cpt_scaling.plan.sweep.Plan` (a mixin: the plan
    builds them on first use, ``Plan._ensure_evals``)."""

    def n_params(self, size: str) -> int:
        """Non-embedding parameters ``N`` of a size, exact for its architecture (:mod:`cpt_scaling.cost.model`)."""
        return cost.size_non_embedding_params(self.cfg["models"]["sizes"][size])

    def _eval_stage(self) -> None:
        pre_tokens = self.cfg["pretrain"]["tokens"]
        self.base_evals: dict[str, Artifact] = {}
        for size, base in self.base_init.items():
            if base["init"].kind == "checkpoint":  # a local base model: evaluated like a run's checkpoint
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
            self._cpt_evals(size, domain, ratio, tokens, run)
        for (size, tokens), run in self.generalist.items():  # pool generalists: one job per suite, like r = 0
            meta = {"kind": "generalist", "size": size, "N": self.n_params(size), "domain": None, "ratio": None,
                    "budget": tokens, "pretrain_tokens": 0 if size not in self.pretrain else pre_tokens}
            if run.key in self.curve_of:
                meta |= {"run": self.curve_of[run.key], "budget": None}
            for corpus in [GENERAL, *self.specialization_domains]:
                self._eval(run, [corpus], meta)

        cpt_runs = {a.key for a in self.cpt.values()}
        for (size, domain, branch, tokens), run in self.split.items():
            meta = {"kind": "cpt" if run.key in cpt_runs else "split", "size": size, "N": self.n_params(size),
                    "domain": domain,
                    "ratio": self.cfg["studies"]["split"]["ratio"], "budget": tokens, "pretrain_tokens": branch}
            if self.pretrain_branches:  # a split curve's branch off trunk state P = branch: D counts from P
                meta |= {"run": self.curve_of[run.key], "budget": None, "start_tokens": branch}
            self._eval(run, [domain, GENERAL], meta)

    def _cpt_evals(self, size: str, domain: str, ratio: float, tokens: int, run: Artifact,
                   registry: dict[str, Artifact] | None = None) -> list[Artifact]:
        """The evaluations of one continued-pretraining run of ``domain`` on its suite and the general one."""
        base_tokens = 0 if size not in self.pretrain else self.cfg["pretrain"]["tokens"]
        meta = {"kind": "cpt", "size": size, "N": self.n_params(size), "domain": domain if ratio > 0 else None,
                "ratio": ratio, "budget": tokens, "pretrain_tokens": base_tokens}
        if run.key in self.curve_of:  # a WSD branch: its annealed end is one point of its trunk's curve
            meta |= {"run": self.curve_of[run.key], "budget": None}
        if ratio > 0:
            return [self._eval(run, [domain, GENERAL], meta, registry=registry)]
        # shared by every domain: one job per suite keeps domains independent
        return [self._eval(run, [domain], meta, registry=registry), self._eval(run, [GENERAL], meta, registry=registry)]

    def _eval(self, run: Artifact | None, corpora: list[str], meta: dict[str, Any],
              base: tuple[str, dict[str, Any]] | None = None,
              registry: dict[str, Artifact] | None = None) -> Artifact:
        """Loss of every checkpoint of ``run`` (or of the local base model ``base`` = (size, base init)) on the
        held-out suites of ``corpora`` (one job, one model load per checkpoint); kept in ``registry`` (default:
        the sweep's evaluations, :attr:`evals`)."""
        suites = {c: self.shards[c] for c in corpora}
        if run is not None:
            source, name, target = {"run": run.key}, run.name, {"run_dir": run.ref(), "checkpoint_dir": None}
        else:
            assert base is not None
            size, init = base
            source, name = {"base": init["spec"]}, f"base-{size}"
            target = {"run_dir": None, "checkpoint_dir": init["init"].path}
        art = Artifact(
            "eval", f"{name}--{'+'.join(corpora)}",
            self._spec("eval", **source, suites={c: a.key for c, a in suites.items()},
                       batch_size=self.cfg["evaluate"]["batch_size"]),
            self.root,
            job=EvalJob(**target, corpora=corpora,
                        suites={f"{c}{SPLIT_SEP}{split}": a.ref(f"{fname}.parquet") for c, a in suites.items()
                                for split, fname in (("test", "heldout"), ("val", "validation"))},
                        batch_size=self.cfg["evaluate"]["batch_size"], meta={"run": name, **meta}),
        )
        if registry is None:
            assert self._evals is not None
            registry = self._evals
        registry[art.key] = art
        return self._add(art)

    def _exam_stage(self) -> None:
        """One exam job per evaluated training run and per local base model: every checkpoint on every exam of
        ``evaluate.exams`` (lm-eval task YAMLs, or lm-eval tasks by name over a local data copy; their files are
        raw inputs)."""
        specs = {name: ExamSpec.parse(entry, f"evaluate.exams.{name}")
                 for name, entry in sorted(self.cfg["evaluate"]["exams"].items())}
        files = {name: _exam_files(spec, f"evaluate.exams.{name}") for name, spec in specs.items()}
        digests: dict[str, Any] = {name: [self.digests.digest(f) for f in fs] for name, fs in files.items()}
        for name, spec in specs.items():  # a plain YAML keeps its old key; a named or few-shot exam adds its terms
            if spec.task is not None or spec.num_fewshot:
                digests[name] = {"task": spec.task, "num_fewshot": spec.num_fewshot, "files": digests[name]}
        exams = {name: _exam_ref(spec, files[name]) for name, spec in specs.items()}
        bases = {a.key for a in self.base_evals.values()}
        for ev in list(self._evals.values()):
            run_key = ev.spec.get("run")
            assert isinstance(ev.job, EvalJob)
            if run_key is None and ev.key not in bases:
                continue
            if run_key is not None:
                run = self.artifact(run_key)
                source, name, target = {"run": run_key}, run.name, {"run_dir": run.ref(), "checkpoint_dir": None}
            else:
                source, name = {"base": ev.spec["base"]}, ev.job.meta["run"]
                target = {"run_dir": None, "checkpoint_dir": ev.job.checkpoint_dir}
            art = Artifact(
                "exam", name,
                self._spec("exam", **source, tokenizer=self.tokenizer.key, exams=digests,
                           batch_size=self.cfg["evaluate"]["batch_size"]),
                self.root,
                job=ExamJob(**target, tokenizer_dir=self.tokenizer.ref(),
                            exams=exams,  # a task YAML and the data files it names, or a named task's data
                            batch_size=self.cfg["evaluate"]["batch_size"], meta=ev.job.meta),
            )
            if art.key not in self._exams:
                self._exams[art.key] = self._add(art)
                self.exam_eval[art.key] = ev.key


def _exam_ref(spec: ExamSpec, files: list[str]) -> Any:
    """An exam's entry in the job description, its files marked as the job's raw inputs."""
    value = spec.to_job(files)
    if isinstance(value, str):
        return raw(*files)
    key = "yaml" if spec.yaml is not None else "data_dir"
    return {**value, key: raw(value[key], *files)}


def _exam_files(spec: ExamSpec, where: str) -> list[str]:
    """An exam's raw inputs as job paths: a task YAML as the config names it, data files relative to the working
    directory where they lie below it."""
    files = spec.files(where)
    if spec.yaml is not None:
        return [spec.yaml, *(relative_to_cwd(f) for f in files[1:])]
    return [relative_to_cwd(f) for f in files]
