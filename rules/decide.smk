# Optional target (never in the default target): results/decisions/<decision>_<domain>.json, the decision the
# config's decide: section asks for, reached in rounds (README: Ask for a decision; cpt_scaling.studies.decide).
# Round k is a checkpoint: it fits the runs so far and writes the next runs (or why it stops); the runs are the
# ordinary keyed training and evaluation artifacts of rules/train.smk and rules/evaluate.smk
# (cpt_scaling.plan.decide_stage), so a rerun, a kill or a changed config reuses every run done.
import functools
import json
from pathlib import Path


if CFG["decide"] is not None:
    DECISION = f"{CFG['decide']['decision']}_{CFG['decide']['domain']}"
    DECIDE_DIR = f"{RES}/decisions/{DECISION}"
    if workflow.is_main_process:  # not in every job's re-parse
        logger.info(PLAN.decide_summary())

    @functools.cache
    def decide_job_json():
        """The rounds' settings and candidates as a canonical string (built on first use: training jobs, which
        re-parse the workflow, never need it)."""
        return canonical_json(PLAN.decide_job())

    def decide_round_doc(k):
        """Round k's record; Snakemake runs its checkpoint first when it is missing."""
        return json.loads(Path(checkpoints.decide_round.get(round=str(k)).output.round).read_text())

    def decide_round_runs(wildcards):
        """Evaluation tables of the runs round k fits: the starting design, then the runs the rounds before it
        chose."""
        k = int(wildcards.round)
        if k == 0:
            return PLAN.decide_inputs(PLAN.decide_start())
        previous = decide_round_doc(k - 1)
        return PLAN.decide_inputs(previous["runs"] + previous["next"])

    def decide_rounds(wildcards):
        """Every round's record, up to the one that stops."""
        paths, k = [], 0
        while True:
            paths.append(checkpoints.decide_round.get(round=str(k)).output.round)
            if decide_round_doc(k)["status"] is not None:
                return paths
            k += 1

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


def refuse_other_decisions(argv):
    """Naming a decision or its figure that the config's decide: section does not ask for stops here, with one
    line naming the keys to set (not Snakemake's MissingRuleException)."""
    asked = None if CFG["decide"] is None else f"{CFG['decide']['decision']}_{CFG['decide']['domain']}"
    results = os.path.abspath(RES) + os.sep
    for arg in argv[1:]:
        path = os.path.abspath(arg)
        if not path.startswith(results):
            continue
        rel = path[len(results):]
        name = (rel[len("decisions/"):].split("/")[0].removesuffix(".json") if rel.startswith("decisions/")
                else rel[len("figures/decision_"):].removesuffix(".pdf") if rel.startswith("figures/decision_")
                else None)
        if name is not None and name != asked:
            have = f"it asks for {asked}" if asked else "it has no decide: section"
            print(f"{CONFIG_SOURCE}: {arg}: not the config's decision ({have}); set decide.decision and "
                  "decide.domain (README: Ask for a decision)", file=sys.stderr)
            sys.exit(1)


refuse_other_decisions(sys.argv)
