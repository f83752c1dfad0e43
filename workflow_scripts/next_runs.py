"""Adaptor for rules/next.smk: the runs to do next from the sweep's D-CPT fit (one step per rule in ``STEPS``)."""

import json
import logging
from pathlib import Path
from typing import Any

from cpt_scaling.core.adaptor import rule_job, rule_step
from cpt_scaling.core.atomic import write_text
from cpt_scaling.fit.points import read_points
from cpt_scaling.fit.proposal import format_table
from cpt_scaling.plan import next_runs

smk = snakemake  # type: ignore[name-defined]  # noqa: F821
log = logging.getLogger("cpt_scaling")


def next_runs_table(job: dict[str, Any]) -> None:
    law = Path(smk.input.law)
    prop = next_runs.propose_for_sweep(json.loads(law.read_text()), read_points(smk.input.points), job, str(law))
    log.info("%s", format_table(prop))
    write_text(smk.output.table, prop.chosen.to_csv(index=False))


STEPS = {
    "next_runs": next_runs_table,
}

with rule_job(smk) as job:
    rule_step(smk, STEPS)(job)
