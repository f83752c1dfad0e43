# Stage "figures": the plots a paper would show, each a target a user can name.


rule figure_dcpt:
    input:
        law=f"{RES}/laws/dcpt_{{domain}}.json",
        points=f"{RES}/tables/dcpt_{{domain}}_points.csv",
    output:
        pdf=report(f"{RES}/figures/dcpt_{{domain}}.pdf", caption="../report/dcpt.rst", category="D-CPT Law"),
    log:
        "logs/results/figure_dcpt_{domain}.log",
    conda:
        "../envs/cpt-scaling.yaml"
    script:
        "../workflow_scripts/figures.py"


rule figure_chinchilla:
    input:
        law=f"{RES}/laws/chinchilla.json",
        points=f"{RES}/tables/chinchilla_points.csv",
    output:
        pdf=report(f"{RES}/figures/chinchilla.pdf", caption="../report/chinchilla.rst", category="Chinchilla"),
    log:
        "logs/results/figure_chinchilla.log",
    conda:
        "../envs/cpt-scaling.yaml"
    script:
        "../workflow_scripts/figures.py"
