"""Dry-run cost report: what the jobs that would run cost, before anything runs.

The jobs are exactly those ``snakemake -n TARGET`` would run (artifacts already on disk and up to date cost
nothing), listed through Snakemake's Python API without running anything. Each training job (rule ``train``)
is priced by the one cost model (:mod:`cpt_scaling.cost.model`, :mod:`cpt_scaling.cost.resources`):

* FLOPs = tokens · (6·(N + d·V) + 12·L·d·T): N non-embedding parameters, d·V the LM head, L layers, d width,
  T sequence length;
* GPU-hours = FLOPs / (peak FLOP/s per GPU · expected MFU) / 3600 (``cost`` section of the config);
* expected hours = FLOPs / (GPUs per job · peak · MFU) / 3600, or FLOPs / ``cost.cpu_flops`` without GPUs;
* peak GB per GPU (GiB) from the memory model (:mod:`cpt_scaling.cost.memory`), with GPUs;
* peak host GB per node (GiB, ``host_memory_gb``) from the host-memory model (:mod:`cpt_scaling.cost.host_memory`),
  from which a training job's ``mem_mb`` comes (an evaluation job's: its loaded weights).

Each evaluation job (rule ``evaluate``) is priced by the same model on one GPU: forward FLOPs (a third of
training's per token) of every checkpoint on its suites, plus reading the checkpoints
(:func:`cpt_scaling.cost.resources.eval_job_cost`). Every other job counts as a CPU-only job of
``cost.other_job_minutes``. Each job also carries the resources Snakemake would submit it with; a training job
longer than ``cluster.max_runtime_minutes`` runs as ``submissions`` jobs of at most that limit
(:func:`cpt_scaling.cost.resources.train_schedule`). Wall-clock is
a list schedule of the jobs in dependency order on as many slots as the profile runs jobs at once (``jobs``,
else ``cores``, else ``cost.parallel_jobs``).
"""

from __future__ import annotations

import contextlib
import copy
import csv
import heapq
import io
import json
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cpt_scaling.cost import host_memory, memory, resources
from cpt_scaling.plan.sweep import Plan

TRAIN_RULE = "train"
EVAL_RULE = "evaluate"
#: Rerun triggers of the project's profiles (no mtime, no code: keys carry stage versions).
PROJECT_RERUN_TRIGGERS = ("input", "params", "software-env")
FLOPS_FORMULA = "tokens * (6*(N + d*V) + 12*L*d*T)"
#: Rules of the decision target (rules/decide.smk): a dry run sees its first round only; the rest is a bound.
DECIDE_RULES = ("decide_round", "decide", "figure_decision")


@dataclass(frozen=True)
class JobCost:
    """The cost of one job that would run."""

    jobid: int
    rule: str
    output: str
    kind: str  # "train", "eval" (priced by the cost model) or "cpu" (a small CPU-only job)
    tokens: int
    flops: float
    gpus: int
    nodes: int
    hours: float  # expected wall-clock of the job itself
    gpu_hours: float
    runtime_limit_min: int
    deps: tuple[int, ...] = field(default=(), compare=False)
    gpu_memory_gb: float | None = None  # predicted peak GiB per GPU (memory model); None without GPUs
    resources: dict[str, Any] = field(default_factory=dict, compare=False)  # what Snakemake would submit
    submissions: int = 1  # SLURM jobs the run takes under cluster.max_runtime_minutes (each <= runtime_limit_min)
    host_memory_gb: float | None = None  # modelled peak host GiB per node (training: cost.host_memory); None: CPU job


