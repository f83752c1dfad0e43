# cpt-scaling: domain continued-pretraining scaling studies, from a raw text pool to fitted laws and figures.
# This file only loads and validates config, builds the sweep plan and includes the rule files.
from cpt_scaling.config.load import check_config_files, normalise_config
from cpt_scaling.core.keys import KEY_PATTERN
from cpt_scaling.plan.sweep import build_plan
from snakemake.logging import logger


if not workflow.overwrite_configfiles:
    logger.warning("No --configfile given: planning the demo sweep (config/demo.yaml). "
                   "Give your study's config with --configfile my_study.yaml.")
    configfile: "config/demo.yaml"


check_config_files(workflow.overwrite_configfiles)  # plain data only: no Python tags, no YTE templates
CONFIG_SOURCE = ", ".join(str(p) for p in workflow.overwrite_configfiles) or "config/demo.yaml"
CFG = normalise_config(config, CONFIG_SOURCE)
PLAN = build_plan(CFG)
ART = CFG["artifacts_dir"]
RES = CFG["results_dir"]

wildcard_constraints:
    key=KEY_PATTERN,
    name=r"[A-Za-z0-9_.+=-]+",
    domain="|".join(PLAN.domains),


include: "rules/common.smk"
include: "rules/classify.smk"
include: "rules/shards.smk"
include: "rules/train.smk"
include: "rules/evaluate.smk"
include: "rules/fit.smk"
include: "rules/figures.smk"
include: "rules/next.smk"  # optional: results/tables/next_runs_<domain>.csv, asked for by name
include: "rules/decide.smk"  # optional: results/decisions/<decision>_<domain>.json (the decide: section)


# The default target (it must live in this file: Snakemake ignores default targets set in included files).
rule all:
    default_target: True
    input:
        study_figures(PLAN),
        TABLES,
