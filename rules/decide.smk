# Optional target (never in the default target): results/decisions/<decision>_<domain>.json, the decision the
# config's decide: section asks for, reached in rounds (README: Ask for a decision; cpt_scaling.studies.decide).
# Round k is a checkpoint: it fits the runs so far and writes the next runs (or why it stops); the runs are the
# ordinary keyed training and evaluation artifacts of rules/train.smk and rules/evaluate.smk
# (cpt_scaling.plan.decide_stage), so a rerun, a kill or a changed config reuses every run done.


if CFG["decide"] is not None:
    if workflow.is_main_process:  # not in every job's re-parse
        logger.info(PLAN.decide_summary())

    checkpoint decide_round:
        input:
            evals=decide_round_runs,
            previous=lambda wc: [] if int(wc.round) == 0 else [f"{DECIDE_DIR}/round{int(wc.round) - 1}.json"],
            manifest=PLAN.shards[CFG["decide"]["domain"]].output,
        output:
            round=f"{DECIDE_DIR}/round{{round}}.json",
        params:
            job=lambda wc: decide_job_json(),
        wildcard_constraints:
            round=r"\d+",
        log:
            f"logs/results/decide_{DECISION}_round{{round}}.log",
        conda:
            "../envs/cpt-scaling.yaml"
        script:
            "../workflow_scripts/decide.py"

    rule decide:
        input:
            rounds=decide_rounds,
        output:
            decision=f"{RES}/decisions/{DECISION}.json",
        params:
            job=lambda wc: decide_job_json(),
        log:
            f"logs/results/decide_{DECISION}.log",
        conda:
            "../envs/cpt-scaling.yaml"
        script:
            "../workflow_scripts/decide.py"

    rule figure_decision:
        input:
            decision=f"{RES}/decisions/{DECISION}.json",
        output:
            figure=report(f"{RES}/figures/decision_{DECISION}.pdf", caption="../report/decision.rst",
                          category="Decision"),
        log:
            f"logs/results/figure_decision_{DECISION}.log",
        conda:
            "../envs/cpt-scaling.yaml"
        script:
            "../workflow_scripts/decide.py"

