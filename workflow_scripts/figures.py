"""Adaptor for rules/figures.smk: draw one figure from a law and its points."""

from pathlib import Path

from cpt_scaling.adaptor import rule_job
from cpt_scaling.figures import plot_chinchilla, plot_dcpt

smk = snakemake  # type: ignore[name-defined]  # noqa: F821

with rule_job(smk):
    if smk.rule == "figure_dcpt":
        plot_dcpt(Path(smk.input.law), Path(smk.input.points), Path(smk.output.pdf))
    else:
        plot_chinchilla(Path(smk.input.law), Path(smk.input.points), Path(smk.output.pdf))
