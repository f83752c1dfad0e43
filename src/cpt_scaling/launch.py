"""How a training job starts: in the Snakemake job's own process, or through torchrun (several processes on a
node) and srun (several nodes). Multi-process runs call ``cpt-scaling train`` in every process.

Single node, P processes: ``python -m torch.distributed.run --standalone --nproc_per_node P -m cpt_scaling.cli
train --spec S --out O``. Several nodes: the same under ``srun`` (one task per node, the job's allocation) with a
c10d rendezvous on the first node of the allocation.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from cpt_scaling.atomic import write_json
from cpt_scaling.trainer import train

log = logging.getLogger(__name__)
RDZV_PORT = 29500


def launch_command(spec_file: Path, out_dir: Path, *, processes_per_node: int, nodes: int) -> list[str]:
    """The command line that runs one training job on ``nodes`` × ``processes_per_node`` processes."""
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes_per_node)]
    if nodes > 1:
        head = os.environ.get("SLURMD_NODENAME", "localhost")
        job = os.environ.get("SLURM_JOB_ID", "cpt-scaling")
        torchrun += ["--nnodes", str(nodes), "--rdzv-backend", "c10d", "--rdzv-endpoint", f"{head}:{RDZV_PORT}",
                     "--rdzv-id", job]
        torchrun = ["srun", f"--nodes={nodes}", "--ntasks-per-node=1", *torchrun]
    else:
        torchrun.append("--standalone")
    return [*torchrun, "-m", "cpt_scaling.cli", "train", "--spec", str(spec_file), "--out", str(out_dir)]


def run_training(job: dict[str, Any], out_dir: Path, *, processes_per_node: int = 1, nodes: int = 1) -> None:
    """Train in this process, or launch the multi-process command and wait for it."""
    if processes_per_node == 1 and nodes == 1:
        train(job, out_dir)
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    spec_file = out_dir / "launch_spec.json"
    write_json(spec_file, job)
    cmd = launch_command(spec_file, out_dir, processes_per_node=processes_per_node, nodes=nodes)
    log.info("launching: %s", " ".join(cmd))
    subprocess.run(cmd, check=True)
