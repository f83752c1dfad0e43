"""The decision target's figure: the interval, and its width, round by round against cumulative GPU-hours, beside
the full grid's price (results/figures/decision_<decision>_<domain>.pdf)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from cpt_scaling.figures.style import save

#: The decided quantity per decision, in words (the y axis of the interval panel).
QUANTITY = {"usage1": "domain ratio", "usage2": "domain ratio", "usage3": "log10 N (compute-optimal)"}


def build_decision_figure(doc: dict[str, Any]) -> plt.Figure:
    """Two panels sharing the x axis (cumulative GPU-hours): the interval per round about its bootstrap median (and,
    where a round's interval joins the measured crossing's, the law's own), and the width with the target width;
    both mark the full grid's price."""
    hist = doc["history"]
    x = [h["gpu_hours"] for h in hist]
    fig, (left, right) = plt.subplots(1, 2, figsize=(8.0, 4.0), sharex=True, layout="constrained")
    value = [h["value"] for h in hist]
    left.errorbar(x, value, yerr=[[v - h["lo"] for v, h in zip(value, hist, strict=True)],
                                  [h["hi"] - v for v, h in zip(value, hist, strict=True)]],
                  fmt="o", color="tab:blue", capsize=3, label="bootstrap median, 95 % interval")
    joined = [h for h in hist if h.get("interval_source") == "law+measured"]
    if joined:  # rounds whose interval is not the law's alone: the law's own interval beside it
        left.errorbar([h["gpu_hours"] for h in joined], [h["value"] for h in joined],
                      yerr=[[h["value"] - h["law_lo"] for h in joined], [h["law_hi"] - h["value"] for h in joined]],
                      fmt="none", color="tab:red", capsize=5, elinewidth=2.5, alpha=0.5,
                      label="the law's own interval (it misfits or its points contradict it)")
    left.set_ylabel(QUANTITY[doc["decision"]])
    widths = [h["width"] for h in hist]
    right.plot(x, widths, "o-", color="tab:blue", label="width after each round (numbered)")
    for h in hist:
        right.annotate(str(h["round"]), (h["gpu_hours"], h["width"]), textcoords="offset points", xytext=(0, 5),
                       ha="center", fontsize=7)
    right.axhline(doc["target_width"], ls="--", color="grey", label=f"target width {doc['target_width']:g}")
    right.set_ylabel("interval width")
    right.set_ylim(0, 1.3 * max(*widths, doc["target_width"]))
    for ax in (left, right):
        ax.axvline(doc["grid_gpu_hours"], ls=":", color="k",
                   label=f"full grid ({doc['grid_runs']} runs): {doc['grid_gpu_hours']:.3g} GPU-h")
        ax.set_xlabel("GPU-hours spent (cumulative)")
        ax.set_xlim(left=0, right=1.08 * max(doc["grid_gpu_hours"], max(x)))
        # below the panel, never over the rounds or the reference lines
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), fontsize=7, frameon=False)
    title = (f"{doc['description']}: {doc['value']:.3g} [{doc['lo']:.3g}, {doc['hi']:.3g}] after "
             f"{doc['rounds']} round(s), {doc['runs_used']} runs; interval: {doc.get('interval_source', 'law')}; "
             f"stopped: {doc['stopped']}")
    fig.suptitle("\n".join(textwrap.wrap(title, 110)), fontsize=8)
    return fig


def draw_decision(decision: Path, out: Path) -> None:
    """Draw the figure of a decision JSON."""
    save(build_decision_figure(json.loads(decision.read_text())), out)
