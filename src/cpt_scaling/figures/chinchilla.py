"""Chinchilla figures: the fitted law on the pretraining runs, and the compute-optimal frontier."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cpt_scaling.figures.style import (
    colors,
    extrapolation_limit,
    fit_flags,
    held_out_sizes,
    marker,
    plt,
    read_json,
    save,
    size_label,
)
from cpt_scaling.fit.fitting import predict


def build_fit_figure(law: dict[str, Any], points: pd.DataFrame) -> plt.Figure:
    """General loss against pretraining tokens for each size, with the fitted E + A/N^α + B/D^β."""
    fig, ax = plt.subplots(figsize=(4.8, 3.5), constrained_layout=True)
    ns = sorted(points["N"].unique())
    held = held_out_sizes(law)
    d_grid = np.geomspace(points["D"].min() / 2, points["D"].max() * 4, 100)
    for color, n in zip(colors(len(ns), "plasma"), ns, strict=True):
        sub = points[points["N"] == n]
        ax.plot(d_grid, predict(law, pd.DataFrame({"N": n, "D": d_grid})), color=color, lw=1.2, label=size_label(n))
        ax.scatter(sub["D"], sub["loss"], color=color, **marker(n in held))
    ax.set_xscale("log")
    ax.set_xlabel("pretraining tokens D")
    ax.set_ylabel("held-out general loss (nats/token)")
    p = law["params"]
    ax.set_title(f"E + A/N^α + B/D^β: E={p['E']:.2f}, α={p['alpha']:.2f}, β={p['beta']:.2f}, R²={law['r2']:.3f}"
                 f"{fit_flags(law)}", fontsize=8)
    ax.legend(fontsize=7)
    return fig


def build_frontier_figure(law: dict[str, Any], frontier: pd.DataFrame, points: pd.DataFrame) -> plt.Figure:
    """Compute-optimal N* and D* against compute C = 6ND, with the sweep's runs for reference."""
    fig, axes = plt.subplots(1, 2, figsize=(8.0, 3.3), constrained_layout=True)
    c_max = float((6.0 * points["N"] * points["D"]).max())
    limit = extrapolation_limit(law)
    shown = frontier[frontier["compute"] <= c_max * limit * (1 + 1e-9)]
    inside = shown[shown["compute"] <= c_max * (1 + 1e-9)]
    beyond = shown[shown["compute"] >= inside["compute"].max()] if len(inside) else shown
    for col, color, label in (("N", "tab:blue", "N* (parameters)"), ("D", "tab:orange", "D* (tokens)")):
        axes[0].plot(inside["compute"], inside[col], label=label, color=color)
        axes[0].plot(beyond["compute"], beyond[col], color=color, ls="--")
        if f"{col}_lo" in shown and shown[f"{col}_lo"].notna().any():
            axes[0].fill_between(shown["compute"], shown[f"{col}_lo"], shown[f"{col}_hi"], color=color, alpha=0.15,
                                 lw=0)
    for ax in axes:
        ax.axvline(c_max, color="gray", ls=":", lw=0.8)
    axes[0].text(c_max, axes[0].get_ylim()[0], f" extrapolated (dashed, to {limit:g}x)", fontsize=6,
                 va="bottom")
    runs = points.assign(C=6.0 * points["N"] * points["D"])
    axes[0].scatter(runs["C"], runs["N"], color="tab:blue", s=10, alpha=0.5, label="sweep runs (N)")
    axes[0].set_xscale("log")
    axes[0].set_yscale("log")
    axes[0].set_xlabel("training compute C = 6ND (FLOPs)")
    axes[0].set_ylabel("compute-optimal size / tokens")
    axes[0].legend(fontsize=7)
    axes[1].plot(inside["compute"], inside["loss"], color="black", label="compute-optimal loss")
    axes[1].plot(beyond["compute"], beyond["loss"], color="black", ls="--", label="extrapolated")
    axes[1].scatter(runs["C"], runs["loss"], c=np.log(runs["N"]), cmap="plasma", s=14, label="sweep checkpoints")
    axes[1].set_xscale("log")
    axes[1].set_xlabel("training compute C = 6ND (FLOPs)")
    axes[1].set_ylabel("general loss (nats/token)")
    axes[1].legend(fontsize=7)
    fig.suptitle("Chinchilla compute-optimal frontier")
    return fig


def draw(inputs: dict[str, Path], outputs: dict[str, Path]) -> None:
    law, points = read_json(inputs["law"]), pd.read_csv(inputs["points"])
    save(build_fit_figure(law, points), outputs["fit"])
    save(build_frontier_figure(law, pd.read_csv(inputs["frontier"]), points), outputs["frontier"])
