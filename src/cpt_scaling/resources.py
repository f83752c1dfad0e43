"""From the one cost model to SLURM resources (snakemake-executor-plugin-slurm names) and expected runtimes.

Inputs are a run's training FLOPs (:mod:`cpt_scaling.cost`: ``tokens · (6·(N + d·V) + 12·L·d·T)``) and the
config's ``cost`` and ``cluster`` sections. Conventions:

* ``cost.gpus_per_job`` is the total number of GPUs of one training job, spread evenly over
  ``cost.nodes_per_job`` nodes. A job gets a GPU request (``gres=gpu[:model]:<per node>``) only when it is
  > 0: a CPU-only cluster never sees one.
* Expected seconds = FLOPs / (GPUs · peak FLOP/s · expected MFU), or FLOPs / ``cost.cpu_flops`` without GPUs.
  The SLURM runtime limit adds ``cost.runtime_margin`` (a factor) and 5 minutes of start-up.
* Multi-node jobs (``nodes_per_job > 1``) follow the plugin's ``mpi`` pattern: one task per node, the job's
  command launches ``srun`` itself (``resources.mpi``), e.g. ``srun torchrun --nnodes {resources.nodes} ...``.
* Partition, account, constraint and QoS come from ``cluster`` when set; otherwise from the profile or the
  command line (``--default-resources slurm_partition=... slurm_account=...``). Nothing is hard-coded.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from cpt_scaling.errors import InputError

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
    of a node is an :class:`~cpt_scaling.errors.InputError` (so no GPU idles, none is oversubscribed)."""
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


def train_resources(flops: float, cost: Mapping[str, Any], cluster: Mapping[str, Any] | None = None,
                    threads: int = 1) -> dict[str, int | str]:
    """Plugin resources of one training job.

    Always ``mem_mb`` (per node), ``runtime`` (minutes) and ``cpus_per_task``; with GPUs ``gres`` and
    ``tasks_per_gpu=0`` (one task drives all GPUs of a node); with several nodes ``nodes``, ``tasks`` (one per
    node), ``mpi="srun"`` and ``slurm_extra`` (``--ntasks-per-node=1``); placement keys from ``cluster``.
    """
    check_cost_config(cost)
    gpus, nodes = cost["gpus_per_job"], cost["nodes_per_job"]
    res: dict[str, int | str] = {"mem_mb": int(cost["mem_mb"]), "runtime": runtime_minutes(flops, cost)}
    if gpus:
        per_node = gpus // nodes
        model = cost.get("gpu_model")
        res["gres"] = f"gpu:{model}:{per_node}" if model else f"gpu:{per_node}"
        res["tasks_per_gpu"] = 0
        res["cpus_per_task"] = int(cost["cpus_per_gpu"]) * per_node
    else:
        res["cpus_per_task"] = int(threads)
    if nodes > 1:
        res.update(nodes=nodes, tasks=nodes, mpi="srun", slurm_extra="--ntasks-per-node=1")
    for key, name in CLUSTER_RESOURCES.items():
        if cluster and cluster.get(key):
            res[name] = str(cluster[key])
    return res


def train_resource_names(cost: Mapping[str, Any], cluster: Mapping[str, Any] | None = None) -> list[str]:
    """The resource names :func:`train_resources` gives under this config (the same for every job)."""
    return list(train_resources(1.0, cost, cluster))
