# Shared helpers of the workflow: artifact path patterns, spec and param lookups, the default targets.
from cpt_scaling.keys import canonical_json


def artifact_pattern(stage, filename):
    """Output path pattern of a keyed artifact file."""
    return f"{ART}/{stage}/{{name}}-{{key}}/{filename}"


def log_pattern(stage):
    return f"logs/{stage}/{{name}}-{{key}}.log"


def inputs_of(wildcards):
    """Upstream files of the artifact named by the wildcards."""
    return list(PLAN.artifact(wildcards.key).inputs)


def job_of(wildcards):
    return PLAN.job_json(wildcards.key)


def spec_of(wildcards):
    return canonical_json(PLAN.artifact(wildcards.key).spec)


def train_resource(name):
    """Input function of one SLURM resource of a training job, from the cost model (cpt_scaling.resources)."""
    return lambda wildcards: PLAN.train_resources(wildcards.key)[name]


# Resources of training jobs: memory, runtime limit, CPUs; GPUs (gres) only when cost.gpus_per_job > 0; nodes,
# tasks and the srun launcher when cost.nodes_per_job > 1; partition/account/... when the config's cluster sets them.
TRAIN_RESOURCES = {name: train_resource(name) for name in PLAN.train_resource_names()}

FIGURES = [f"{RES}/figures/dcpt_{d}.pdf" for d in PLAN.domains] + [f"{RES}/figures/chinchilla.pdf"]
TABLES = [f"{RES}/tables/eval.csv"]

