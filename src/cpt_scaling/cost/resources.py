"""From the one cost model to SLURM resources (snakemake-executor-plugin-slurm names) and expected runtimes.

Inputs are a run's training FLOPs (:mod:`cpt_scaling.cost.model`: ``tokens · (6·(N + d·V) + 12·L·d·T)``) and the
config's ``cost`` and ``cluster`` sections. Conventions:

* ``cost.gpus_per_job`` is the total number of GPUs of one training job, spread evenly over
  ``cost.nodes_per_job`` nodes. A job gets a GPU request (``gres=gpu[:model]:<per node>``) only when it is
  > 0: a CPU-only cluster never sees one.
* Expected seconds = FLOPs / (GPUs · peak FLOP/s · expected MFU), or FLOPs / ``cost.cpu_flops`` without GPUs.
  The SLURM runtime limit adds ``cost.runtime_margin`` (a factor) and 5 minutes of start-up.
* Multi-node jobs (``nodes_per_job > 1``) follow the plugin's ``mpi`` pattern: one task per node, the job's
  command launches ``srun`` itself (``resources.mpi``), e.g. ``srun torchrun --nnodes {resources.nodes} ...``.
* Evaluation jobs (:func:`eval_resources_of`) are priced by the same model: forward FLOPs (a third of training's,
  ``2·(N + d·V) + 4·L·d·T`` per token) of every checkpoint on every suite token, on one GPU when
  ``cost.gpus_per_job > 0``, plus reading each checkpoint (:data:`LOAD_BYTES_PER_SECOND`); host memory holds the
  loaded weights (:func:`cpt_scaling.cost.memory.eval_estimate`).
* Partition, account, constraint and QoS come from ``cluster`` when set; otherwise from the profile or the
  command line (``--default-resources slurm_partition=... slurm_account=...``). Nothing is hard-coded.
* Runtime caps (``cluster.max_runtime_minutes``): no training or evaluation job asks for more. A training job
  whose limit would exceed the cap runs as ``submissions`` jobs of the cap each (:func:`train_schedule`): each
  pays a start-up and checkpoint load/save allowance (:func:`submission_overhead_minutes`, at most half the
  cap) and resumes where the last stopped; the trainer stops itself ``stop_margin_s`` before the job's end
  (checkpoint, exit status 75) and SLURM warns it with SIGTERM that long before the limit (``--signal``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from cpt_scaling.core.errors import InputError
from cpt_scaling.cost import host_memory, memory
from cpt_scaling.cost import model as cost_model

#: Start-up allowance added to every training job's runtime limit (minutes): imports, checkpoint load, launch.
STARTUP_MINUTES = 5

#: ``cluster`` config key -> plugin resource name.
CLUSTER_RESOURCES = {"partition": "slurm_partition", "account": "slurm_account", "constraint": "constraint",
                     "qos": "qos"}


def check_cost_config(cost: Mapping[str, Any]) -> None:
    """Reject GPU/node combinations that cannot be spread evenly (ValueError naming the keys)."""
    gpus, nodes = cost["gpus_per_job"], cost["nodes_per_job"]
    if gpus and gpus % nodes:
        raise ValueError(f"cost.gpus_per_job={gpus} is not a multiple of cost.nodes_per_job={nodes}")


def resolve_processes_per_node(cfg: dict[str, Any], where: str) -> None:
    """Fill ``training.processes_per_node`` in place: one process per GPU of a node
    (``cost.gpus_per_job / cost.nodes_per_job``), 1 without GPUs; an explicit value that contradicts the GPUs
    of a node is an :class:`~cpt_scaling.core.errors.InputError` (so no GPU idles, none is oversubscribed)."""
    cost, training = cfg["cost"], cfg["training"]
    gpus, nodes = cost["gpus_per_job"], cost["nodes_per_job"]
    if gpus and gpus % nodes:
        raise InputError(where, f"cost.gpus_per_job={gpus} is not a multiple of cost.nodes_per_job={nodes}")
    per_node = gpus // nodes if gpus else 1
    given = training["processes_per_node"]
    if given is None:
        training["processes_per_node"] = per_node
    elif gpus and given != per_node:
        raise InputError(where, f"training.processes_per_node={given} does not match the {per_node} GPUs per node "
                                f"(cost.gpus_per_job={gpus} / cost.nodes_per_job={nodes}): one process drives "
                                "one GPU; leave it unset")


def flops_rate(cost: Mapping[str, Any]) -> float:
    """Sustained FLOP/s of one training job under the config's assumptions."""
    if cost["gpus_per_job"]:
        return cost["gpus_per_job"] * cost["peak_flops_per_gpu"] * cost["expected_mfu"]
    return float(cost["cpu_flops"])


