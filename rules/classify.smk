# Stage "classify": a fastText domain classifier trained on labelled seeds, then one job per raw pool file.


rule train_classifier:
    input:
        inputs_of,
    output:
        model=artifact_pattern("classifier", "model.bin"),
        metrics=artifact_pattern("classifier", "metrics.json"),
        confusion=artifact_pattern("classifier", "confusion.pdf"),
        thresholds=artifact_pattern("classifier", "thresholds.json"),
        spec=artifact_pattern("classifier", "spec.json"),
    params:
        job=job_of,
        spec=spec_of,
    log:
        log_pattern("classifier"),
    conda:
        "../envs/cpt-scaling.yaml"
    script:
        "../workflow_scripts/classify.py"


rule classify_pool_file:
    input:
        inputs_of,
    output:
        labels=artifact_pattern("classified", "labels.parquet"),
        spec=artifact_pattern("classified", "spec.json"),
    params:
        job=job_of,
        spec=spec_of,
    log:
        log_pattern("classified"),
    conda:
        "../envs/cpt-scaling.yaml"
    script:
        "../workflow_scripts/classify.py"


# The classifier's quality report (per-class precision/recall/F1, confusion matrix, thresholds) beside the results,
# when a classifier is trained or given (labels a user brings need none).
rule classifier_report:
    input:
        metrics=lambda wc: PLAN.classifier.file("metrics.json"),
        confusion=lambda wc: PLAN.classifier.file("confusion.pdf"),
        thresholds=lambda wc: PLAN.classifier.file("thresholds.json"),
    output:
        metrics=f"{RES}/classifier/metrics.json",
        confusion=f"{RES}/classifier/confusion.pdf",
        thresholds=f"{RES}/classifier/thresholds.json",
    log:
        "logs/results/classifier_report.log",
    conda:
        "../envs/cpt-scaling.yaml"
    script:
        "../workflow_scripts/classify.py"
