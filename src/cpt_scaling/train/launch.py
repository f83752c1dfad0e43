"""How a training job starts: in the Snakemake job's own process, or through torchrun (several processes on a
node) and srun (several nodes). Multi-process runs call ``cpt-scaling train`` in every process.

Single node, P processes: ``python -m torch.distributed.run --standalone --nproc_per_node P -m cpt_scaling.cli
train --spec S --out O``. Several nodes: the same under ``srun`` (one task per node, the job's allocation) with a
c10d rendezvous on the first node of the allocation.

Stop signals reach every training process: SLURM's warning (``--signal=TERM@<lead>``, which it sends to every
process of the job's steps) and a SIGTERM/SIGUSR1 sent to this process alone, which is forwarded to the workers
as SIGUSR1 (torchrun is started ignoring SIGUSR1, so only the workers act on it). torchrun's own SIGTERM
handling forwards SIGTERM and waits :data:`SHUTDOWN_TIMEOUT_S` for the workers' checkpoint. A run that stopped
for a resubmission (:data:`cpt_scaling.train.resubmit.RESUBMIT_MARKER`) raises
:class:`~cpt_scaling.train.resubmit.Resubmit` here too, so the job exits with status 75 either way.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from cpt_scaling.core.atomic import write_json
from cpt_scaling.core.errors import InputError
from cpt_scaling.cost.resources import STOP_SLACK_SECONDS
from cpt_scaling.train import train_log
from cpt_scaling.train.resubmit import RESUBMIT_MARKER, STOP_SIGNALS, Resubmit
from cpt_scaling.train.run_setup import check_environment
from cpt_scaling.train.spec_types import TrainSpec
from cpt_scaling.train.trainer import train

log = logging.getLogger(__name__)
RDZV_PORT = 29500
#: How long torchrun waits for its workers after a SIGTERM before it kills them (their resumable checkpoint).
SHUTDOWN_TIMEOUT_S = 1800
_LEFT = re.compile(r"^(?:(\d+)-)?(?:(\d+):)?(\d+):(\d+)$")


def _seconds_left(text: str) -> int | None:
    """``squeue -o %L`` (``[D-][H:]M:S``) in seconds; None for UNLIMITED/NOT_SET or anything else."""
    m = _LEFT.match(text.strip())
    if not m:
        return None
    days, hours, minutes, seconds = (int(g) if g else 0 for g in m.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def _descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (from /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo += children.get(current, [])
    return found


#: The measured save time is scaled by this before it becomes a stop margin (a save varies with the filesystem).
SAVE_TIME_FACTOR = 1.5


def stop_margin(out_dir: Path, modelled_s: int, limit_minutes: int = 0) -> int:
    """Seconds before the job's end at which training stops: the cost model's margin (``stop_margin_s``), or
    longer when this run already logged a slower resumable save (:func:`~cpt_scaling.train.train_log.longest_save`
    times :data:`SAVE_TIME_FACTOR`, plus :data:`~cpt_scaling.cost.resources.STOP_SLACK_SECONDS`); like the modelled
    margin, at most a quarter of the job's limit ``limit_minutes`` (when given), so every submission trains."""
    measured = train_log.longest_save(Path(out_dir) / train_log.LOG_NAME)
    if measured is None:
        return int(modelled_s)
    margin = max(int(modelled_s), math.ceil(SAVE_TIME_FACTOR * measured) + STOP_SLACK_SECONDS)
    if limit_minutes > 0:
        margin = min(margin, max(int(modelled_s), int(limit_minutes * 60 / 4)))
    if margin > modelled_s:
        log.info("stop margin %d s from the longest logged save (%.0f s), above the modelled %d s", margin,
                 measured, modelled_s)
    return margin