def expected_seconds(flops: float, cost: Mapping[str, Any]) -> float:
    """Expected wall-clock seconds of a training job of ``flops`` FLOPs (no margin, no start-up)."""
    return flops / flops_rate(cost)


def gpu_hours(flops: float, cost: Mapping[str, Any]) -> float:
    """GPU-hours of a training job: ``flops / (peak · MFU) / 3600``, 0 without GPUs."""
    if not cost["gpus_per_job"]:
        return 0.0
    return flops / (cost["peak_flops_per_gpu"] * cost["expected_mfu"]) / 3600.0


def runtime_minutes(flops: float, cost: Mapping[str, Any]) -> int:
    """SLURM runtime limit (minutes): expected time times the margin, plus start-up."""
    return math.ceil(expected_seconds(flops, cost) / 60 * cost["runtime_margin"]) + STARTUP_MINUTES


#: Bytes of a resumable checkpoint per parameter: bf16 weights + fp32 masters + two Adam moments (GPU), fp32
#: weights + two moments (CPU).
STATE_BYTES_PER_PARAM = {True: 14, False: 12}
#: The trainer's stop margin before a job's end beyond the checkpoint write itself (seconds).
STOP_SLACK_SECONDS = 120
#: A job gets SLURM's warning signal only when its limit is at least this many times (margin + 60 s): SLURM sends
#: it up to 60 s early.
SIGNAL_MIN_FACTOR = 4


def max_runtime(cluster: Mapping[str, Any] | None) -> int | None:
    """``cluster.max_runtime_minutes`` (None: no cap)."""
    cap = (cluster or {}).get("max_runtime_minutes")
    return int(cap) if cap else None


def submission_overhead_minutes(state_bytes: float, cap: int) -> float:
    """What one submission of a resumed run spends besides training: start-up plus loading and writing its
    train state at :data:`LOAD_BYTES_PER_SECOND`; at most half the cap (a tiny test cap still trains)."""
    return min(STARTUP_MINUTES + 2 * state_bytes / LOAD_BYTES_PER_SECOND / 60, cap / 2)


def stop_margin_seconds(state_bytes: float, limit_minutes: int) -> int:
    """How long before a job's end the trainer stops (and SLURM's warning signal comes): the checkpoint write
    plus :data:`STOP_SLACK_SECONDS`, at most a quarter of the limit."""
    return int(min(math.ceil(state_bytes / LOAD_BYTES_PER_SECOND) + STOP_SLACK_SECONDS, limit_minutes * 60 / 4))


def train_schedule(flops: float, cost: Mapping[str, Any], cluster: Mapping[str, Any] | None = None,
                   state_bytes: float = 0.0) -> tuple[int, int]:
    """(runtime limit in minutes, submissions) of a training job under ``cluster.max_runtime_minutes``.

    Uncapped or fitting: (:func:`runtime_minutes`, 1). Otherwise every submission asks for the cap and trains
    for the cap less :func:`submission_overhead_minutes`; the submissions cover the expected time times
    ``cost.runtime_margin``.
    """
    limit = runtime_minutes(flops, cost)
    cap = max_runtime(cluster)
    if cap is None or limit <= cap:
        return limit, 1
    work = expected_seconds(flops, cost) / 60 * cost["runtime_margin"]
    return cap, max(2, math.ceil(work / (cap - submission_overhead_minutes(state_bytes, cap))))