@dataclass
class CostReport:
    """Per-job costs, the totals and the assumptions they rest on."""

    jobs: list[JobCost]
    parallelism: int
    wall_hours: float
    assumptions: dict[str, Any]
    budgets: dict[str, Any] | None = None  # the whole sweep as WSD branches vs separate runs (budgets_comparison)
    rounds: str | None = None  # the decision target's rounds after the first: an upper bound (plan.decide_summary)

    @property
    def totals(self) -> dict[str, Any]:
        """Sums over the jobs, and the wall-clock at the profile's parallelism."""
        train = [j for j in self.jobs if j.kind == "train"]
        evals = [j for j in self.jobs if j.kind == "eval"]
        peak = max((j.gpu_memory_gb for j in train if j.gpu_memory_gb is not None), default=None)
        host = max((j.host_memory_gb for j in train if j.host_memory_gb is not None), default=None)
        return {"jobs": len(self.jobs), "train_jobs": len(train), "eval_jobs": len(evals),
                "submissions": sum(j.submissions for j in self.jobs),
                "max_runtime_limit_min": max((j.runtime_limit_min for j in self.jobs), default=0),
                "max_train_gpu_memory_gb": peak, "max_train_host_memory_gb": host,
                "tokens": sum(j.tokens for j in self.jobs),
                "flops": sum(j.flops for j in self.jobs), "gpu_hours": sum(j.gpu_hours for j in self.jobs),
                "job_hours": sum(j.hours for j in self.jobs), "wall_hours": self.wall_hours,
                "parallelism": self.parallelism}

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict: assumptions, totals and one entry per job."""
        jobs = [{k: v for k, v in asdict(j).items() if k != "deps"} for j in self.jobs]
        return {"assumptions": self.assumptions, "totals": self.totals, "jobs": jobs, "budgets": self.budgets,
                "rounds": self.rounds}

    def to_csv(self) -> str:
        """One CSV row per job."""
        buf = io.StringIO()
        names = [f for f in JobCost.__dataclass_fields__ if f not in ("deps", "resources")]
        writer = csv.DictWriter(buf, fieldnames=names, lineterminator="\n")
        writer.writeheader()
        for j in self.jobs:
            writer.writerow({k: getattr(j, k) for k in names})
        return buf.getvalue()

    def format_table(self, max_rows: int = 200) -> str:
        """An aligned table of the jobs (the most expensive first when there are many) plus totals."""
        head = ("rule", "job", "tokens", "FLOPs", "GPUs", "GB/GPU", "host GB", "hours", "GPU-h", "limit", "jobs")
        jobs = sorted(self.jobs, key=lambda j: (-j.flops, j.output))[:max_rows]
        rows = [(j.rule, _short(j.output), f"{j.tokens:,}", f"{j.flops:.3e}", str(j.gpus),
                 "-" if j.gpu_memory_gb is None else f"{j.gpu_memory_gb:.1f}",
                 "-" if j.host_memory_gb is None else f"{j.host_memory_gb:.1f}", f"{j.hours:.4g}",
                 f"{j.gpu_hours:.2f}", f"{j.runtime_limit_min}m", str(j.submissions)) for j in jobs]
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
        right = {2, 3, 4, 5, 6, 7, 8, 9, 10}

        def line(cells: Sequence[str]) -> str:
            return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                             for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

        out = [line(head), line(["-" * w for w in widths]), *(line(r) for r in rows)]
        if len(self.jobs) > max_rows:
            out.append(f"... {len(self.jobs) - max_rows} cheaper jobs not shown (see --json/--csv)")
        return "\n".join([*out, "", self.format_totals()])

    def format_totals(self) -> str:
        """The bill: totals of the jobs that would run, and the assumptions they rest on."""
        t = self.totals
        out = [f"jobs that would run: {t['jobs']} ({t['train_jobs']} training, {t['eval_jobs']} evaluation)",
                f"tokens:              {t['tokens']:,}",
                f"FLOPs:               {t['flops']:.4e}   ({FLOPS_FORMULA})",
                f"GPU-hours:           {t['gpu_hours']:,.2f}",
                f"job-hours:           {t['job_hours']:,.2f}",
                f"wall-clock:          {t['wall_hours']:,.2f} h at {t['parallelism']} jobs at a time",
                f"SLURM submissions:   {t['submissions']:,} (longest limit {t['max_runtime_limit_min']} min"
                + (f"; cluster.max_runtime_minutes {self.assumptions['max_runtime_minutes']})"
                   if self.assumptions.get("max_runtime_minutes") else ")")]
        if t["max_train_gpu_memory_gb"] is not None:
            out.append(f"peak GB per GPU:     {t['max_train_gpu_memory_gb']:.1f} GiB (largest training job; "
                       f"cost.gpu_memory_gb {self.assumptions['gpu_memory_gb']:g})")
        if t["max_train_host_memory_gb"] is not None:
            node = self.assumptions.get("node_memory_gb")
            out.append(f"peak host GB/node:   {t['max_train_host_memory_gb']:.1f} GiB (largest training job, "
                       "host-memory model; its --mem adds 20 %" + (f"; cost.node_memory_gb {node:g})" if node else ")"))
        if self.budgets is not None:
            b = self.budgets
            if b["separate_runs_gpu_hours"] > 0:
                out.append(f"CPT budgets:         whole sweep as WSD branches {b['branches_gpu_hours']:,.0f} GPU-h, "
                           f"as separate runs {b['separate_runs_gpu_hours']:,.0f} GPU-h ({b['ratio']:.2f}x)")
            else:  # CPU-only config: compare the compute
                out.append(f"CPT budgets:         whole sweep as WSD branches {b['branches_flops']:.3g} FLOPs, as "
                           f"separate runs {b['separate_runs_flops']:.3g} FLOPs ({b['ratio']:.2f}x)")
        if self.rounds is not None:
            out.append(f"decision target:     {self.rounds}")
        a = self.assumptions
        out.append(f"assumptions:         {a['gpus_per_job']} GPU(s)/job x {a['nodes_per_job']} node(s), "
                   f"peak {a['peak_flops_per_gpu']:.3g} FLOP/s/GPU, MFU {a['expected_mfu']}, "
                   f"CPU {a['cpu_flops']:.3g} FLOP/s, other jobs {a['other_job_minutes']} min")
        return "\n".join(out)


def _short(path: str, width: int = 64) -> str:
    """An artifact's ``<name>-<key>`` directory name, else the path (cut from the left to ``width``)."""
    parts = Path(path).parts
    label = parts[-2] if len(parts) >= 4 else path
    return label if len(label) <= width else "..." + label[-(width - 3):]


