"""Training loss against training tokens, one panel per model size: every run of a domain's sweep (or the
pretraining runs), a WSD family's trunk and its decay branches in one colour."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.ticker import EngFormatter

from cpt_scaling.figures.style import colors, plt, save
from cpt_scaling.train.curves import train_curves


def _family_label(runs: pd.DataFrame) -> str:
    """Legend text of a run family: its mixture ratio for CPT runs, else its name."""
    first = runs.iloc[0]
    if first["kind"] == "cpt":
        return f"r = {first['ratio']:g}" + (" (general data only)" if first["ratio"] == 0 else "")
    return str(first["family"])


def build_figure(curves: pd.DataFrame, title: str, size_order: list[str] | None = None) -> plt.Figure:
    """Loss against tokens per size (panels in ``size_order``, else as the sizes first appear); a colour per run family
    (sorted by ratio, then name), each run's stitched curve a line, so a trunk's branches fan out of it."""
    present = set(curves["size"])
    sizes = [s for s in size_order or [] if s in present] + [s for s in dict.fromkeys(curves["size"])
                                                             if s not in (size_order or [])]
    labels = {family: _family_label(runs) for family, runs in curves.groupby("family")}
    order = curves.drop_duplicates("family").sort_values(["ratio", "family"])["family"]
    legend = list(dict.fromkeys(labels[f] for f in order))  # one colour per ratio across the panels
    palette = dict(zip(legend, colors(len(legend)), strict=True))
    fig, axes = plt.subplots(1, max(len(sizes), 1), figsize=(3.6 * max(len(sizes), 1), 3.2), squeeze=False,
                             sharey=True, constrained_layout=True)
    for ax, size in zip(axes[0], sizes, strict=False):
        of_size = curves[curves["size"] == size]
        for family, runs in of_size.groupby("family", sort=False):
            for i, (_, run) in enumerate(runs.groupby("run", sort=True)):
                ax.plot(run["tokens"], run["loss"], color=palette[labels[family]], linewidth=1.0,
                        label=labels[family] if i == 0 else None)
        ax.set_title(f"size {size}")
        ax.set_xlabel("training tokens")
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))
    axes[0][0].set_ylabel("training loss (each run on its own mixture)")
    if not len(curves):
        axes[0][0].text(0.5, 0.5, "no training logs", ha="center", va="center", transform=axes[0][0].transAxes)
    seen: dict[str, Any] = {}  # one legend entry per family, whichever panel has it
    for ax in axes[0]:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(label, handle)
    if seen:
        ordered = [label for label in legend if label in seen]
        fig.legend([seen[label] for label in ordered], ordered, loc="outside right center")
    fig.suptitle(title)
    return fig


def draw(job: dict[str, Any], out: Path) -> None:
    """The figure of one group's runs (``job``: a ``train_curves_job`` of the plan, plus its ``title``)."""
    save(build_figure(train_curves(job["runs"]), job["title"], job.get("sizes")), out)