def train_resources(flops: float, cost: Mapping[str, Any], cluster: Mapping[str, Any] | None = None,
                    threads: int = 1, state_bytes: float = 0.0, mem_mb: int | None = None) -> dict[str, int | str]:
    """Plugin resources of one training job.

    Always ``mem_mb`` (per node: ``mem_mb`` if given, the host-memory model's
    :func:`cpt_scaling.cost.host_memory.train_mem_mb`; else ``cost.mem_mb``), ``runtime`` (minutes, at most
    ``cluster.max_runtime_minutes``),
    ``submissions`` (jobs the run takes, :func:`train_schedule`), ``stop_margin_s`` (the trainer stops that long
    before the job's end) with ``slurm_extra`` ``--signal=TERM@<stop_margin_s>`` (SLURM's warning to every
    process of the job's steps; see profiles/slurm) and ``cpus_per_task``; with GPUs ``gres`` and
    ``tasks_per_gpu=0`` (one task drives all GPUs of a node); with several nodes ``nodes``, ``tasks`` (one per
    node), ``mpi="srun"`` and ``--ntasks-per-node=1``; placement keys from ``cluster``.
    """
    check_cost_config(cost)
    gpus, nodes = cost["gpus_per_job"], cost["nodes_per_job"]
    limit, submissions = train_schedule(flops, cost, cluster, state_bytes)
    margin = stop_margin_seconds(state_bytes, limit)
    res: dict[str, int | str] = {"mem_mb": int(mem_mb or cost["mem_mb"]), "runtime": limit, "submissions": submissions,
                                 "stop_margin_s": margin}
    if gpus:
        per_node = gpus // nodes
        model = cost.get("gpu_model")
        res["gres"] = f"gpu:{model}:{per_node}" if model else f"gpu:{per_node}"
        res["tasks_per_gpu"] = 0
        res["cpus_per_task"] = int(cost["cpus_per_gpu"]) * per_node
    else:
        res["cpus_per_task"] = int(threads)
    # SLURM may send the warning up to a minute early: only jobs long enough for that to cost little get one
    # (the trainer's own deadline stops the others).
    extra = [f"--signal=TERM@{margin}"] if limit * 60 >= SIGNAL_MIN_FACTOR * (margin + 60) else []
    if nodes > 1:
        res.update(nodes=nodes, tasks=nodes, mpi="srun")
        extra.insert(0, "--ntasks-per-node=1")
    res["slurm_extra"] = " ".join(extra)  # always present (resource names are fixed per config); "" adds nothing
    for key, name in CLUSTER_RESOURCES.items():
        if cluster and cluster.get(key):
            res[name] = str(cluster[key])
    return res


def train_resource_names(cost: Mapping[str, Any], cluster: Mapping[str, Any] | None = None) -> list[str]:
    """The resource names :func:`train_resources` gives under this config (the same for every job)."""
    return list(train_resources(1.0, cost, cluster))


#: Checkpoint read rate assumed for evaluation jobs (bytes/s: a shared filesystem, safetensors into memory).
LOAD_BYTES_PER_SECOND = 1.0e9
#: Host memory floor of an evaluation job (MB; the profiles' default) and the process's own share (bytes).
EVAL_MIN_MEM_MB = 4000
EVAL_PROCESS_BYTES = 3 * memory.GIB


def eval_resources(flops: float, host_bytes: float, load_bytes: float, cost: Mapping[str, Any],
                   cluster: Mapping[str, Any] | None = None, threads: int = 1) -> dict[str, int | str]:
    """Plugin resources of one evaluation job: ``mem_mb``, ``runtime`` and ``cpus_per_task``; with GPUs one GPU
    (``gres=gpu[:model]:1``, ``cpus_per_gpu`` CPUs) and the ``cluster`` placement of training jobs."""
    gpus = cost["gpus_per_job"]
    rate = cost["peak_flops_per_gpu"] * cost["expected_mfu"] if gpus else float(cost["cpu_flops"])
    seconds = flops / rate + load_bytes / LOAD_BYTES_PER_SECOND
    runtime = math.ceil(seconds / 60 * cost["runtime_margin"]) + STARTUP_MINUTES
    cap = max_runtime(cluster)
    res: dict[str, int | str] = {"mem_mb": max(EVAL_MIN_MEM_MB, math.ceil(host_bytes / 2**20)),
                                 "runtime": min(runtime, cap) if cap else runtime}
    if gpus:
        model = cost.get("gpu_model")
        res["gres"] = f"gpu:{model}:1" if model else "gpu:1"
        res["tasks_per_gpu"] = 0
        res["cpus_per_task"] = int(cost["cpus_per_gpu"])
        for key, name in CLUSTER_RESOURCES.items():
            if cluster and cluster.get(key):
                res[name] = str(cluster[key])
    else:
        res["cpus_per_task"] = int(threads)
    return res


