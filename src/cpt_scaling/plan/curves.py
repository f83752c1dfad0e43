"""The training curves of the plan: each evaluated run with the chain of training jobs its log is spread over
(a WSD branch: its trunk's segments, then itself), for ``results/tables/train_curves.csv`` and the per-domain
figures of loss against tokens (:mod:`cpt_scaling.train.curves`, :mod:`cpt_scaling.figures.train_curves`)."""

from __future__ import annotations

from typing import Any

from cpt_scaling.plan.artifact import Artifact

PRETRAIN_GROUP = "pretrain"


class TrainCurves:
    """Training-curve queries of a :class:`~cpt_scaling.plan.sweep.Plan` (a mixin over its training stage)."""

    def train_curve_groups(self) -> list[str]:
        """The figure groups: ``pretrain`` (with pretraining runs of ours), then each domain."""
        return ([PRETRAIN_GROUP] if self.pretrain else []) + list(self.domains)

    def train_curves_job(self, group: str | None = None) -> dict[str, Any]:
        """The runs of one figure group (``pretrain``: the pretraining runs; a domain: its CPT runs, the ratio-0
        ones included; None: every run of the sweep once, pool generalists and split runs too), each ``{run,
        family, kind, size, domain, ratio, segments}``: ``segments`` the directories of the training jobs whose
        logs make the run's curve, first to last (a job continuing another's final state follows it); and ``sizes``,
        the model sizes, smallest first."""
        runs: dict[str, dict[str, Any]] = {}
        by_dir = {a.dir: a for a in self._by_key.values() if a.stage == "train"}
        for kind, domain, art in self._curve_leaves():
            if group is None or group == {"pretrain": PRETRAIN_GROUP, "cpt": domain}.get(kind):
                runs.setdefault(art.name, {
                    "run": art.name, "family": self.curve_of.get(art.key, art.name), "kind": kind,
                    "size": self.size_of[art.key], "domain": domain if art.job.ratio > 0 else None,
                    "ratio": art.job.ratio, "segments": [a.dir for a in _chain(art, by_dir)]})
        sizes = sorted(self.cfg["models"]["sizes"], key=self.n_params)
        return {"runs": [runs[name] for name in sorted(runs)], "sizes": sizes}

    def train_curve_inputs(self, group: str | None = None) -> list[str]:
        """``checkpoints.json`` of every training job in the curves of ``group`` (None: all)."""
        dirs = {d for run in self.train_curves_job(group)["runs"] for d in run["segments"]}
        return sorted(f"{d}/checkpoints.json" for d in dirs)

    def _curve_leaves(self) -> list[tuple[str, str | None, Artifact]]:
        """(kind, domain, run) of every evaluated training run; a ratio-0 CPT run under every domain."""
        leaves = [("pretrain", None, a) for curve in self.pretrain_curve.values() for a in curve.values()]
        leaves += [("cpt", domain, a) for (_, domain, _, _), a in self.cpt.items()]
        leaves += [("generalist", None, a) for a in self.generalist.values()]
        leaves += [("split", domain, a) for (_, domain, _, _), a in self.split.items()]
        return leaves


def _chain(art: Artifact, by_dir: dict[str, Artifact]) -> list[Artifact]:
    """The training jobs whose final states ``art`` continues (``run_state`` inits), first to last, and ``art``."""
    chain = [art]
    while chain[0].job.init.kind == "run_state":
        chain.insert(0, by_dir[str(chain[0].job.init.run_dir)])
    return chain
