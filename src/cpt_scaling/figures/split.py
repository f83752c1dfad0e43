"""Split-law figures: loss against the specialisation share at fixed totals, optimal share and multiplier."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cpt_scaling.figures.style import colors, extrapolation_limit, fit_flags, marker, plt, read_json, save, size_label
from cpt_scaling.fit.fitting import predict


def build_fraction_figure(law: dict[str, Any], points: pd.DataFrame) -> plt.Figure:
    """Domain loss against the specialisation share f = D'/(D+D') at three token totals, per size."""
    ns = sorted(points["N"].unique())
    fig, axes = plt.subplots(1, len(ns), figsize=(3.6 * len(ns), 3.2), constrained_layout=True, squeeze=False)
    totals = points["D"] + points["D_spec"]
    levels = np.geomspace(float(totals.min()), float(totals.max()), 3)
    f = np.linspace(0.01, 0.99, 99)
    for ax, n in zip(axes[0], ns, strict=True):
        for color, t in zip(colors(len(levels), "cividis"), levels, strict=True):
            curve = predict(law, pd.DataFrame({"N": n, "D": t * (1 - f), "D_spec": t * f}))
            ax.plot(f, curve, color=color, label=f"total {t:,.0f} tokens")
        sub = points[points["N"] == n]
        ax.scatter(sub["D_spec"] / (sub["D"] + sub["D_spec"]), sub["loss"], c=np.log(sub["D"] + sub["D_spec"]),
                   cmap="cividis", **marker(False))
        ax.set_xlabel("specialisation share f = D′/(D + D′)")
        ax.set_title(size_label(n), fontsize=9)
    axes[0][0].set_ylabel(f"{law['domain']} test loss (nats/token)")
    axes[0][0].legend(fontsize=6)
    fig.suptitle(f"Split law ({law['law']}) for '{law['domain']}': loss at fixed total tokens")
    return fig


def build_optimal_figure(law: dict[str, Any], decisions: pd.DataFrame) -> plt.Figure:
    """Optimal specialisation share and the compute multiplier over standard pretraining, against compute;
    bands are bootstrap intervals, dashed beyond the sweep, nothing beyond the extrapolation limit."""
    fig, axes = plt.subplots(1, 2, figsize=(8.0, 3.3), constrained_layout=True)
    limit = extrapolation_limit(law)
    shown = decisions[decisions["extrapolation"] <= limit] if "extrapolation" in decisions else decisions
    ns = sorted(shown["N"].unique())
    for color, n in zip(colors(len(ns)), ns, strict=True):
        rows = shown[shown["N"] == n]
        inside = rows[rows["extrapolation"] <= 1.0 + 1e-9] if "extrapolation" in rows else rows
        for ax, col in zip(axes, ("optimal_spec_fraction", "multiplier"), strict=True):
            ax.plot(inside["compute"], inside[col], color=color, marker="o", ms=3, label=size_label(n))
            ax.plot(rows["compute"], rows[col], color=color, ls="--", lw=0.8)
            lo, hi = rows.get(f"{col}_lo"), rows.get(f"{col}_hi")
            if col == "optimal_spec_fraction":
                lo, hi = rows.get("optimal_spec_fraction_lo"), rows.get("optimal_spec_fraction_hi")
            if lo is not None and hi is not None and lo.notna().any():
                ax.fill_between(rows["compute"], lo.astype(float), hi.astype(float), color=color, alpha=0.15, lw=0)
    axes[0].set_ylabel("optimal specialisation share f*")
    axes[1].set_ylabel("compute multiplier vs standard pretraining")
    axes[1].axhline(1.0, color="gray", ls=":", lw=0.8)
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("compute 6·N·(D + D′) (FLOPs)")
        ax.legend(fontsize=7)
    fig.suptitle(f"Optimal split for '{law['domain']}' (dashed: beyond the sweep, to {limit:g}x){fit_flags(law)}",
                 fontsize=9)
    return fig


def draw(inputs: dict[str, Path], outputs: dict[str, Path]) -> None:
    law = read_json(inputs["law"])
    save(build_fraction_figure(law, pd.read_csv(inputs["points"])), outputs["fraction"])
    save(build_optimal_figure(law, pd.read_csv(inputs["decisions"])), outputs["optimal"])
