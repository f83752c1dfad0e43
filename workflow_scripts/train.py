"""Adaptor for rules/train.smk: one pretraining or continued-pretraining run.

Under SLURM the job's end (``squeue``'s time left, else the ``runtime`` resource from now) less the resource
``stop_margin_s`` (or the run's own longest logged save, :func:`cpt_scaling.train.launch.stop_margin`) becomes the
trainer's ``stop_at``: it stops there with a resumable checkpoint and exit status 75
(:data:`cpt_scaling.train.resubmit.RESUBMIT_EXIT_CODE`), and the rule's retries resubmit it.
"""

from pathlib import Path

from cpt_scaling.core.adaptor import rule_job
from cpt_scaling.train.launch import job_deadline, run_training, stop_margin
from cpt_scaling.train.runs import resolve_init
from cpt_scaling.train.spec_types import TrainSpec
from cpt_scaling.train.tensorboard_log import TENSORBOARD_ROOT

smk = snakemake  # type: ignore[name-defined]  # noqa: F821

with rule_job(smk) as job:
    job["init"] = resolve_init(job["init"])
    job["threads"] = int(smk.threads)
    job["device"] = "cuda" if smk.resources.get("gres") else None  # given GPUs: refuse to train without CUDA
    job["activation_checkpointing"] = bool(int(smk.resources.get("activation_checkpointing", 0)))
    job["checkpoint_minutes"] = int(smk.resources.get("checkpoint_seconds", 0)) / 60
    out_dir = Path(smk.output.checkpoints).parent
    if int(smk.resources.get("tensorboard", 0)):  # beside the job's log, outside the artifact (no digests)
        job["tensorboard_dir"] = str(Path(TENSORBOARD_ROOT) / out_dir.name)
    # The modelled margin, or longer where an earlier submission of this run logged a slower resumable save.
    margin = stop_margin(out_dir, int(smk.resources.get("stop_margin_s", 0)), int(smk.resources.get("runtime", 0)))
    job["stop_at"] = job_deadline(int(smk.resources.get("runtime", 0)), margin)
    run_training(TrainSpec.from_json(job), out_dir,
                 processes_per_node=int(smk.resources.get("processes_per_node", 1)),
                 nodes=int(smk.resources.get("nodes", 1)), cpus_per_task=int(smk.resources.get("cpus_per_task", 0)))
