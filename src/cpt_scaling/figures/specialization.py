"""Specialisation vs size figures: best perplexity with power laws, SGER, forgetting, loss vs compute."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from cpt_scaling.figures.style import colors, fit_flags, marker, plt, read_json, save, size_label
from cpt_scaling.fit.fitting import predict

ROLES = {"specialist": ("tab:red", "-"), "general": ("tab:blue", "--")}


def build_ppl_figure(law: dict[str, Any], table: pd.DataFrame, exams: pd.DataFrame | None = None) -> plt.Figure:
    """Best-checkpoint domain test perplexity against N for specialist and generalist, with ppl = k·N^p fits;
    with exam rows (``evaluate.exams``), a second panel: exam accuracy at the same checkpoints against N."""
    scores = exam_accuracy(table, exams) if exams is not None else pd.DataFrame()
    if scores.empty:
        fig, ax = plt.subplots(figsize=(4.8, 3.5), constrained_layout=True)
    else:
        fig, (ax, ax_exam) = plt.subplots(1, 2, figsize=(9.0, 3.5), constrained_layout=True)
        _draw_exam_panel(ax_exam, scores)
    n_grid = np.geomspace(table["N"].min() / 1.5, table["N"].max() * 3, 50)
    for role, (color, ls) in ROLES.items():
        rows = table[table["role"] == role]
        fit = law.get(f"{role}_powerlaw")
        label = role
        if fit is not None:
            p, ci = fit["params"]["p"], (fit.get("ci") or {}).get("p")
            ax.plot(n_grid, predict(fit, pd.DataFrame({"N": n_grid})), color=color, ls=ls)
            label = f"{role}: p={p:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "") + fit_flags(fit)
        ax.scatter(rows["N"], rows["perplexity"], color=color, label=label, **marker(False))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("model size N (non-embedding parameters)")
    ax.set_ylabel(f"best {law['domain']} test perplexity")
    ax.set_title(f"Specialist (r={law['specialist_ratio']:g}) vs general at matched compute", fontsize=9)
    ax.legend(fontsize=7)
    return fig


def exam_accuracy(table: pd.DataFrame, evals: pd.DataFrame) -> pd.DataFrame:
    """Exam ``acc`` of each (size, role) at its best checkpoint (``table``'s best_D): columns size, N, role,
    suite, acc, n_questions. ``evals`` is the tidy eval table; rows of other metrics or runs are ignored."""
    if "metric" not in evals.columns:
        return pd.DataFrame()
    acc = evals[(evals["metric"] == "acc") & evals["kind"].isin(["cpt", "generalist"])]
    keys = table[["size", "N", "role", "ratio", "budget", "best_D"]].rename(columns={"best_D": "D"})
    out = keys.merge(acc[["size", "ratio", "budget", "D", "suite", "value", "n_questions"]],
                     on=["size", "ratio", "budget", "D"])
    return out.rename(columns={"value": "acc"}).sort_values(["suite", "role", "N"]).reset_index(drop=True)


def _draw_exam_panel(ax: Any, scores: pd.DataFrame) -> None:
    suites = sorted(scores["suite"].unique())
    for suite, mk in zip(suites, "osD^v<>", strict=False):
        for role, (color, ls) in ROLES.items():
            rows = scores[(scores["suite"] == suite) & (scores["role"] == role)]
            ax.plot(rows["N"], rows["acc"], color=color, ls=ls, marker=mk, label=f"{role}, {suite}")
    ax.set_xscale("log")
    ax.set_ylim(0, 1)
    ax.set_xlabel("model size N (non-embedding parameters)")
    ax.set_ylabel("exam accuracy (acc, lm-eval)")
    ax.set_title("Exams at the best checkpoint", fontsize=9)
    ax.legend(fontsize=6)


def _size_axis(ax: Any, rows: pd.DataFrame) -> None:
    """A log-N x axis with one tick per model size (its name and N), in order of N."""
    rows = rows.sort_values("N")
    ax.set_xscale("log")
    ax.set_xlim(rows["N"].min() / 1.6, rows["N"].max() * 1.6)
    ax.set_xticks(rows["N"], [f"{s}\n{size_label(n)}" for s, n in zip(rows["size"], rows["N"], strict=True)])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("model size N (non-embedding parameters)")


def build_sger_figure(law: dict[str, Any]) -> plt.Figure:
    """SGER against model size N (log axes): the generalist's compute to the specialist's lowest annealed
    validation loss over the specialist's, with its bootstrap interval; open markers are extrapolated beyond the
    generalist's longest annealed branch, triangles lower bounds ("> limit")."""
    fig, ax = plt.subplots(figsize=(4.6, 3.3), constrained_layout=True)
    rows = pd.DataFrame(law.get("sger") or [], columns=["size", "N", "sger", "sger_lo", "sger_hi", "sger_status"])
    numbers = ["N", "sger", "sger_lo", "sger_hi"]  # strict JSON writes an unbounded end as null
    rows[numbers] = rows[numbers].apply(pd.to_numeric, errors="coerce")
    rows = rows.sort_values("N")
    if rows.empty or rows["N"].isna().any():
        ax.text(0.5, 0.5, law.get("note", "no SGER"), ha="center", va="center", fontsize=8, wrap=True,
                transform=ax.transAxes)
        return fig
    for _, r in rows.iterrows():
        n, status = r["N"], r["sger_status"]
        if status == "> limit":
            ax.scatter(n, r["sger_lo"], marker="^", color="tab:purple", zorder=3)
            ax.annotate(f"> {r['sger_lo']:.3g}", (n, r["sger_lo"]), fontsize=6, textcoords="offset points",
                        xytext=(3, 3))
            continue
        hi = r["sger_hi"] if np.isfinite(r["sger_hi"]) else r["sger"] * 1.5
        ax.errorbar(n, r["sger"], yerr=[[r["sger"] - r["sger_lo"]], [hi - r["sger"]]], color="tab:purple",
                    marker="o", mfc="white" if status == "extrapolated" else "tab:purple", capsize=3)
        if status == "extrapolated":
            ax.annotate("extrapolated", (n, r["sger"]), fontsize=6, textcoords="offset points", xytext=(4, -8))
    ax.axhline(1.0, color="gray", ls=":", lw=0.8)
    _size_axis(ax, rows)
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 1.5, 2.0, 3.0, 5.0, 7.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_ylabel("SGER = C_general / C_specialist")
    ax.set_title(f"'{law['domain']}': compute to the specialist's loss (same size, annealed)", fontsize=9)
    return fig


def build_forgetting_figure(law: dict[str, Any], table: pd.DataFrame) -> plt.Figure:
    """Forgetting (general test loss increase over the base model) against N, log axis, sizes in order of N."""
    fig, ax = plt.subplots(figsize=(4.6, 3.3), constrained_layout=True)
    for role, (color, ls) in ROLES.items():
        rows = table[table["role"] == role].sort_values("N")
        ax.plot(rows["N"], rows["forgetting"], color=color, ls=ls, marker="o", label=role)
    ax.axhline(0.0, color="gray", ls=":", lw=0.8)
    _size_axis(ax, table.drop_duplicates("size"))
    ax.set_ylabel("forgetting: Δ general loss vs base (nats)")
    ax.set_title(f"Forgetting on general text after '{law['domain']}' CPT", fontsize=9)
    ax.legend(fontsize=7, loc="best")
    return fig


def build_compute_figure(law: dict[str, Any], table: pd.DataFrame, optimal: pd.DataFrame) -> plt.Figure:
    """Best size per compute budget for each role, on budgets at least two sizes reach (from the checkpoints);
    a ring marks a budget where another size wins in 2.5 % or more of the bootstrap resamples."""
    fig, ax = plt.subplots(figsize=(4.8, 3.4), constrained_layout=True)
    if optimal.empty:
        ax.text(0.5, 0.5, "no compute budget is reached by two model sizes: no best size to choose", ha="center",
                va="center", fontsize=8, wrap=True, transform=ax.transAxes)
        return fig
    missing: list[str] = []
    for role, (color, ls) in ROLES.items():
        rows = optimal[optimal["role"] == role]
        if rows.empty:  # no budget that two of this role's sizes reach
            missing.append(role)
            continue
        ax.plot(rows["compute"], rows["loss"], color=color, ls=ls, label=f"{role}: best size per compute")
        unsure = rows[rows["N_lo"] < rows["N_hi"]] if "N_lo" in rows.columns else rows.iloc[:0]
        ax.scatter(unsure["compute"], unsure["loss"], facecolors="none", edgecolors=color, s=90, lw=0.8,
                   label=f"{role}: another size in the bootstrap" if len(unsure) else None)
        sizes = sorted(rows["N"].unique())
        for c, n in zip(colors(len(sizes)), sizes, strict=True):
            pts = rows[rows["N"] == n]
            ax.scatter(pts["compute"], pts["loss"], color=c, **marker(False), label=f"{role} {size_label(n)}")
    ax.set_xscale("log")
    ax.set_xlabel("continued-pretraining compute 6ND (FLOPs)")
    ax.set_ylabel(f"{law['domain']} test loss (nats/token)")
    ax.set_title("Optimal model size per compute", fontsize=9)
    if missing:
        ax.text(0.02, 0.02, f"{', '.join(missing)}: no budget reached by two sizes", transform=ax.transAxes,
                fontsize=7, color="gray")
    ax.legend(fontsize=6)
    return fig


def draw(inputs: dict[str, Path], outputs: dict[str, Path]) -> None:
    law, table = read_json(inputs["law"]), pd.read_csv(inputs["table"])
    exams = pd.read_parquet(inputs["exams"]) if "exams" in inputs else None
    save(build_ppl_figure(law, table, exams), outputs["ppl"])
    save(build_sger_figure(law), outputs["sger"])
    save(build_forgetting_figure(law, table), outputs["forgetting"])
    save(build_compute_figure(law, table, pd.read_csv(inputs["compute"])), outputs["compute"])
