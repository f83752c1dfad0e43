"""The decision target's runs (``decide:``, rules/decide.smk): every candidate run of the decision's domain as an
ordinary keyed training artifact, built by the same code as the sweep's runs (so a candidate that is also a sweep
run has its key, and a run trained for one round is reused by any later round, rerun or sweep), with its
evaluations, the training jobs it needs (its trunk segments and base run) and their GPU-hours.

A round's job (:meth:`DecideStage.decide_job`) gets all of this as plain JSON; which candidates a round runs is
decided by the round before it (a Snakemake checkpoint), never by the plan.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cpt_scaling.config.names import GENERAL
from cpt_scaling.fit.candidates import gpu_hours
from cpt_scaling.plan.artifact import Artifact

#: Share of the full grid's GPU-hours a round may spend when decide.round_gpu_hours is null.
ROUND_SHARE = 0.05


@dataclass
class DecideRun:
    """One candidate run of the decision: its law inputs, its training artifact, the training jobs it needs
    (itself and every upstream training job: trunk segments, the base model's pretraining) and the evaluation
    tables its fit reads (its own and its base model's)."""

    name: str
    size: str
    N: float
    D: float
    r: float
    run: Artifact
    needs: list[str] = field(default_factory=list)
    evals: list[str] = field(default_factory=list)


def candidate_name(size: str, ratio: float, tokens: int) -> str:
    """A candidate's name, as `cpt-scaling next` labels a candidate row (``<size>-r<ratio>-D<tokens>``)."""
    return f"{size}-r{ratio:g}-D{tokens:g}"


class DecideStage:
    """Builds the decision's candidate runs of a :class:`~cpt_scaling.plan.sweep.Plan` (a mixin over its training
    stage; the evaluations are built with the evaluation stage, on first use)."""

    def _decide_stage(self) -> None:
        self.decide_runs: dict[str, DecideRun] = {}
        self.decide_only: set[str] = set()  # training keys that only the decision target plans (not the sweep)
        self.decide_evals: dict[str, Artifact] = {}  # their evaluations (those of sweep runs are the sweep's too)
        dec = self.cfg.get("decide")
        if dec is None:
            return
        sweep_keys = set(self.size_of)
        domain, budgets = dec["domain"], dec["candidate_tokens"]
        optimizer, common = self._cpt_optimizer(), self._train_common()
        for size in self.cfg["models"]["sizes"]:
            model, base = self._model(size), self.base_init[size]
            for ratio in dec["candidate_ratios"]:
                if self.branches:
                    runs = self._cpt_branches(size, model, base, domain, ratio, optimizer, common, budgets=budgets)
                else:
                    runs = {t: self._cpt_run(size, model, base, domain, ratio, t, optimizer, common) for t in budgets}
                for tokens, run in runs.items():
                    self.size_of[run.key] = size
                    name = candidate_name(size, ratio, tokens)
                    self.decide_runs[name] = DecideRun(name, size, float(self.n_params(size)), float(tokens),
                                                       float(ratio), run)
        self.decide_only = set(self.size_of) - sweep_keys
        self._train_of = {a.output: a for a in self._by_key.values() if a.stage == "train"}
        for cand in self.decide_runs.values():
            cand.needs = self._upstream_training(cand.run)

    def _upstream_training(self, run: Artifact) -> list[str]:
        """Keys of ``run`` and of every training job upstream of it (sorted)."""
        seen, todo = {run.key}, [run]
        while todo:
            art = todo.pop()
            for path in art.inputs:
                up = self._train_of.get(path)
                if up is not None and up.key not in seen:
                    seen.add(up.key)
                    todo.append(up)
        return sorted(seen)

    def _decide_eval_stage(self) -> None:
        """The evaluations of every candidate run (those of sweep runs are the sweep's) and of its base model, on
        the domain's suite and the general one; kept apart from the sweep's, so the default target never runs
        them."""
        dec = self.cfg.get("decide")
        if dec is None:
            return
        domain = dec["domain"]
        for cand in self.decide_runs.values():
            own = self._cpt_evals(cand.size, domain, cand.r, int(cand.D), cand.run, registry=self.decide_evals)
            cand.evals = sorted({a.output for a in own} | self._base_outputs(cand.size, domain))

    def _base_outputs(self, size: str, domain: str) -> set[str]:
        """Evaluation tables of the base model of ``size`` (its pretraining run or local checkpoint)."""
        runs = {a.key for a in self.pretrain_curve.get(size, {}).values()}
        base = self.base_evals.get(size)
        return ({a.output for a in self.evals.values() if a.spec.get("run") in runs
                 and set(a.job.corpora) & {domain, GENERAL}} | ({base.output} if base is not None else set()))

    # -- what the rules ask ----------------------------------------------------------------------------------
    def decide_start(self) -> list[str]:
        """The starting design's candidate names: ``decide.start`` sizes x ratios x ``cpt.tokens``."""
        dec = self.cfg["decide"]
        return [candidate_name(s, r, t) for s in dec["start"]["sizes"] for r in dec["start"]["ratios"]
                for t in self.cfg["cpt"]["tokens"]]

    def decide_grid(self) -> list[Artifact]:
        """The domain's full grid, the sweep's runs ``models.sizes`` x ``domains.<domain>.ratios`` x ``cpt.tokens``
        (the price the decision target is compared with)."""
        domain = self.cfg["decide"]["domain"]
        return [run for (_, d, _, _), run in self.cpt.items() if d == domain]

    def decide_inputs(self, names: list[str]) -> list[str]:
        """Evaluation tables the fit of the runs ``names`` reads."""
        self._ensure_evals()
        dec = self.cfg["decide"]
        base = self._base_outputs(dec["size"], dec["domain"]) if dec["decision"] == "usage1" else set()
        return sorted({p for n in names for p in self.decide_runs[n].evals} | base)

    def decide_price(self, names: list[str]) -> float:
        """GPU-hours of every training job the candidate runs ``names`` need, each job counted once (as `next`
        prices a run: FLOPs at cost.peak_flops_per_gpu x cost.expected_mfu)."""
        return self._price([self.decide_runs[n].run for n in names])

    def _price(self, runs: list[Artifact]) -> float:
        """GPU-hours of every training job ``runs`` need, each counted once (summed in key order: the same float in
        every process, as Snakemake's params comparison needs)."""
        keys = sorted({k for run in runs for k in self._upstream_training(run)})
        return sum(gpu_hours(self.train_flops(k), self.cfg["cost"]) for k in keys)

    def decide_budgets(self) -> dict[str, float]:
        """GPU-hours of the decision target: the full grid's (``grid_gpu_hours``), the budget
        (``budget_gpu_hours``; default the grid's), a round's (``round_gpu_hours``; default :data:`ROUND_SHARE` of
        the grid's) and the starting design's (``start_gpu_hours``)."""
        dec = self.cfg["decide"]
        grid = self._price(self.decide_grid())
        budget, per_round = dec["budget_gpu_hours"], dec["round_gpu_hours"]
        return {"grid_gpu_hours": grid, "budget_gpu_hours": budget if budget is not None else grid,
                "round_gpu_hours": per_round if per_round is not None else ROUND_SHARE * grid,
                "start_gpu_hours": self.decide_price(self.decide_start())}

    def decide_summary(self) -> str | None:
        """One line on what the decision target may cost: the starting design (a dry run prices it exactly) and
        the rounds after it, up to the budget it leaves (None without a ``decide:`` section)."""
        dec = self.cfg.get("decide")
        if dec is None:
            return None
        b = self.decide_budgets()
        rest = max(b["budget_gpu_hours"] - b["start_gpu_hours"], 0.0)
        return (f"decision {dec['decision']}_{dec['domain']}: starting design {len(self.decide_start())} runs, "
                f"{b['start_gpu_hours']:.4g} GPU-h; rounds: up to {rest:.4g} GPU-h more (decide.budget_gpu_hours "
                f"{b['budget_gpu_hours']:.4g} less the starting design; {b['round_gpu_hours']:.4g} per round, "
                f"more only for the one run the proposer ranks first; {dec['max_rounds']} rounds; the full grid costs "
                f"{b['grid_gpu_hours']:.4g})")

    def decide_job(self) -> dict[str, Any]:
        """Everything a round's job needs, as plain JSON: the settings, the starting design, the grid, every
        candidate (law inputs, checkpoints the fit sees, training keys needed, evaluation tables) and the GPU-hours
        of each training key."""
        self._ensure_evals()
        dec, fit = self.cfg["decide"], self.cfg["fit"]
        points = self.cfg["cpt"]["checkpoints"] if fit["intermediate_points"] and not self.branches else 1
        cands = {n: {"size": c.size, "N": c.N, "D": c.D, "r": c.r, "checkpoints": points, "needs": c.needs,
                     "evals": c.evals} for n, c in self.decide_runs.items()}
        keys = sorted({k for c in self.decide_runs.values() for k in c.needs})
        return {"settings": dict(dec), "fit": dict(fit), "dcpt": dict(self.cfg["studies"]["dcpt"]),
                "start": self.decide_start(), "grid_runs": len(self.decide_grid()), **self.decide_budgets(),
                "candidates": cands,
                "gpu_hours": {k: gpu_hours(self.train_flops(k), self.cfg["cost"]) for k in keys},
                "domain_manifest": self.shards[dec["domain"]].output}
