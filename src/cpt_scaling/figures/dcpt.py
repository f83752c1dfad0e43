"""D-CPT Law figures: loss against the mixture ratio for several budgets, and predicted vs observed with residuals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.ticker import NullFormatter

from cpt_scaling.figures.style import colors, fit_flags, held_out_sizes, marker, plt, read_json, save, size_label
from cpt_scaling.fit.fitting import predict

TARGETS = ("domain", "general")
UNANNEALED_LABEL = "intermediate checkpoint (not annealed)"


def _form(fit: dict[str, Any]) -> str:
    """The fitted form's display name (L3 for the default D-CPT law)."""
    return "L3" if fit["law"] in ("dcpt", "dcpt_l3") else fit["law"]


def _annealed(pts: pd.DataFrame) -> np.ndarray:
    """Which points are annealed (a points table without the flag: all)."""
    if "annealed" not in pts.columns:
        return np.ones(len(pts), dtype=bool)
    return pts["annealed"].astype(str).str.lower().isin(["true", "1", "1.0"]).to_numpy()


def _scatter(ax: plt.Axes, x: pd.Series, y: Any, annealed: np.ndarray, held: bool, **kw: Any) -> bool:
    """Measured points: filled when annealed, hollow (edge in the series colour) when an intermediate checkpoint;
    whether any hollow one was drawn."""
    x, y = np.asarray(x), np.asarray(y)
    color = kw.pop("color")
    ax.scatter(x[annealed], y[annealed], color=color, **kw, **marker(held))
    if (~annealed).any():
        kw.pop("label", None)  # one legend entry per series; the hollow markers get theirs (_legend_unannealed)
        ax.scatter(x[~annealed], y[~annealed], facecolors="none", **kw,
                   **{**marker(held), "edgecolor": color, "linewidth": 0.9})
        return True
    return False


def _legend_unannealed(ax: plt.Axes) -> None:
    """A legend entry for the hollow markers."""
    ax.scatter([], [], facecolors="none", edgecolors="black", linewidths=0.9, marker="o", s=20,
               label=UNANNEALED_LABEL)


def _final_points(pts: pd.DataFrame) -> pd.DataFrame:
    return pts[pts["D"] == pts.groupby(["N", "ratio", "budget"])["D"].transform("max")]


