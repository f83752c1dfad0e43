"""Split-law figures: loss against the specialisation share at fixed totals; the optimal share, the compute
multipliers (one domain; K domains split from one pretrained model) and the split point."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cpt_scaling.figures.style import colors, extrapolation_limit, fit_flags, marker, plt, read_json, save, size_label
from cpt_scaling.fit.fitting import predict
from cpt_scaling.laws.split import SIZE_DEPENDENT


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


BEYOND_LABEL = "dashed: fitted curve beyond the sweep's points"


def _band(ax: plt.Axes, x: pd.Series, rows: pd.DataFrame, col: str, color: Any) -> None:
    lo, hi = rows.get(f"{col}_lo"), rows.get(f"{col}_hi")
    if lo is not None and hi is not None and lo.notna().any():
        ax.fill_between(x, lo.astype(float), hi.astype(float), color=color, alpha=0.15, lw=0)


def _per_size(ax: plt.Axes, shown: pd.DataFrame, col: str) -> None:
    """One curve of ``col`` against the token budget per size: solid inside the sweep, dashed beyond, a band."""
    ns = sorted(shown["N"].unique())
    for color, n in zip(colors(len(ns)), ns, strict=True):
        rows = shown[shown["N"] == n]
        inside = rows[rows["extrapolation"] <= 1.0 + 1e-9]
        ax.plot(inside["total_tokens"], inside[col], color=color, marker="o", ms=3, label=size_label(n))
        ax.plot(rows["total_tokens"], rows[col], color=color, ls="--", lw=0.8)
        _band(ax, rows["total_tokens"], rows, col, color)
    ax.set_xscale("log")
    ax.set_xlabel("token budget T = D + K·D′")


def _split_point_by_size(ax: plt.Axes, law: dict[str, Any], shown: pd.DataFrame) -> None:
    """The split point D* = T·(1 − f*) against N (log axis, ticks at the fitted sizes) at the largest budget of the
    sweep's points (the drawn budget nearest below it), with its interval."""
    fitted_max = max(p["D"] + p["D_spec"] for p in law["points_used"])
    budgets = sorted(shown["total_tokens"].unique())
    t = max([b for b in budgets if b <= fitted_max * (1 + 1e-9)], default=budgets[0])
    rows = shown[np.isclose(shown["total_tokens"], t)].sort_values("N")
    ax.plot(rows["N"], rows["split_point"], color="black", marker="o", ms=4)
    _band(ax, rows["N"], rows, "split_point", "black")
    ax.set_xscale("log")
    ax.set_xticks(rows["N"], [size_label(n) for n in rows["N"]], fontsize=7)
    ax.minorticks_off()
    ax.set_xlabel("model size N (non-embedding parameters)")
    ax.set_ylabel(f"split point D* = T·(1 − f*) at T = {t:.3g} (tokens)")


def build_optimal_figure(law: dict[str, Any], decisions: pd.DataFrame) -> plt.Figure:
    """Optimal specialisation share, compute multiplier per domain and for K domains against the token budget (one
    curve per size), and the split point against N; bands are bootstrap intervals, dashed beyond the sweep's
    points (in N, compute or D′), nothing beyond the extrapolation limit."""
    fig, axes = plt.subplots(2, 2, figsize=(8.4, 6.6), constrained_layout=True)
    limit = extrapolation_limit(law)
    shown = decisions[decisions["extrapolation"] <= limit]
    k = int(decisions["k_domains"].iloc[0]) if "k_domains" in decisions and len(decisions) else 1
    panels = (("optimal_spec_fraction", "optimal specialisation share f* (one domain)"),
              ("multiplier", "compute multiplier, one domain"),
              ("multiplier_k", f"compute multiplier, K = {k} domains"))
    for ax, (col, label) in zip(axes.flat, panels, strict=False):
        _per_size(ax, shown, col)
        ax.set_ylabel(label)
    for ax in axes.flat[1:3]:
        ax.axhline(1.0, color="gray", ls=":", lw=0.8)
    axes[0][0].set_xlabel("token budget T = D + D′")
    axes[0][1].set_xlabel("token budget T = D + D′")
    _split_point_by_size(axes[1][1], law, shown)
    handles, labels = axes[0][0].get_legend_handles_labels()
    handles.append(plt.Line2D([], [], color="gray", ls="--", lw=0.8))
    labels.append(BEYOND_LABEL)
    fig.legend(handles, labels, loc="outside lower center", ncol=len(labels), fontsize=7, frameon=False)
    additive = "" if law["law"] in SIZE_DEPENDENT else (
        f"\n{law['law']} is additive in N: the optimal share and the multipliers are the same at every size")
    fig.suptitle(f"Optimal split for '{law['domain']}' ({law['law']}; intervals: 95 % bootstrap; curves to "
                 f"{limit:g}x beyond the sweep){additive}{fit_flags(law)}", fontsize=9)
    return fig


def draw(inputs: dict[str, Path], outputs: dict[str, Path]) -> None:
    law = read_json(inputs["law"])
    save(build_fraction_figure(law, pd.read_csv(inputs["points"])), outputs["fraction"])
    save(build_optimal_figure(law, pd.read_csv(inputs["decisions"])), outputs["optimal"])
