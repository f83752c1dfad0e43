"""The classifier's validation report beyond metrics.json: the score threshold's effect, and two figures.

``thresholds.json`` answers "what does a domain's ``threshold`` cost and buy": for each threshold of a grid and
each label, the yield (the fraction of validation documents predicted as that label whose score reaches the
threshold, i.e. how much of that label's pool share survives) and the precision (the fraction of those kept
documents whose true label it is), with the recall they leave.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from cpt_scaling.core.atomic import write_pdf

THRESHOLD_GRID = tuple(round(0.05 * i, 2) for i in range(20))  # 0.0, 0.05, ..., 0.95


def threshold_report(
    labels: Sequence[str],
    truth: Sequence[str],
    pred: Sequence[str],
    scores: np.ndarray,
    grid: Sequence[float] = THRESHOLD_GRID,
) -> dict[str, Any]:
    """Per label and threshold: documents kept, yield, precision and recall on the validation split.

    A document counts for label ``d`` at threshold ``t`` when its top label is ``d`` and its score is ``>= t``.
    Precision is ``None`` where no document is kept.
    """
    truth_a = np.asarray(truth, dtype=object)
    pred_a = np.asarray(pred, dtype=object)
    scores = np.asarray(scores, dtype=np.float64)
    per_label: dict[str, dict[str, list[Any]]] = {}
    for lab in labels:
        is_pred = pred_a == lab
        is_true = truth_a == lab
        n_pred, n_true = int(is_pred.sum()), int(is_true.sum())
        row: dict[str, list[Any]] = {"n_kept": [], "yield": [], "precision": [], "recall": []}
        for t in grid:
            kept = is_pred & (scores >= t)
            n_kept = int(kept.sum())
            n_right = int((kept & is_true).sum())
            row["n_kept"].append(n_kept)
            row["yield"].append(n_kept / n_pred if n_pred else None)
            row["precision"].append(n_right / n_kept if n_kept else None)
            row["recall"].append(n_right / n_true if n_true else None)
        per_label[lab] = row
    return {
        "split": "validation",
        "n_validation": len(truth_a),
        "thresholds": [float(t) for t in grid],
        "per_label": per_label,
    }


def plot_confusion(metrics: dict[str, Any], path: Path) -> None:
    """Confusion matrix (rows: true label with its validation count, columns: predicted label) as a PDF."""
    labels = sorted(metrics["confusion"])
    counts = np.array([[metrics["confusion"][t][p] for p in labels] for t in labels], dtype=float)
    n_train = metrics["label_counts"].get("train")  # none for a given (not trained here) classifier
    fig = Figure(figsize=(1.2 * len(labels) + 2.5, 1.0 * len(labels) + 1.5))
    ax = fig.add_subplot()
    ax.imshow(counts / np.maximum(counts.sum(axis=1, keepdims=True), 1), cmap="Blues", vmin=0, vmax=1)
    for i in range(len(labels)):
        for j in range(len(labels)):
            dark = counts[i, j] > 0.5 * max(counts[i].sum(), 1)
            ax.text(j, i, f"{int(counts[i, j])}", ha="center", va="center", color="white" if dark else "black")
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    ax.set_yticks(range(len(labels)), [f"{lab} (n={int(counts[i].sum())})" for i, lab in enumerate(labels)])
    ax.set_xlabel("predicted label")
    if n_train is None:
        ax.set_ylabel("true label (seed documents)")
        ax.set_title(f"given classifier: macro-F1 {metrics['macro_f1']:.3f} on every seed document", fontsize=9)
    else:
        ax.set_ylabel("true label (validation documents)")
        train_counts = ", ".join(f"{lab} {n_train.get(lab, 0)}" for lab in labels)
        ax.set_title(f"validation macro-F1 {metrics['macro_f1']:.3f}\ntraining documents: {train_counts}",
                     fontsize=9)
    write_pdf(fig, path)


def plot_thresholds(report: dict[str, Any], path: Path) -> None:
    """Yield and precision against the score threshold, one line per label, as a PDF."""
    grid = report["thresholds"]
    fig = Figure(figsize=(9, 3.5))
    axes = fig.subplots(1, 2)
    for lab, row in report["per_label"].items():
        for ax, key in zip(axes, ("yield", "precision"), strict=True):
            values = [np.nan if v is None else v for v in row[key]]
            ax.plot(grid, values, marker=".", label=lab)
    for ax, key in zip(axes, ("yield (kept / predicted)", "precision of kept"), strict=True):
        ax.set_xlabel("score threshold")
        ax.set_ylabel(key)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"threshold effect on {report['n_validation']} validation documents", fontsize=10)
    write_pdf(fig, path)