def eval_resource_names(cost: Mapping[str, Any], cluster: Mapping[str, Any] | None = None) -> list[str]:
    """The resource names :func:`eval_resources` gives under this config (the same for every job)."""
    return list(eval_resources(1.0, 0.0, 0.0, cost, cluster))


def eval_job_cost(plan: Any, key: str) -> dict[str, float]:
    """Tokens, forward FLOPs, checkpoint bytes read, host and GPU bytes of the evaluation job ``key`` of ``plan``.

    Tokens: every checkpoint of the run (the base model: one) on each suite file, each at most
    ``shards.heldout_max_sequences`` sequences of ``shards.seq_len`` tokens (an upper bound).
    """
    cfg = plan.cfg
    art = plan.artifact(key)
    size = art.job.meta["size"]
    arch = cfg["models"]["sizes"][size]
    seq_len = cfg["shards"]["seq_len"]
    run_key = art.spec.get("run")
    checkpoints = len(plan.artifact(run_key).job.checkpoint_tokens) if run_key else 1
    tokens = checkpoints * len(art.job.suites) * cfg["shards"]["heldout_max_sequences"] * seq_len
    shape = memory.size_shape(cfg, size)
    forward = cost_model.size_flops_per_token(arch, seq_len, shape.vocab_size) / 3
    on_gpu = cfg["cost"]["gpus_per_job"] > 0
    est = memory.eval_estimate(shape, seq_len, cfg["evaluate"]["batch_size"], on_gpu=on_gpu)
    weights = est.params
    host = 1.2 * (weights if on_gpu else est.total) + EVAL_PROCESS_BYTES
    return {"tokens": tokens, "flops": tokens * forward, "load_bytes": checkpoints * weights,
            "host_bytes": host, "gpu_bytes": est.total if on_gpu else 0.0}


def eval_resources_of(plan: Any, key: str) -> dict[str, int | str]:
    """SLURM resources of the evaluation job ``key`` of ``plan`` (:func:`eval_job_cost`, :func:`eval_resources`)."""
    c = eval_job_cost(plan, key)
    return eval_resources(c["flops"], c["host_bytes"], c["load_bytes"], plan.cfg["cost"], plan.cfg.get("cluster"),
                          plan.cfg["training"]["threads"])


def train_state_bytes(cfg: Mapping[str, Any], size: str) -> float:
    """Bytes of one resumable checkpoint of a size: weights, fp32 masters, Adam moments (per parameter:
    :data:`STATE_BYTES_PER_PARAM`)."""
    shape = memory.size_shape(cfg, size)
    embeddings = shape.d_model * shape.vocab_size * (1 if shape.tied_embeddings else 2)
    return float(shape.n_non_embedding + embeddings) * STATE_BYTES_PER_PARAM[cfg["cost"]["gpus_per_job"] > 0]


def train_resources_of(plan: Any, key: str) -> dict[str, int | str]:
    """SLURM resources of the training job ``key`` of ``plan`` (its FLOPs, train state and host memory;
    :func:`train_resources`)."""
    cfg = plan.cfg
    size = plan.size_of[key]
    return train_resources(plan.train_flops(key), cfg["cost"], cfg.get("cluster"), cfg["training"]["threads"],
                           train_state_bytes(cfg, size), host_memory.train_mem_mb(cfg, size))
