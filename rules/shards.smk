# Stage "shards": a tokenizer, then tokenized, packed Parquet shards per domain and for the general mix, each with
# a held-out evaluation suite split off by document hash.


rule tokenizer:
    input:
        inputs_of,
    output:
        tokenizer=artifact_pattern("tokenizer", "tokenizer.json"),
        spec=artifact_pattern("tokenizer", "spec.json"),
    params:
        job=job_of,
        spec=spec_of,
    log:
        log_pattern("tokenizer"),
    conda:
        "../envs/cpt-scaling.yaml"
    script:
        "../workflow_scripts/shards.py"


rule shards:
    input:
        inputs_of,
    output:
        manifest=artifact_pattern("shards", "manifest.json"),
        heldout=artifact_pattern("shards", "heldout.parquet"),
        validation=artifact_pattern("shards", "validation.parquet"),
        spec=artifact_pattern("shards", "spec.json"),
    params:
        job=job_of,
        spec=spec_of,
    log:
        log_pattern("shards"),
    conda:
        "../envs/cpt-scaling.yaml"
    script:
        "../workflow_scripts/shards.py"
