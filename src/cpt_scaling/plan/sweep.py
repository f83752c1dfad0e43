"""The sweep plan: every artifact of a config, with its key, path and the job that makes it.

Built once per parse from the normalised config alone (plus cached digests of raw inputs), so the DAG never needs
Snakemake checkpoints to know a path. Rules look artifacts up by key.

Its stages are built by mixins, one module each: :mod:`~cpt_scaling.plan.data_stage`,
:mod:`~cpt_scaling.plan.train_stage` (with the split study's runs, :mod:`~cpt_scaling.plan.split_study`) and
:mod:`~cpt_scaling.plan.eval_stage`; :mod:`~cpt_scaling.plan.queries` answers the rules (training curves:
:mod:`~cpt_scaling.plan.curves`); the artifact model is in
:mod:`~cpt_scaling.plan.artifact`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cpt_scaling.core.errors import InputError
from cpt_scaling.core.keys import DigestCache
from cpt_scaling.plan.artifact import STAGE_VERSIONS, Artifact
from cpt_scaling.plan.curves import TrainCurves
from cpt_scaling.plan.data_stage import DataStage
from cpt_scaling.plan.decide_stage import DecideStage
from cpt_scaling.plan.eval_stage import EvalStage
from cpt_scaling.plan.queries import Queries
from cpt_scaling.plan.split_study import SplitStudy
from cpt_scaling.plan.train_stage import TrainStage


class Plan(DataStage, TrainStage, SplitStudy, EvalStage, DecideStage, Queries, TrainCurves):
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
        self._decide_stage()  # the decision target's candidate runs (none without a decide: section)
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
            self._decide_eval_stage()
            if self.cfg["evaluate"].get("exams"):
                self._exam_stage()

    # -- helpers -------------------------------------------------------------------------------------------
    def _add(self, art: Artifact) -> Artifact:
        existing = self._by_key.get(art.key)
        if existing is not None and existing.name != art.name:
            raise InputError(f"{art.stage} artifacts {existing.name} and {art.name}",
                             "identical inputs under two names (e.g. one base checkpoint copied to two model sizes, "
                             "or the same file under two names): list it once")
        self._by_key[art.key] = art
        return art

    def _spec(self, stage: str, **parts: Any) -> dict[str, Any]:
        return {"stage": stage, "version": STAGE_VERSIONS[stage], **parts}


def build_plan(cfg: dict[str, Any], cache_file: str | Path = ".snakemake/cpt-scaling-digests.json") -> Plan:
    """The plan of a normalised config; raw-input digests are cached in ``cache_file``."""
    digests = DigestCache(cache_file)
    plan = Plan(cfg, digests)
    digests.save()
    return plan
