# Optional target (never in the default target): which runs to do next, from the sweep's own D-CPT fit, as
# `cpt-scaling next` chooses them (studies.next_runs: decision, budget, candidate grid; needs fit.bootstrap > 0).


rule next_runs:
    input:
        law=f"{RES}/laws/dcpt_{{domain}}.json",
        points=f"{RES}/tables/dcpt_points_{{domain}}.csv",
    output:
        table=f"{RES}/tables/next_runs_{{domain}}.csv",
    params:
        job=next_runs_job,
    log:
        "logs/results/next_runs_{domain}.log",
    conda:
        "../envs/cpt-scaling.yaml"
    script:
        "../workflow_scripts/next_runs.py"