def job_deadline(runtime_minutes: int, margin_s: int) -> float | None:
    """The Unix time by which a SLURM training job must have stopped: its end less ``margin_s``.

    The end is SLURM's time left for ``$SLURM_JOB_ID`` (``squeue``), else ``runtime_minutes`` from now; outside
    SLURM (no ``SLURM_JOB_ID``) there is no deadline (None).
    """
    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        return None
    left = None
    try:
        out = subprocess.run(["squeue", "-h", "-j", job, "-o", "%L"], capture_output=True, text=True, timeout=30)
        left = _seconds_left(out.stdout) if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        left = None
    if left is None:
        if not runtime_minutes:
            return None
        left = runtime_minutes * 60
    deadline = time.time() + left - margin_s
    log.info("SLURM job %s: %d s left; training stops by %s (margin %d s)", job, left,
             time.strftime("%H:%M:%S", time.localtime(deadline)), margin_s)
    return deadline


def launch_command(spec_file: Path, out_dir: Path, *, processes_per_node: int, nodes: int,
                   cpus_per_task: int | None = None) -> list[str]:
    """The command line that runs one training job on ``nodes`` × ``processes_per_node`` processes.

    Several nodes: the ``srun`` step passes ``--cpus-per-task`` (``cpus_per_task``, else the allocation's
    ``$SLURM_CPUS_PER_TASK``): since Slurm 22.05 a step no longer inherits it, and each node's torchrun and its
    workers would share one CPU.
    """
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes_per_node),
                "--shutdown-timeout", str(SHUTDOWN_TIMEOUT_S)]
    if nodes > 1:
        head = os.environ.get("SLURMD_NODENAME", "localhost")
        job = os.environ.get("SLURM_JOB_ID", "cpt-scaling")
        torchrun += ["--nnodes", str(nodes), "--rdzv-backend", "c10d", "--rdzv-endpoint", f"{head}:{RDZV_PORT}",
                     "--rdzv-id", job]
        cpus = cpus_per_task or int(os.environ.get("SLURM_CPUS_PER_TASK", "0"))
        if cpus < 1:
            raise InputError("cpus_per_task", "a multi-node launch needs the CPUs per node (the job's "
                                              "cpus_per_task resource or $SLURM_CPUS_PER_TASK)")
        torchrun = ["srun", f"--nodes={nodes}", "--ntasks-per-node=1", f"--cpus-per-task={cpus}", *torchrun]
    else:
        torchrun.append("--standalone")
    return [*torchrun, "-m", "cpt_scaling.cli", "train", "--spec", str(spec_file), "--out", str(out_dir)]


def run_training(spec: TrainSpec | dict[str, Any], out_dir: Path, *, processes_per_node: int = 1,
                 nodes: int = 1, cpus_per_task: int | None = None) -> None:
    """Train as ``spec`` (or its JSON form) says in this process, or launch the multi-process command and wait
    for it (``cpus_per_task``: CPUs per node of a multi-node step, :func:`launch_command`)."""
    if isinstance(spec, dict):
        spec = TrainSpec.from_json(spec)
    check_environment(spec)  # once, before any process starts
    if processes_per_node == 1 and nodes == 1:
        train(spec, out_dir)
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    spec_file = out_dir / "launch_spec.json"
    write_json(spec_file, spec.to_json())
    cmd = launch_command(spec_file, out_dir, processes_per_node=processes_per_node, nodes=nodes,
                         cpus_per_task=cpus_per_task)
    marker = out_dir / RESUBMIT_MARKER
    marker.unlink(missing_ok=True)
    log.info("launching: %s", " ".join(cmd))
    old_usr1 = signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # inherited by torchrun (the workers set their own)
    try:
        proc = subprocess.Popen(cmd)
    finally:
        signal.signal(signal.SIGUSR1, old_usr1)

    def forward(_signum: int, _frame: object) -> None:
        for pid in _descendants(proc.pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGUSR1)

    old = {sig: signal.signal(sig, forward) for sig in STOP_SIGNALS}
    try:
        code = proc.wait()
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    if marker.is_file():
        stopped = json.loads(marker.read_text())
        raise Resubmit(int(stopped["step"]), str(stopped["reason"]))
    if code != 0:
        raise subprocess.CalledProcessError(code, cmd)
