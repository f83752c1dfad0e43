"""Adaptor for rules/decide.smk: one round of the decision target, the decision JSON, its figure (one step per
rule in ``STEPS``)."""

import json
from pathlib import Path
from typing import Any

from cpt_scaling.core.adaptor import rule_job, rule_step
from cpt_scaling.core.atomic import write_json
from cpt_scaling.figures.decide import draw_decision
from cpt_scaling.studies.decide import decision_doc, round_record

smk = snakemake  # type: ignore[name-defined]  # noqa: F821


def decide_round(job: dict[str, Any]) -> None:
    previous = json.loads(Path(smk.input.previous[0]).read_text()) if smk.input.previous else None
    tokens = job["dcpt"]["domain_tokens"] or json.loads(Path(smk.input.manifest).read_text())["train"]["n_tokens"]
    record = round_record(job, int(smk.wildcards.round), previous, float(tokens), [Path(p) for p in smk.input.evals])
    write_json(smk.output.round, record)


def decide(job: dict[str, Any]) -> None:
    rounds = [json.loads(Path(p).read_text()) for p in smk.input.rounds]
    write_json(smk.output.decision, decision_doc(job, rounds))


def figure_decision(job: dict[str, Any]) -> None:
    draw_decision(Path(smk.input.decision), Path(smk.output.figure))


STEPS = {
    "decide_round": decide_round,
    "decide": decide,
    "figure_decision": figure_decision,
}

with rule_job(smk) as job:
    rule_step(smk, STEPS)(job)
