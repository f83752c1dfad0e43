"""The split study's runs: every pretraining checkpoint branched into specialisation runs per domain."""

from __future__ import annotations

from typing import Any

from cpt_scaling.config.names import GENERAL
from cpt_scaling.plan.artifact import Artifact, ratio_label
from cpt_scaling.train.spec_types import InitSpec, ModelSpec, OptimizerSpec


class SplitStudy:
    """Builds the split study's training artifacts of a :class:`~cpt_scaling.plan.sweep.Plan` (a mixin: it uses
    the training stage's runs and builders, :class:`~cpt_scaling.plan.train_stage.TrainStage`)."""

    def _split_stage(self, optimizer: OptimizerSpec, common: dict[str, Any]) -> None:
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
        spec_tokens = sorted(study["spec_tokens"] or self.cfg["cpt"]["tokens"])
        for i, (size, curve) in enumerate(self.pretrain_curve.items()):
            model = self.pretrain[size].job.model
            if self.pretrain_branches:
                for domain in self.split_domains:
                    self._split_curves(size, model, curve, domain, spec_tokens, common, rotate=i)
                continue
            final = max(curve)
            for j, (branch, pre) in enumerate(sorted(curve.items())):
                if branch == final:
                    base = self.base_init[size]
                else:  # an intermediate checkpoint of the single cosine pretraining run
                    base = {"spec": {"pretrain": pre.key, "branch_tokens": branch},
                            "init": InitSpec("run", run_dir=pre.ref(), tokens=branch), "label": f"-p{branch}"}
                for domain in self.split_domains:
                    for tokens in self._spec_levels_at(spec_tokens, i + j):
                        run = self._cpt_run(size, model, base, domain, study["ratio"], tokens, optimizer, common)
                        self.split[(size, domain, branch, tokens)] = run
                        self.size_of[run.key] = size

    def _spec_levels_at(self, spec_tokens: list[int], cell: int) -> list[int]:
        """The D' levels of one (size, pretraining budget) cell: all of them (``studies.split.design: grid``), or
        with ``latin`` the one at ``cell`` (size index + budget index) modulo the number of levels, so that every
        size sees every level while each cell costs one run."""
        if self.cfg["studies"]["split"]["design"] == "grid":
            return spec_tokens
        return [spec_tokens[cell % len(spec_tokens)]]

    def _split_curves(self, size: str, model: ModelSpec, curve: dict[int, Artifact], domain: str,
                      spec_tokens: list[int], common: dict[str, Any], rotate: int = 0) -> None:
        """The split curves of one size and domain off its pretraining trunk (see :meth:`_split_stage`); ``rotate``:
        the size's index (the ``latin`` design's offset)."""
        ratio = self.cfg["studies"]["split"]["ratio"]
        general, dom = self.shards[GENERAL], self.shards[domain]
        run_of = {"vocab_size": self.vocab_size(size), "model": model, "general_shards": general.ref(),
                  "domain_shards": dom.ref(), "ratio": ratio}
        optimizers = self._wsd_optimizers(OptimizerSpec(**self.cfg["optimizer"]), max(curve))  # the pretraining curve's
        trunk = [self.branch_point[a.key] for a in curve.values() if a.key in self.branch_point]
        segments = sorted({a.key: a for a in trunk}.values(), key=lambda a: a.job.tokens)
        for j, seg in enumerate(segments):
            point = seg.job.tokens
            base = {"spec": {"pretrain_trunk": seg.key}, "init": InitSpec("run_state", run_dir=seg.ref())}
            levels = self._spec_levels_at(spec_tokens, rotate + j)
            runs = self._wsd_curve(f"split-{size}-p{point}-{domain}-{ratio_label(ratio)}", size, base, run_of,
                                   {"general": general.key, "domain": dom.key},
                                   [point + tokens for tokens in levels], optimizers, common, start=point,
                                   direct=len(levels) == 1)
            for total, run in runs.items():
                self.split[(size, domain, point, total - point)] = run