def schedule_wall_hours(hours: Mapping[int, float], deps: Mapping[int, Iterable[int]], slots: int) -> float:
    """Makespan of a greedy list schedule: jobs in dependency order, each on the earliest free slot once its
    dependencies have finished."""
    pending = {j: {d for d in deps.get(j, ()) if d in hours} for j in hours}
    children: dict[int, list[int]] = {j: [] for j in hours}
    for j, ds in pending.items():
        for d in ds:
            children[d].append(j)
    ready = [(0.0, j) for j, ds in sorted(pending.items()) if not ds]
    heapq.heapify(ready)
    free = [0.0] * max(1, slots)
    finish: dict[int, float] = {}
    while ready:
        at, j = heapq.heappop(ready)
        start = max(at, heapq.heappop(free))
        finish[j] = start + hours[j]
        heapq.heappush(free, finish[j])
        for c in children[j]:
            pending[c].discard(j)
            if not pending[c]:
                heapq.heappush(ready, (max(finish[d] for d in deps[c] if d in hours), c))
    if len(finish) != len(hours):
        raise ValueError("dependency cycle among the jobs")
    return max(finish.values(), default=0.0)


def read_profile(profile: str | Path | None) -> dict[str, Any]:
    """The settings of a Snakemake profile directory (or its config.yaml); empty without a profile."""
    if profile is None:
        return {}
    path = Path(profile)
    if path.is_dir():
        path = path / "config.yaml"
    data = yaml.safe_load(path.read_text())
    return data if isinstance(data, dict) else {}


def profile_parallelism(profile: Mapping[str, Any], default: int) -> int:
    """How many jobs the profile runs at once: ``jobs``, else ``cores``, else ``default``."""
    for key in ("jobs", "cores"):
        value = profile.get(key)
        if isinstance(value, int) and value > 0:
            return value
    return default


#: A job that would run: (job id, rule, first output, artifact key wildcard or None, ids of its dependencies,
#: the resources Snakemake would submit it with).
PlannedJob = tuple[int, str, str, "str | None", tuple[int, ...], dict[str, Any]]


