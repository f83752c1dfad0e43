"""Host (CPU) memory of one training job, per rank and per node: what its SLURM ``--mem`` must hold.

The GPU side is :mod:`cpt_scaling.cost.memory`; notation as there (``P`` parameters, ``G`` ranks of the job,
``R`` ranks on one node). All quantities are bytes.

Two phases; the job's peak is the larger:

* **Load.** Every rank runs a process with torch, CUDA and DeepSpeed loaded (:data:`PROCESS_BYTES`: 3 GiB
  with CUDA, 1 GiB without). Without ``zero.Init`` (ZeRO-0/1/2) each rank loads the *full* model on the host
  before ``deepspeed.initialize`` moves it to its GPU: in the load dtype (``e·P``: bf16 on GPU, fp32 on CPU)
  plus the checkpoint file's pages, shared by the node's ranks (``e·P`` once); a size without a base
  checkpoint is first built from config in fp32 (``4·P`` per rank, no file), and the larger counts. With
  ``zero.Init`` (ZeRO-3: the trainer builds and loads under HF's DeepSpeed config) each rank creates only its
  partition on its GPU and rank 0 alone reads the checkpoint's state dict (``e·P``).
* **Train and save.** Optimizer offload pins the fp32 master weights, Adam moments and fp32 gradients of the
  rank's partition (``16·P/G``). The step's token rows (``uint32`` from the memory-mapped shards and their
  ``int64`` copy). A resumable save copies this rank's optimizer state to the host (``12·P/G`` under ZeRO-1/2/3,
  ``12·P`` replicated under ZeRO-0, nothing extra when it is already offloaded there) and its weights
  (ZeRO-3: its ``2·P/G`` partition; otherwise rank 0 writes the replicated ``2·P``); an evaluation checkpoint
  also gathers the full 16-bit weights onto rank 0 (``2·P``), the larger of the two on rank 0.

Training on CPUs (no GPUs): the GPU model's per-process estimate is host memory, plus the process itself.

SLURM ``mem_mb`` of a node: the peak times ``1 +`` :data:`HOST_MARGIN`, never below ``cost.mem_mb`` (the floor).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cpt_scaling.core.errors import InputError
from cpt_scaling.cost import memory
from cpt_scaling.cost.memory import GIB, ModelShape, TrainSetup

#: Resident memory of one training process before its model: CUDA context and libraries, torch, DeepSpeed; on a
#: CPU-only job (no CUDA libraries loaded) less.
PROCESS_BYTES = {True: 3 * GIB, False: 1 * GIB}
#: Headroom of a job's ``mem_mb`` over the modelled peak (allocator, page cache of logs and shards, Python).
HOST_MARGIN = 0.2
#: Token rows per step: the shard's uint32 rows and their int64 tensor.
ROW_BYTES_PER_TOKEN = 4 + 8


@dataclass(frozen=True)
class HostEstimate:
    """Modelled host bytes of one node of a training job, by phase and component."""

    processes: int  # every rank's process on the node
    load: int  # building or loading the model, beyond the processes
    pinned: int  # offloaded optimizer partitions (pinned)
    rows: int  # the step's token rows
    save: int  # the copies a checkpoint save makes

    @property
    def load_peak(self) -> int:
        return self.processes + self.load

    @property
    def train_peak(self) -> int:
        return self.processes + self.pinned + self.rows + self.save

    @property
    def total(self) -> int:
        """The node's peak: the larger of the load and the train/save phase."""
        return max(self.load_peak, self.train_peak)

    @property
    def gib(self) -> float:
        return self.total / GIB


