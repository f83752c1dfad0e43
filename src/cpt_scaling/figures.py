"""Figures a paper would show. Each function reads a law JSON and its points CSV and writes one PDF.

Observed points are circles (stars for points held out of the fit); lines are the fitted law.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from cpt_scaling.atomic import atomic_path  # noqa: E402
from cpt_scaling.laws import predict  # noqa: E402

plt.rcParams.update({"font.size": 9, "axes.grid": True, "grid.alpha": 0.3, "figure.dpi": 150,
                     "pdf.fonttype": 42})


def _size_label(n: float) -> str:
    return f"N={n / 1e6:.2g}M" if n >= 1e5 else f"N={n / 1e3:.3g}k"


def _held_out_ns(fit: dict[str, Any]) -> set[float]:
    held = fit.get("heldout_points") or []
    return {float(p["N"]) for p in held} if held and isinstance(held[0], dict) else set()


def _save(fig: plt.Figure, out: Path) -> None:
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="pdf", bbox_inches="tight", metadata={"CreationDate": None, "ModDate": None})
    plt.close(fig)


def dcpt_figure(law: dict[str, Any], points: pd.DataFrame) -> plt.Figure:
    """Domain loss and general loss against the domain ratio at each run's final checkpoint, with L3 curves."""
    domain = law["domain"]
    fig, axes = plt.subplots(1, 2, figsize=(8.0, 3.3), constrained_layout=True)
    ns = sorted(points["N"].unique())
    colors = plt.cm.viridis(np.linspace(0.0, 0.85, max(len(ns), 1)))
    grid = np.linspace(0.0, 1.0, 101)
    for ax, target in zip(axes, ("domain", "general"), strict=True):
        fit = law[f"{target}_loss"]
        held = _held_out_ns(fit)
        pts = points[points["target"] == target]
        final = pts[pts["D"] == pts.groupby(["N", "ratio", "budget"])["D"].transform("max")]
        for color, n in zip(colors, ns, strict=True):
            sub = final[final["N"] == n]
            for budget, rows in sub.groupby("budget"):
                d = float(rows["D"].max())
                r = grid if target == "domain" else 1.0 - grid
                curve = predict(fit, pd.DataFrame({"N": n, "D": d, "r": r}))
                ax.plot(grid, curve, color=color, lw=1.2, label=f"{_size_label(n)}, D={budget:,}")
                marker = "*" if n in held else "o"
                ax.scatter(rows["ratio"], rows["loss"], color=color, marker=marker, s=40 if marker == "*" else 18,
                           zorder=3, edgecolor="black", linewidth=0.4)
            base = law.get("base", {})
            for b in base.values():
                if b["N"] == n:
                    ax.axhline(b[f"{target}_loss"], color=color, ls=":", lw=0.8)
        ax.set_xlabel(f"{domain} mixture ratio r")
        ax.set_ylabel(f"held-out {domain if target == 'domain' else 'general'} loss (nats/token)")
        ax.set_title(f"{target} loss, L3 fit: R²={fit.get('r2', float('nan')):.3f}")
    axes[0].legend(fontsize=7, loc="best")
    fig.suptitle(f"D-CPT Law, domain '{domain}' (dotted: base model before CPT; ★ held out)")
    return fig


def plot_dcpt(law_path: Path, points_path: Path, out: Path) -> None:
    """Write the D-CPT figure of one domain."""
    _save(dcpt_figure(json.loads(law_path.read_text()), pd.read_csv(points_path)), out)


def chinchilla_figure(law: dict[str, Any], points: pd.DataFrame) -> plt.Figure:
    """General loss of pretraining runs against tokens for each size, with the fitted Chinchilla curves."""
    fig, ax = plt.subplots(figsize=(4.6, 3.4), constrained_layout=True)
    ns = sorted(points["N"].unique())
    colors = plt.cm.plasma(np.linspace(0.0, 0.8, max(len(ns), 1)))
    held = _held_out_ns(law)
    d_grid = np.geomspace(points["D"].min() / 2, points["D"].max() * 4, 100)
    for color, n in zip(colors, ns, strict=True):
        sub = points[points["N"] == n]
        ax.plot(d_grid, predict(law, pd.DataFrame({"N": n, "D": d_grid})), color=color, lw=1.2,
                label=_size_label(n))
        ax.scatter(sub["D"], sub["loss"], color=color, marker="*" if n in held else "o", zorder=3,
                   edgecolor="black", linewidth=0.4, s=40 if n in held else 18)
    ax.set_xscale("log")
    ax.set_xlabel("training tokens D")
    ax.set_ylabel("held-out general loss (nats/token)")
    ax.set_title(f"Chinchilla form E + A/N^α + B/D^β, R²={law.get('r2', float('nan')):.3f}")
    ax.legend(fontsize=7)
    return fig


def plot_chinchilla(law_path: Path, points_path: Path, out: Path) -> None:
    """Write the Chinchilla figure."""
    _save(chinchilla_figure(json.loads(law_path.read_text()), pd.read_csv(points_path)), out)