def price_jobs(plan: Any, cfg: Mapping[str, Any], jobs: Iterable[PlannedJob]) -> list[JobCost]:
    """Costs of the planned jobs under the plan's cost model."""
    cost = cfg["cost"]
    gpus, nodes = cost["gpus_per_job"], cost["nodes_per_job"]
    train_gb = {size: memory.train_estimate(cfg, size).gib for size in cfg["models"]["sizes"]} if gpus else {}
    host_gb = {size: host_memory.train_host_estimate(cfg, size).gib for size in cfg["models"]["sizes"]}
    out = []
    for jobid, rule, output, key, deps, submitted in jobs:
        if rule == TRAIN_RULE and key is not None:
            flops = plan.train_flops(key)
            tokens = plan.trained_tokens(key)
            res = resources.train_resources_of(plan, key)
            out.append(JobCost(jobid, rule, output, "train", tokens, flops, gpus, nodes,
                               resources.expected_seconds(flops, cost) / 3600,
                               resources.gpu_hours(flops, cost), int(res["runtime"]),
                               deps, train_gb.get(plan.size_of[key]), submitted, int(res["submissions"]),
                               host_memory_gb=host_gb[plan.size_of[key]]))
        elif rule == EVAL_RULE and key is not None:
            c = resources.eval_job_cost(plan, key)
            rate = cost["peak_flops_per_gpu"] * cost["expected_mfu"] if gpus else float(cost["cpu_flops"])
            hours = (c["flops"] / rate + c["load_bytes"] / resources.LOAD_BYTES_PER_SECOND) / 3600
            limit = resources.eval_resources(c["flops"], c["host_bytes"], c["load_bytes"], cost,
                                             cfg.get("cluster"))["runtime"]
            out.append(JobCost(jobid, rule, output, "eval", int(c["tokens"]), c["flops"], 1 if gpus else 0, 1,
                               hours, hours if gpus else 0.0, int(limit), deps,
                               c["gpu_bytes"] / memory.GIB if gpus else None, submitted,
                               host_memory_gb=c["host_bytes"] / memory.GIB))
        else:
            minutes = float(cost["other_job_minutes"])
            out.append(JobCost(jobid, rule, output, "cpu", 0, 0.0, 0, 1, minutes / 60, 0.0,
                               round(minutes), deps, None, submitted))
    return out


def snakemake_needrun(targets: Sequence[str], *, snakefile: str | Path, workdir: str | Path,
                      configfiles: Sequence[str | Path] = (), profile: Mapping[str, Any] | None = None
                      ) -> tuple[list[PlannedJob], dict[str, Any]]:
    """The jobs ``snakemake -n TARGETS`` would run and the workflow's globals (``PLAN``, ``CFG``)."""
    with dry_run_dag(targets, snakefile=snakefile, workdir=workdir, configfiles=configfiles,
                     profile=profile) as (workflow, dag, needrun):
        ids = {job: i for i, job in enumerate(needrun)}
        jobs = []
        for job in needrun:
            deps = tuple(sorted(ids[d] for d in dag.dependencies[job] if d in ids))
            output_file = str(job.output[0]) if job.output else job.rule.name
            submitted = {k: v for k, v in job.resources.items() if not k.startswith("_")}
            jobs.append((ids[job], job.rule.name, output_file, job.wildcards_dict.get("key"), deps, submitted))
        return jobs, {"PLAN": workflow.globals["PLAN"], "CFG": workflow.globals["CFG"]}


@contextlib.contextmanager
def dry_run_dag(targets: Sequence[str], *, snakefile: str | Path, workdir: str | Path,
                configfiles: Sequence[str | Path] = (), profile: Mapping[str, Any] | None = None
                ) -> Iterator[tuple[Any, Any, list[Any]]]:
    """(workflow, DAG, jobs that would run, in a stable order) of ``snakemake -n TARGETS``, quietly: the one
    place that builds a Snakemake DAG through its internals (``cpt-scaling cost`` and ``explain`` use it).

    Uses the profile's rerun triggers and checksum size limit (default: the project's profiles').
    """
    from snakemake.api import SnakemakeApi
    from snakemake.settings.enums import Quietness
    from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings

    dag_settings = dry_run_dag_settings(targets, profile)
    workdir = Path(workdir).resolve()
    configs = tuple((workdir / c).resolve() for c in configfiles)
    quiet = logging.getLogger("snakemake.logging")
    drop_info = _DropInfo()
    quiet.addFilter(drop_info)  # no "Building DAG of jobs..." on stderr
    try:
        with SnakemakeApi(OutputSettings(quiet={Quietness.ALL, Quietness.PROGRESS, Quietness.RULES})) as api:
            wf_api = api.workflow(resource_settings=ResourceSettings(cores=1),
                                  config_settings=ConfigSettings(configfiles=configs),
                                  snakefile=Path(snakefile).resolve(), workdir=workdir)
            workflow = wf_api.dag(dag_settings).workflow_api._workflow
            workflow._prepare_dag(forceall=False, ignore_incomplete=True, lock_warn_only=True, nolock=True)
            workflow._build_dag()
            dag = workflow.dag
            yield workflow, dag, sorted(dag.needrun_jobs(), key=lambda j: (j.rule.name, str(j.output[:1])))
    finally:
        quiet.removeFilter(drop_info)