def ranks_per_node(setup: TrainSetup, nodes: int) -> int:
    """Ranks on one node of a job of ``setup.gpus`` ranks over ``nodes`` nodes."""
    return max(1, setup.gpus // max(1, nodes))


def load_bytes(shape: ModelShape, setup: TrainSetup, nodes: int = 1, scratch: bool = False) -> int:
    """Host bytes of one node while the ranks load the model from a checkpoint, or (``scratch``: a size without
    a base checkpoint, whose first job builds it from config) the larger of that and building it."""
    p, per_node = shape.total_params, ranks_per_node(setup, nodes)
    e = 2 if setup.precision == "bf16" else 4
    if setup.zero_stage == 3:  # zero.Init: partitions on the GPUs; rank 0 reads the checkpoint's state dict
        return e * p
    from_checkpoint = per_node * e * p + e * p  # every rank's model, the file's pages once
    from_config = per_node * 4 * p if scratch else 0  # every rank builds the fp32 model
    return max(from_checkpoint, from_config)


def save_bytes(shape: ModelShape, setup: TrainSetup, nodes: int = 1) -> int:
    """Host copies of one node's ranks during a checkpoint save (rank 0's node)."""
    p, g, per_node = shape.total_params, max(1, setup.gpus), ranks_per_node(setup, nodes)
    optimizer = 0 if setup.offload_optimizer else (12 * p if setup.zero_stage == 0 else 12 * p // g)
    if setup.precision == "fp32":
        optimizer = 0  # CPU training: the state already lives on the host
    e = 2 if setup.precision == "bf16" else 4
    weights = e * p // g if setup.zero_stage == 3 else 0
    export = e * p  # rank 0: the replicated weights, or ZeRO-3's gathered ones at an evaluation checkpoint
    return per_node * (optimizer + weights) + export


def host_estimate(shape: ModelShape, setup: TrainSetup, *, nodes: int = 1, batch_size: int = 1,
                  scratch: bool = False) -> HostEstimate:
    """Modelled host memory of one node of a training job (module docstring; ``scratch``: :func:`load_bytes`)."""
    p, g, per_node = shape.total_params, max(1, setup.gpus), ranks_per_node(setup, nodes)
    processes = per_node * PROCESS_BYTES[setup.on_gpu]
    rows = per_node * (batch_size // g) * setup.seq_len * ROW_BYTES_PER_TOKEN
    if not setup.on_gpu:  # CPU training: the per-process estimate is host memory
        return HostEstimate(processes, load_bytes(shape, setup, nodes, scratch),
                            per_node * memory.estimate(shape, setup).total, rows, save_bytes(shape, setup, nodes))
    pinned = per_node * 16 * p // g if setup.offload_optimizer else 0
    load = load_bytes(shape, setup, nodes, scratch)
    return HostEstimate(processes, load, pinned, rows, save_bytes(shape, setup, nodes))


def mem_mb(estimate: HostEstimate, floor_mb: int) -> int:
    """SLURM ``mem_mb`` (per node, MiB) of a modelled peak: with :data:`HOST_MARGIN`, at least ``floor_mb``."""
    return max(int(floor_mb), math.ceil(estimate.total * (1 + HOST_MARGIN) / 2**20))


def train_host_estimate(cfg: Mapping[str, Any], size: str) -> HostEstimate:
    """Host memory of one node of a training job of ``models.sizes.<size>`` under the config."""
    return host_estimate(memory.size_shape(cfg, size), TrainSetup.from_config(cfg), nodes=cfg["cost"]["nodes_per_job"],
                         batch_size=cfg["training"]["batch_size"],
                         scratch=not cfg["models"]["sizes"][size].get("base_checkpoint"))


def train_mem_mb(cfg: Mapping[str, Any], size: str) -> int:
    """``mem_mb`` of a training job of ``size``: :func:`train_host_estimate` with the margin, at least
    ``cost.mem_mb``."""
    return mem_mb(train_host_estimate(cfg, size), cfg["cost"]["mem_mb"])


def check_host_fits(cfg: Mapping[str, Any], where: str) -> None:
    """With ``cost.node_memory_gb`` set, refuse a sweep whose training job would ask SLURM for more memory per
    node than a node has: one :class:`~cpt_scaling.core.errors.InputError` line naming the size and the numbers."""
    node_gb = cfg["cost"].get("node_memory_gb")
    if not node_gb:
        return
    for size in cfg["models"]["sizes"]:
        asked = train_mem_mb(cfg, size)
        if asked * 2**20 > node_gb * GIB:
            raise InputError(where, f"models.sizes.{size}: a training job needs {asked} MB of host memory per node "
                                    f"(host-memory model {train_host_estimate(cfg, size).gib:.1f} GiB + "
                                    f"{HOST_MARGIN:.0%}, at least cost.mem_mb), above cost.node_memory_gb="
                                    f"{node_gb:g}; use ZeRO-3 (zero.Init loads partitions) or more nodes")
