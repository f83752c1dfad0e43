# Stage "train": one job per pretraining run (per model size) and per continued-pretraining run
# (size, domain, mixture ratio, token budget). Resources come from the project's single cost model.
#
# Runtime caps (cluster.max_runtime_minutes): a run the cost model expects to outlast the cap runs as several
# submissions of the cap each (resource `submissions`, shown by the dry run and `cpt-scaling cost`). The trainer
# stops itself before each job's end with a resumable checkpoint and exit status 75; Snakemake resubmits it and it
# resumes. The rule's retries are therefore the largest number of submissions any training job of the sweep needs,
# minus one, plus the --retries of the command line or profile (for genuine failures and preemptions).


rule train:
    input:
        inputs_of,
    output:
        checkpoints=artifact_pattern("train", "checkpoints.json"),
        spec=artifact_pattern("train", "spec.json"),
    params:
        job=job_of,
        spec=spec_of,
    threads: CFG["training"]["threads"]
    retries: train_retries()
    resources:
        **TRAIN_RESOURCES,
        processes_per_node=CFG["training"]["processes_per_node"],
        # Passed as resources, not params: they change memory or when a checkpoint is written, not weights, so
        # toggling them reruns nothing.
        activation_checkpointing=int(CFG["training"]["activation_checkpointing"]),
        checkpoint_seconds=round(CFG["training"]["checkpoint_minutes"] * 60),
        tensorboard=int(CFG["training"]["tensorboard"]),
    log:
        log_pattern("train"),
    benchmark:
        f"logs/benchmarks/train/{{name}}-{{key}}.tsv"
    conda:
        "../envs/cpt-scaling.yaml"
    script:
        "../workflow_scripts/train.py"


# Training curves (cheap, from the training logs): each run's curve stitched over the jobs it is spread over (a WSD
# branch: its trunk's segments, then its decay), as one table and a figure of loss against tokens per domain (and
# one of the pretraining runs). A figure reads only its own runs' logs, so a new run elsewhere redraws nothing.
rule train_curves:
    input:
        lambda wildcards: PLAN.train_curve_inputs(),
    output:
        csv=f"{RES}/tables/train_curves.csv",
    params:
        job=lambda wildcards: canonical_json(PLAN.train_curves_job()),
    log:
        "logs/results/train_curves.log",
    conda:
        "../envs/cpt-scaling.yaml"
    script:
        "../workflow_scripts/train_curves.py"


rule figures_train_curves:
    input:
        lambda wildcards: PLAN.train_curve_inputs(wildcards.group),
    output:
        figure=report(f"{RES}/figures/train_curves_{{group}}.pdf", caption="../report/train_curves.rst",
                      category="Training"),
    params:
        job=lambda wildcards: canonical_json(PLAN.train_curves_job(wildcards.group)),
    wildcard_constraints:
        group="|".join(PLAN.train_curve_groups()),
    log:
        "logs/results/figures_train_curves_{group}.log",
    conda:
        "../envs/cpt-scaling.yaml"
    script:
        "../workflow_scripts/train_curves.py"
