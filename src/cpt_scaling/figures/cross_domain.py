"""Cross-domain D-CPT Law figure: each domain predicted by a law that never saw it, and the all-domain fit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cpt_scaling.figures.style import colors, fit_flags, marker, plt, read_json, save


def build_figure(law: dict[str, Any], points: pd.DataFrame) -> plt.Figure:
    """Predicted against observed domain loss: left, leave-one-domain-out (each domain from its k1, k2 alone);
    right, the law fitted on every domain. One colour per domain, the error of each in the legend."""
    fig, axes = plt.subplots(1, 2, figsize=(7.8, 3.6), constrained_layout=True)
    lodo = law.get("leave_one_domain_out")
    errors = {s["held_out"]: s["heldout"]["mean_rel_error"] for s in (lodo or {"splits": []})["splits"]}
    domains = sorted(points["domain"].unique())
    for ax, column in zip(axes, ("lodo", "fit"), strict=True):
        if column == "lodo" and lodo is None:
            ax.text(0.5, 0.5, law.get("leave_one_domain_out_note", "no leave-one-domain-out"), ha="center",
                    va="center", fontsize=7, wrap=True, transform=ax.transAxes)
            ax.set_xlabel("observed domain loss (nats/token)")
            ax.set_ylabel("predicted domain loss (nats/token)")
            continue
        for color, domain in zip(colors(len(domains), "tab10"), domains, strict=True):
            rows = points[points["domain"] == domain]
            probe = law["probes"][domain]
            err = errors[domain] if column == "lodo" else float(np.mean(np.abs(rows["fit"] / rows["loss"] - 1)))
            label = f"{domain} (k1 {probe['k1']:.2f}, k2 {probe['k2']:.2e}): {100 * err:.1f}%"
            ax.scatter(rows["loss"], rows[column], color=color, label=label, **marker(column == "lodo"))
        both = np.concatenate([points["loss"].to_numpy(), points[column].to_numpy()])
        lo, hi = float(np.nanmin(both)), float(np.nanmax(both))
        ax.plot([lo, hi], [lo, hi], color="gray", lw=0.8, ls="--")
        ax.set_xlabel("observed domain loss (nats/token)")
        ax.set_ylabel("predicted domain loss (nats/token)")
        ax.legend(fontsize=6, title="domain: mean rel. error", title_fontsize=6)
    if lodo is not None:
        axes[0].set_title(f"leave one domain out (★): mean error {100 * lodo['mean_rel_error']:.1f}%", fontsize=9)
    axes[1].set_title(f"fitted on all domains: R²={law['r2']:.3f}{fit_flags(law)}", fontsize=9)
    fig.suptitle("Cross-domain D-CPT Law: a new domain from its probe features k1, k2")
    return fig


def draw(inputs: dict[str, Path], outputs: dict[str, Path]) -> None:
    save(build_figure(read_json(inputs["law"]), pd.read_csv(inputs["points"])), outputs["figure"])