def dry_run_dag_settings(targets: Sequence[str], profile: Mapping[str, Any] | None = None) -> Any:
    """Snakemake's DAG settings of a dry run of ``targets``: the profile's rerun triggers and checksum size limit
    (default: the project's profiles')."""
    from humanfriendly import parse_size
    from snakemake.settings.enums import RerunTrigger
    from snakemake.settings.types import DAGSettings

    profile = profile or {}
    triggers = profile.get("rerun-triggers", list(PROJECT_RERUN_TRIGGERS))
    triggers = [triggers] if isinstance(triggers, str) else triggers
    checksum = profile.get("max-checksum-file-size", "16GB")
    checksum = parse_size(checksum) if isinstance(checksum, str) else int(checksum)
    return DAGSettings(targets=frozenset(targets),
                       rerun_triggers=frozenset(RerunTrigger.parse_choice(t) for t in triggers),
                       max_checksum_file_size=checksum)


class _DropInfo(logging.Filter):
    """Keep only warnings and errors."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING


def cost_report(targets: Sequence[str] = (), *, snakefile: str | Path, workdir: str | Path = ".",
                configfiles: Sequence[str | Path] = (), profile: str | Path | None = None) -> CostReport:
    """Price the jobs a dry run of ``targets`` (default: the workflow's default target) would run."""
    settings = read_profile(profile)
    jobs, ns = snakemake_needrun(targets, snakefile=snakefile, workdir=workdir, configfiles=configfiles,
                                 profile=settings)
    cfg = ns["CFG"]
    priced = price_jobs(ns["PLAN"], cfg, jobs)
    slots = profile_parallelism(settings, cfg["cost"]["parallel_jobs"])
    wall = schedule_wall_hours({j.jobid: j.hours for j in priced}, {j.jobid: j.deps for j in priced}, slots)
    assumptions = cost_assumptions(cfg, "profile" if settings else "cost.parallel_jobs")
    rounds = ns["PLAN"].decide_summary() if any(job[1] in DECIDE_RULES for job in jobs) else None
    return CostReport(priced, slots, wall, assumptions, budgets_comparison(ns["PLAN"]), rounds)


def cost_assumptions(cfg: Mapping[str, Any], parallelism_source: str) -> dict[str, Any]:
    """The config's cost assumptions a report rests on, and where its parallelism came from."""
    keys = ("gpus_per_job", "nodes_per_job", "peak_flops_per_gpu", "expected_mfu", "cpu_flops",
            "other_job_minutes", "runtime_margin", "gpu_memory_gb", "node_memory_gb")
    assumptions = {k: cfg["cost"][k] for k in keys}
    assumptions["max_runtime_minutes"] = resources.max_runtime(cfg.get("cluster"))
    assumptions.update(flops_formula=FLOPS_FORMULA, parallelism_source=parallelism_source)
    return assumptions


def budgets_comparison(plan: Any) -> dict[str, Any] | None:
    """The whole sweep's training GPU-hours and FLOPs with CPT budgets as WSD branches and as separate runs (the
    same config with ``cpt.budgets: separate_runs``); the ratio is of FLOPs (defined on CPU-only configs too, whose
    GPU-hours are 0). None when the plan has no branches."""
    if not plan.branches:
        return None
    separate = copy.deepcopy(plan.cfg)
    separate["cpt"]["budgets"] = "separate_runs"
    other = Plan(separate, plan.digests)
    flops = [sum(p.train_flops(key) for key in p.size_of) for p in (plan, other)]
    return {"branches_gpu_hours": plan.train_gpu_hours(), "separate_runs_gpu_hours": other.train_gpu_hours(),
            "branches_flops": flops[0], "separate_runs_flops": flops[1], "ratio": flops[0] / flops[1]}


def write_outputs(report: CostReport, json_path: str | Path | None = None, csv_path: str | Path | None = None
                  ) -> None:
    """Write the report as JSON and/or CSV."""
    if json_path:
        Path(json_path).write_text(json.dumps(report.to_json(), indent=2, sort_keys=True) + "\n")
    if csv_path:
        Path(csv_path).write_text(report.to_csv())
