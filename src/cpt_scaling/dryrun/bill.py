"""The bill a dry run ends with (``snakemake --profile profiles/slurm -n TARGET``): the totals of
``cpt-scaling cost TARGET`` for the jobs the dry run lists, priced by the same code
(:func:`~cpt_scaling.dryrun.cost_report.price_jobs`).

The workflow registers its plan when parsed in the main process (:func:`register`); the logger plugin
``cpt-bill`` (package ``snakemake_logger_plugin_cpt_bill``, named in the profiles) collects the job records Snakemake
logs during the dry run and prints :func:`bill` of them when Snakemake closes its log."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cpt_scaling.dryrun.cost_report import (
    CostReport,
    PlannedJob,
    cost_assumptions,
    price_jobs,
    schedule_wall_hours,
)


@dataclass(frozen=True)
class _Workflow:
    plan: Any
    cfg: Mapping[str, Any]
    parallelism: Any  # () -> jobs at a time (read when the bill is made: Snakemake sets it after parsing)


_REGISTERED: list[_Workflow] = []


def register(plan: Any, cfg: Mapping[str, Any], resource_settings: Any) -> None:
    """Remember the parsed workflow's plan, config and Snakemake resource settings (``--jobs``, ``--cores``)."""

    def parallelism() -> int:
        for value in (getattr(resource_settings, "nodes", None), getattr(resource_settings, "cores", None)):
            if isinstance(value, int) and value > 0:
                return value
        return int(cfg["cost"]["parallel_jobs"])

    _REGISTERED[:] = [_Workflow(plan, cfg, parallelism)]


def planned_jobs(records: Iterable[Mapping[str, Any]]) -> list[PlannedJob]:
    """The jobs of Snakemake's ``JOB_INFO`` log records (``jobid``, ``rule_name``, ``input``, ``output``,
    ``wildcards``, ``resources``), each depending on the listed jobs whose outputs it reads."""
    records = list({int(r["jobid"]): r for r in records}.values())
    made_by = {str(f): int(r["jobid"]) for r in records for f in r.get("output") or ()}
    jobs = []
    for r in records:
        deps = tuple(sorted({made_by[str(f)] for f in r.get("input") or () if str(f) in made_by}))
        output = str(r["output"][0]) if r.get("output") else str(r["rule_name"])
        resources = {k: v for k, v in dict(r.get("resources") or {}).items() if not str(k).startswith("_")}
        jobs.append((int(r["jobid"]), str(r["rule_name"]), output, (r.get("wildcards") or {}).get("key"), deps,
                     resources))
    return sorted(jobs)


def bill_report(records: Iterable[Mapping[str, Any]]) -> CostReport | None:
    """The cost report of the logged jobs under the registered workflow's cost model; None when no workflow of
    this project was parsed or no job would run."""
    if not _REGISTERED:
        return None
    wf = _REGISTERED[0]
    jobs = planned_jobs(records)
    if not jobs:
        return None
    priced = price_jobs(wf.plan, wf.cfg, jobs)
    slots = wf.parallelism()
    wall = schedule_wall_hours({j.jobid: j.hours for j in priced}, {j.jobid: j.deps for j in priced}, slots)
    return CostReport(priced, slots, wall, cost_assumptions(wf.cfg, "profile"))


def bill(records: Iterable[Mapping[str, Any]]) -> str | None:
    """The bill's text (:meth:`CostReport.format_totals` under a heading), or None (see :func:`bill_report`)."""
    report = bill_report(records)
    if report is None:
        return None
    return "Bill of this dry run (the cost model; `cpt-scaling cost` prices each job):\n" + report.format_totals()
