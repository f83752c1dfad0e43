# Stage "fit": scaling-law fits with bootstrap intervals, held-out error and the decisions they answer.


rule fit_dcpt:
    input:
        evals=lambda wc: PLAN.dcpt_evals(wc.domain),
        manifest=lambda wc: PLAN.shards[wc.domain].output,
    output:
        law=f"{RES}/laws/dcpt_{{domain}}.json",
        points=f"{RES}/tables/dcpt_points_{{domain}}.csv",
        usages=f"{RES}/tables/dcpt_usages_{{domain}}.csv",
    params:
        fit=canonical_json(CFG["fit"]),
        study=canonical_json(CFG["studies"]["dcpt"]),
    log:
        "logs/results/fit_dcpt_{domain}.log",
    conda:
        "../envs/cpt-scaling.yaml"
    script:
        "../workflow_scripts/fit.py"


rule fit_cross_domain:
    input:
        evals=lambda wc: PLAN.cross_domain_evals(),
    output:
        law=f"{RES}/laws/cross_domain.json",
        points=f"{RES}/tables/cross_domain_points.csv",
    params:
        fit=canonical_json(CFG["fit"]),
        domains=PLAN.domains,
    log:
        "logs/results/fit_cross_domain.log",
    conda:
        "../envs/cpt-scaling.yaml"
    script:
        "../workflow_scripts/fit.py"


rule fit_chinchilla:
    input:
        evals=lambda wc: PLAN.pretrain_evals(),
    output:
        law=f"{RES}/laws/chinchilla.json",
        points=f"{RES}/tables/chinchilla_points.csv",
        frontier=f"{RES}/tables/chinchilla_frontier.csv",
    params:
        fit=canonical_json(CFG["fit"]),
    log:
        "logs/results/fit_chinchilla.log",
    conda:
        "../envs/cpt-scaling.yaml"
    script:
        "../workflow_scripts/fit.py"


rule fit_specialization:
    input:
        evals=lambda wc: PLAN.specialization_evals(wc.domain),
    output:
        law=f"{RES}/laws/specialization_{{domain}}.json",
        table=f"{RES}/tables/specialization_{{domain}}.csv",
        compute=f"{RES}/tables/specialization_compute_{{domain}}.csv",
    params:
        fit=canonical_json(CFG["fit"]),
        study=canonical_json(CFG["studies"]["specialization"]),
    log:
        "logs/results/fit_specialization_{domain}.log",
    conda:
        "../envs/cpt-scaling.yaml"
    script:
        "../workflow_scripts/fit.py"


rule fit_split:
    input:
        evals=lambda wc: PLAN.split_evals(wc.domain),
    output:
        law=f"{RES}/laws/split_{{domain}}.json",
        points=f"{RES}/tables/split_points_{{domain}}.csv",
        decisions=f"{RES}/tables/split_decisions_{{domain}}.csv",
        findings=f"{RES}/tables/split_findings_{{domain}}.csv",
    params:
        fit=canonical_json(CFG["fit"]),
        study=canonical_json(CFG["studies"]["split"]),
    log:
        "logs/results/fit_split_{domain}.log",
    conda:
        "../envs/cpt-scaling.yaml"
    script:
        "../workflow_scripts/fit.py"


rule seed_findings:
    input:
        specialization=expand(f"{RES}/tables/specialization_{{domain}}.csv", domain=FINDINGS_DOMAINS),
        points=expand(f"{RES}/tables/dcpt_points_{{domain}}.csv", domain=FINDINGS_DOMAINS),
        usages=expand(f"{RES}/tables/dcpt_usages_{{domain}}.csv", domain=FINDINGS_DOMAINS),
        split=expand(f"{RES}/tables/split_findings_{{domain}}.csv", domain=SPLIT_FINDINGS_DOMAINS),
    output:
        table=f"{RES}/tables/seed_findings.csv",
    params:
        domains=FINDINGS_DOMAINS,
        split_domains=SPLIT_FINDINGS_DOMAINS,
        run_noise=CFG["fit"]["run_noise"],
    log:
        "logs/results/seed_findings.log",
    conda:
        "../envs/cpt-scaling.yaml"
    script:
        "../workflow_scripts/findings.py"
