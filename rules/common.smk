# Shared helpers of the workflow: artifact path patterns, spec and param lookups, the default targets.
import functools
import inspect
import json
import os
import sys
from pathlib import Path

from snakemake.logging import logger

from cpt_scaling.core.keys import canonical_json
from cpt_scaling.cost.resources import eval_resource_names, eval_resources_of
from cpt_scaling.dryrun.bill import register as register_bill

try:  # Snakemake-internal (9.x): where it is gone, input functions work unchanged, only slower to plan
    from snakemake.common import overwrite_function_params
except ImportError:
    overwrite_function_params = None


def fixed_signature(func):
    """Compute an input function's signature once: Snakemake otherwise inspects it for every job, about a
    tenth of building the DAG of a 10,000-job sweep (bench/bench_dag.py)."""
    if overwrite_function_params is not None:
        overwrite_function_params(func, inspect.signature(func).parameters)
    return func


def artifact_pattern(stage, filename):
    """Output path pattern of a keyed artifact file."""
    return f"{ART}/{stage}/{{name}}-{{key}}/{filename}"


def log_pattern(stage):
    return f"logs/{stage}/{{name}}-{{key}}.log"


@fixed_signature
def inputs_of(wildcards):
    """Upstream files of the artifact named by the wildcards."""
    return list(PLAN.artifact(wildcards.key).inputs)


@fixed_signature
def job_of(wildcards):
    return PLAN.job_json(wildcards.key)


@fixed_signature
def spec_of(wildcards):
    return canonical_json(PLAN.artifact(wildcards.key).spec)


def train_resource(name):
    """Input function of one SLURM resource of a training job, from the cost model (cpt_scaling.cost.resources)."""
    return fixed_signature(lambda wildcards: PLAN.train_resources(wildcards.key)[name])


# Resources of training jobs: memory, runtime limit, CPUs; GPUs (gres) only when cost.gpus_per_job > 0; nodes,
# tasks and the srun launcher when cost.nodes_per_job > 1; partition/account/... when the config's cluster sets them.
TRAIN_RESOURCES = {name: train_resource(name) for name in PLAN.train_resource_names()}


def eval_resource(name):
    """Input function of one SLURM resource of an evaluation job, from the same cost model (forward FLOPs of the
    suites, one GPU when cost.gpus_per_job > 0; cpt_scaling.cost.resources.eval_resources_of)."""
    return fixed_signature(lambda wildcards: eval_resources_of(PLAN, wildcards.key)[name])


EVAL_RESOURCES = {name: eval_resource(name) for name in eval_resource_names(CFG["cost"], CFG.get("cluster"))}


def exam_resource(name):
    """Input function of one SLURM resource of an exam job: those of an evaluation job of the same model (same
    checkpoints loaded; the exams' forward passes are far fewer than a held-out suite's)."""
    return fixed_signature(lambda wildcards: eval_resources_of(PLAN, PLAN.exam_eval_key(wildcards.key))[name])


EXAM_RESOURCES = {name: exam_resource(name) for name in eval_resource_names(CFG["cost"], CFG.get("cluster"))}


def train_retries():
    """None (the command line's --retries) unless some run needs several submissions; only in the main process:
    a job's own snakemake (in the SLURM job) must not restart it within the same allocation."""
    if not workflow.is_main_process:
        return None
    most = max((PLAN.train_resources(key)["submissions"] for key in PLAN.size_of), default=1)
    settings = getattr(workflow, "execution_settings", None)
    base = int(getattr(settings, "retries", 0) or 0)
    return None if most == 1 else most - 1 + base

def study_figures(plan):
    """Every figure of the sweep's studies: the outputs of the figure rules, which name the paths once
    (rules/figures.smk), for each enabled study and its domains. Called once rules/figures.smk is included."""

    def outputs(rule, domains=None):
        patterns = [str(p) for p in getattr(rules, rule).output]
        return patterns if domains is None else expand(patterns, domain=domains)

    figs = outputs("figures_chinchilla") if plan.chinchilla_enabled else []
    figs += outputs("figures_dcpt", plan.domains) if plan.dcpt_enabled else []
    if plan.cross_domain_enabled:
        figs += outputs("figures_cross_domain")
    figs += outputs("figures_specialization", plan.specialization_domains)
    figs += outputs("figures_split", plan.split_domains) if "split" not in plan.unavailable_studies() else []
    return figs


@fixed_signature
def next_runs_job(wildcards):
    """Settings of a next_runs job (rules/next.smk) from the config; imports its module only when asked."""
    from cpt_scaling.plan.next_runs import workflow_job

    return canonical_json(workflow_job(CFG, wildcards.domain))


