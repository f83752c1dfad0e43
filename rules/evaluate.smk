# Stage "evaluate": held-out loss of every checkpoint of a run on one suite, then one tidy table for the sweep.
# Resources (one GPU when cost.gpus_per_job > 0, memory, runtime) come from the project's single cost model.


rule evaluate:
    input:
        inputs_of,
    output:
        losses=artifact_pattern("eval", "losses.parquet"),
        spec=artifact_pattern("eval", "spec.json"),
    params:
        job=job_of,
        spec=spec_of,
    threads: CFG["training"]["threads"]
    resources:
        **EVAL_RESOURCES,
    log:
        log_pattern("eval"),
    conda:
        "../envs/cpt-scaling.yaml"
    script:
        "../workflow_scripts/evaluate.py"


# Exams (evaluate.exams, opt-in): every checkpoint of a run (or a local base model) on every exam through
# lm-eval-harness, offline (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE set in the job).
rule exam:
    input:
        inputs_of,
    output:
        scores=artifact_pattern("exam", "scores.parquet"),
        spec=artifact_pattern("exam", "spec.json"),
    params:
        job=job_of,
        spec=spec_of,
    threads: CFG["training"]["threads"]
    resources:
        **EXAM_RESOURCES,
    log:
        log_pattern("exam"),
    conda:
        "../envs/cpt-scaling.yaml"
    script:
        "../workflow_scripts/evaluate.py"


rule eval_table:
    input:
        lambda wc: PLAN.all_evals() + PLAN.all_exams(),
    output:
        csv=f"{RES}/tables/eval.csv",
        parquet=f"{RES}/tables/eval.parquet",
        checkpoints=f"{RES}/checkpoints.csv",
    log:
        "logs/results/eval_table.log",
    conda:
        "../envs/cpt-scaling.yaml"
    script:
        "../workflow_scripts/evaluate.py"
