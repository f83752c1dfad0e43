# Stage "train": one job per pretraining run (per model size) and per continued-pretraining run
# (size, domain, mixture ratio, token budget). Resources come from the project's single cost model.


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
    resources:
        **TRAIN_RESOURCES,
        processes_per_node=CFG["training"]["processes_per_node"],
        # Passed as a resource, not a param: it changes memory, not weights, so toggling it reruns nothing.
        activation_checkpointing=int(CFG["training"]["activation_checkpointing"]),
    log:
        log_pattern("train"),
    benchmark:
        f"logs/benchmarks/train/{{name}}-{{key}}.tsv"
    conda:
        "../envs/cpt-scaling.yaml"
    script:
        "../workflow_scripts/train.py"