# The decision target (rules/decide.smk): its name, its rounds' directory, and the input functions of its rules.
DECISION = None if CFG["decide"] is None else f"{CFG['decide']['decision']}_{CFG['decide']['domain']}"
DECIDE_DIR = f"{RES}/decisions/{DECISION}"


@functools.cache
def decide_job_json():
    """The rounds' settings and candidates as a canonical string (built on first use: training jobs, which
    re-parse the workflow, never need it)."""
    return canonical_json(PLAN.decide_job())


def decide_round_doc(k):
    """Round k's record; Snakemake runs its checkpoint first when it is missing."""
    return json.loads(Path(checkpoints.decide_round.get(round=str(k)).output.round).read_text())


def decide_round_runs(wildcards):
    """Evaluation tables of the runs round k fits: the starting design, then the runs the rounds before it
    chose."""
    k = int(wildcards.round)
    if k == 0:
        return PLAN.decide_inputs(PLAN.decide_start())
    previous = decide_round_doc(k - 1)
    return PLAN.decide_inputs(previous["runs"] + previous["next"])


def decide_rounds(wildcards):
    """Every round's record, up to the one that stops."""
    paths, k = [], 0
    while True:
        paths.append(checkpoints.decide_round.get(round=str(k)).output.round)
        if decide_round_doc(k)["status"] is not None:
            return paths
        k += 1


def refuse_other_decisions(argv):
    """Naming a decision or its figure that the config's decide: section does not ask for stops here, with one
    line naming the keys to set (not Snakemake's MissingRuleException)."""
    results = os.path.abspath(RES) + os.sep
    for arg in argv[1:]:
        path = os.path.abspath(arg)
        if not path.startswith(results):
            continue
        parts = Path(path[len(results):]).parts
        name = (parts[1].removesuffix(".json") if len(parts) > 1 and parts[0] == "decisions"
                else parts[1][len("decision_"):].removesuffix(".pdf")
                if len(parts) > 1 and parts[0] == "figures" and parts[1].startswith("decision_") else None)
        if name is not None and name != DECISION:
            have = f"it asks for {DECISION}" if DECISION else "it has no decide: section"
            print(f"{CONFIG_SOURCE}: {arg}: not the config's decision ({have}); set decide.decision and "
                  "decide.domain (README: Ask for a decision)", file=sys.stderr)
            sys.exit(1)


def refuse_unavailable_targets(plan, argv):
    """Studies without data (or whose annealed points would not identify their law) leave the default target
    with one INFO line; naming one of their outputs on the command line stops here with one line that says why
    and which config keys enable it (not a traceback). An output belongs to the study its file name starts with."""
    unavailable = plan.unavailable_studies()
    for study, reason in unavailable.items():
        if study != "next_runs":  # never in the default target
            logger.info(f"left out of the default target: {reason}")
    results = os.path.abspath(RES) + os.sep
    for arg in argv[1:]:
        name = os.path.basename(arg)
        study = next((s for s in unavailable if name == s or name.startswith((f"{s}_", f"{s}."))), None)
        if study is not None and os.path.abspath(arg).startswith(results):
            print(f"{CONFIG_SOURCE}: {arg}: {unavailable[study]}", file=sys.stderr)
            sys.exit(1)


refuse_unavailable_targets(PLAN, sys.argv)
refuse_other_decisions(sys.argv)
if workflow.is_main_process:  # not in every job's re-parse
    register_bill(PLAN, CFG, workflow.resource_settings)  # priced by the cpt-bill logger at a dry run's end
    _line, _warning = PLAN.size_summary()
    logger.info(_line)
    if _warning:
        logger.warning(_warning)
# Domains whose specialisation and D-CPT tables the seed findings read (rules/fit.smk: seed_findings).
FINDINGS_DOMAINS = [d for d in PLAN.specialization_domains if PLAN.dcpt_enabled and d in PLAN.domains]
# Domains whose split study adds its two findings (rules/fit.smk: fit_split writes them).
SPLIT_FINDINGS_DOMAINS = PLAN.split_domains if FINDINGS_DOMAINS and "split" not in PLAN.unavailable_studies() else []
TABLES = [f"{RES}/tables/eval.csv", f"{RES}/checkpoints.csv", f"{RES}/tables/train_curves.csv",
          *(f"{RES}/figures/train_curves_{group}.pdf" for group in PLAN.train_curve_groups()),
          *([f"{RES}/classifier/metrics.json"] if PLAN.classifier is not None else []),
          *([f"{RES}/tables/seed_findings.csv"] if FINDINGS_DOMAINS else [])]


onsuccess:
    logger.info(f"Done. Results are in {RES}/: figures/, laws/ (fitted laws), tables/ (eval.csv, decisions); "
                f"artifacts (checkpoints, shards) in {ART}/.")