def build_ratio_figure(law: dict[str, Any], points: pd.DataFrame) -> plt.Figure:
    """Domain and general loss against the domain ratio r: for each size, every checkpoint budget D as a curve
    of the fitted L3 law, measured points as circles (stars for a held-out size; hollow: an intermediate
    checkpoint, not annealed, fitted with fit.intermediate_points)."""
    domain = law["domain"]
    fig, axes = plt.subplots(1, 2, figsize=(8.4, 3.4), constrained_layout=True)
    ns = sorted(points["N"].unique())
    grid = np.linspace(0.0, 1.0, 101)
    for ax, target in zip(axes, TARGETS, strict=True):
        fit = law[f"{target}_loss"]
        held = held_out_sizes(fit)
        pts = points[points["target"] == target]
        ds = sorted(pts["D"].unique())
        hollow = False
        shown_ds = ds if len(ds) <= 3 else [ds[0], ds[len(ds) // 2], ds[-1]]
        for color, n in zip(colors(len(ns)), ns, strict=True):
            for k, d in enumerate(shown_ds):
                r = grid if target == "domain" else 1.0 - grid
                curve = predict(fit, pd.DataFrame({"N": n, "D": d, "r": r}))
                alpha = 0.35 + 0.65 * (k + 1) / len(shown_ds)
                label = f"{size_label(n)}, D={d:,.0f}"
                ax.plot(grid, curve, color=color, lw=1.1, alpha=alpha, label=label)
                rows = pts[(pts["N"] == n) & (pts["D"] == d)]
                hollow |= _scatter(ax, rows["ratio"], rows["loss"], _annealed(rows), n in held, color=color,
                                   alpha=alpha)
            for b in law.get("base", {}).values():
                if b["N"] == n:
                    ax.axhline(b[f"{target}_loss"], color=color, ls=":", lw=0.8)
        if hollow:
            _legend_unannealed(ax)
        ax.set_xlabel(f"{domain} mixture ratio r")
        ax.set_ylabel(f"held-out {domain if target == 'domain' else 'general'} loss (nats/token)")
        heldout = ((fit.get("validation") or {}).get("heldout") or {}).get("mean_rel_error")
        extra = f", largest size held out: err {100 * heldout:.2f}%" if heldout is not None else ""
        ax.set_title(f"{target} loss: {_form(fit)} fit R²={fit['r2']:.3f}{extra}{fit_flags(fit)}", fontsize=8)
    axes[0].legend(fontsize=6, ncol=1)
    fig.suptitle(f"D-CPT Law for '{domain}' (dotted: base model; ★ size held out in validation)")
    return fig


MISFIT_LABEL = "missed beyond noise (diagnostics.misfit)"


def _misfit_mask(fit: dict[str, Any], pts: pd.DataFrame) -> np.ndarray:
    """Which points lie in a cell the fit's ``misfit`` diagnostic names."""
    mask = np.zeros(len(pts), dtype=bool)
    for g in ((fit.get("diagnostics") or {}).get("misfit") or {}).get("groups", []):
        here = np.ones(len(pts), dtype=bool)
        for col in ("N", "D", "r"):
            if col in g:
                here &= np.isclose(pts[col].to_numpy(float), float(g[col]), rtol=1e-9)
        mask |= here
    return mask


def _residual_panel(ax: plt.Axes, fit: dict[str, Any], pts: pd.DataFrame, target: str) -> None:
    """Log residual (measured over law) against D, one colour per domain ratio, cells named by the fit's misfit
    diagnostic ringed in red."""
    res = np.log(pts["loss"].to_numpy(float)) - np.log(predict(fit, pts[["N", "D", "r"]]))
    ratios = sorted(pts["ratio"].unique())
    for color, ratio in zip(colors(len(ratios), "plasma"), ratios, strict=True):
        sel = (pts["ratio"] == ratio).to_numpy()
        ax.scatter(pts["D"][sel], res[sel], color=color, s=12, label=f"r={ratio:g}")
    bad = _misfit_mask(fit, pts)
    if bad.any():
        ax.scatter(pts["D"][bad], res[bad], facecolors="none", edgecolors="red", s=60, linewidths=1.2,
                   label=MISFIT_LABEL)
    ax.axhline(0.0, color="gray", lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("D (tokens)")
    ax.set_ylabel(f"log measured / law ({target})")
    n_bad = len(((fit.get("diagnostics") or {}).get("misfit") or {}).get("groups", []))
    ax.set_title(f"{target} residuals ({_form(fit)}): " + (f"{n_bad} cell(s) missed" if n_bad else "no misfit"),
                 fontsize=8)


def build_fit_figure(law: dict[str, Any], points: pd.DataFrame) -> plt.Figure:
    """Predicted against observed loss for both fits (held-out points as stars, intermediate (unannealed)
    checkpoints hollow), and below each the log residuals against D per domain ratio with the cells the fit's
    ``misfit`` diagnostic names ringed."""
    fig, grid = plt.subplots(2, 2, figsize=(8.4, 6.4), constrained_layout=True)
    for ax, target in zip(grid[1], TARGETS, strict=True):
        _residual_panel(ax, law[f"{target}_loss"], points[points["target"] == target], target)
    grid[1][1].legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    for ax, target in zip(grid[0], TARGETS, strict=True):
        fit = law[f"{target}_loss"]
        pts = points[points["target"] == target]
        pred = predict(fit, pts[["N", "D", "r"]])
        annealed = _annealed(pts)
        hollow = _scatter(ax, pts["loss"], pred, annealed, False, color="tab:blue", label="fit on all sizes")
        val = fit.get("validation")
        if val:
            held = pts["N"].isin(val["held_out_sizes"]).to_numpy()
            pv = predict({"law": fit["law"], "params": val["params"]}, pts[["N", "D", "r"]][held])
            hollow |= _scatter(ax, pts["loss"][held], pv, annealed[held], True, color="tab:red",
                               label="largest size, predicted without it")
            pred = np.concatenate([pred, pv])
        if hollow:
            _legend_unannealed(ax)
        lo, hi = float(min(pts["loss"].min(), pred.min())), float(max(pts["loss"].max(), pred.max()))
        ax.plot([lo, hi], [lo, hi], color="gray", lw=0.8, ls="--")
        ax.set_xlabel(f"observed {target} loss")
        ax.set_ylabel(f"predicted {target} loss")
        ax.set_title(f"{target} loss (RMSE {fit['rmse']:.4f})", fontsize=8)
    grid[0][1].legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    fig.suptitle(f"D-CPT Law for '{law['domain']}': predicted vs observed")
    return fig


def draw(inputs: dict[str, Path], outputs: dict[str, Path]) -> None:
    law, points = read_json(inputs["law"]), pd.read_csv(inputs["points"])
    save(build_ratio_figure(law, points), outputs["ratio"])
    save(build_fit_figure(law, points), outputs["fit"])
