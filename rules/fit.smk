# Stage "fit": scaling-law fits with bootstrap intervals and held-out error.


rule fit_dcpt:
    input:
        lambda wc: PLAN.dcpt_evals(wc.domain),
    output:
        law=f"{RES}/laws/dcpt_{{domain}}.json",
        points=f"{RES}/tables/dcpt_{{domain}}_points.csv",
    params:
        fit=canonical_json(CFG["fit"]),
    log:
        "logs/results/fit_dcpt_{domain}.log",
    conda:
        "../envs/cpt-scaling.yaml"
    script:
        "../workflow_scripts/fit.py"


rule fit_chinchilla:
    input:
        PLAN.pretrain_evals(),
    output:
        law=f"{RES}/laws/chinchilla.json",
        points=f"{RES}/tables/chinchilla_points.csv",
    params:
        fit=canonical_json(CFG["fit"]),
    log:
        "logs/results/fit_chinchilla.log",
    conda:
        "../envs/cpt-scaling.yaml"
    script:
        "../workflow_scripts/fit.py"
