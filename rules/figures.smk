# Stage "figures": the plots a paper would show, each a target a user can name (list in README).


rule figures_dcpt:
    input:
        law=f"{RES}/laws/dcpt_{{domain}}.json",
        points=f"{RES}/tables/dcpt_points_{{domain}}.csv",
    output:
        ratio=report(f"{RES}/figures/dcpt_{{domain}}.pdf", caption="../report/dcpt.rst", category="D-CPT Law"),
        fit=report(f"{RES}/figures/dcpt_fit_{{domain}}.pdf", caption="../report/dcpt_fit.rst", category="D-CPT Law"),
    log:
        "logs/results/figures_dcpt_{domain}.log",
    conda:
        "../envs/cpt-scaling.yaml"
    script:
        "../workflow_scripts/figures.py"


rule figures_cross_domain:
    input:
        law=f"{RES}/laws/cross_domain.json",
        points=f"{RES}/tables/cross_domain_points.csv",
    output:
        figure=report(f"{RES}/figures/cross_domain.pdf", caption="../report/cross_domain.rst", category="D-CPT Law"),
    log:
        "logs/results/figures_cross_domain.log",
    conda:
        "../envs/cpt-scaling.yaml"
    script:
        "../workflow_scripts/figures.py"


rule figures_chinchilla:
    input:
        law=f"{RES}/laws/chinchilla.json",
        points=f"{RES}/tables/chinchilla_points.csv",
        frontier=f"{RES}/tables/chinchilla_frontier.csv",
    output:
        fit=report(f"{RES}/figures/chinchilla_fit.pdf", caption="../report/chinchilla.rst", category="Chinchilla"),
        frontier=report(
            f"{RES}/figures/chinchilla_frontier.pdf", caption="../report/chinchilla_frontier.rst", category="Chinchilla"
        ),
    log:
        "logs/results/figures_chinchilla.log",
    conda:
        "../envs/cpt-scaling.yaml"
    script:
        "../workflow_scripts/figures.py"


rule figures_specialization:
    input:
        law=f"{RES}/laws/specialization_{{domain}}.json",
        table=f"{RES}/tables/specialization_{{domain}}.csv",
        compute=f"{RES}/tables/specialization_compute_{{domain}}.csv",
        # With evaluate.exams: the tidy eval table's exam rows give the perplexity figure an exam-accuracy panel.
        **({"exams": f"{RES}/tables/eval.parquet"} if CFG["evaluate"]["exams"] else {}),
    output:
        ppl=report(
            f"{RES}/figures/specialization_ppl_{{domain}}.pdf", caption="../report/specialization_ppl.rst",
            category="Specialization",
        ),
        sger=report(
            f"{RES}/figures/specialization_sger_{{domain}}.pdf", caption="../report/specialization_sger.rst",
            category="Specialization",
        ),
        forgetting=report(
            f"{RES}/figures/specialization_forgetting_{{domain}}.pdf",
            caption="../report/specialization_forgetting.rst", category="Specialization",
        ),
        compute=report(
            f"{RES}/figures/specialization_compute_{{domain}}.pdf", caption="../report/specialization_compute.rst",
            category="Specialization",
        ),
    log:
        "logs/results/figures_specialization_{domain}.log",
    conda:
        "../envs/cpt-scaling.yaml"
    script:
        "../workflow_scripts/figures.py"


rule figures_split:
    input:
        law=f"{RES}/laws/split_{{domain}}.json",
        points=f"{RES}/tables/split_points_{{domain}}.csv",
        decisions=f"{RES}/tables/split_decisions_{{domain}}.csv",
    output:
        fraction=report(
            f"{RES}/figures/split_fraction_{{domain}}.pdf", caption="../report/split_fraction.rst", category="Split"
        ),
        optimal=report(
            f"{RES}/figures/split_optimal_{{domain}}.pdf", caption="../report/split_optimal.rst", category="Split"
        ),
    log:
        "logs/results/figures_split_{domain}.log",
    conda:
        "../envs/cpt-scaling.yaml"
    script:
        "../workflow_scripts/figures.py"
