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


FIGURES = [f"{RES}/figures/dcpt_{d}.pdf" for d in PLAN.domains] + [f"{RES}/figures/chinchilla.pdf"]
TABLES = [f"{RES}/tables/eval.csv"]

