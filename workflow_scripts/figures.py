"""Adaptor for rules/figures.smk: draw one study's figures from its laws and tables."""

from pathlib import Path

from cpt_scaling.core.adaptor import rule_job, rule_step
from cpt_scaling.figures import chinchilla, cross_domain, dcpt, specialization, split

smk = snakemake  # type: ignore[name-defined]  # noqa: F821

DRAW = {
    "figures_dcpt": dcpt.draw,
    "figures_cross_domain": cross_domain.draw,
    "figures_chinchilla": chinchilla.draw,
    "figures_specialization": specialization.draw,
    "figures_split": split.draw,
}

with rule_job(smk):
    rule_step(smk, DRAW)({k: Path(v) for k, v in smk.input.items()}, {k: Path(v) for k, v in smk.output.items()})
