"""Shared plotting style and helpers."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from cpt_scaling.core.atomic import write_pdf
from cpt_scaling.fit.fitting import identification_words

plt.rcParams.update({"font.size": 9, "axes.grid": True, "grid.alpha": 0.3, "figure.dpi": 150,
                     "pdf.fonttype": 42, "legend.frameon": False})


def size_label(n: float) -> str:
    """A compact model-size label: N=2.6k, N=10M, N=7B."""
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            return f"N={n / scale:.3g}{suffix}"
    return f"N={n:.0f}"


def colors(n: int, cmap: str = "viridis") -> np.ndarray:
    return plt.get_cmap(cmap)(np.linspace(0.0, 0.85, max(n, 1)))


def held_out_sizes(fit: dict[str, Any]) -> set[float]:
    """Model sizes of the points a fit held out, or that its validation fit held out."""
    held = {float(p["N"]) for p in fit.get("points_held_out") or [] if "N" in p}
    return held | {float(n) for n in (fit.get("validation") or {}).get("held_out_sizes", [])}


def extrapolation_limit(fit: dict[str, Any]) -> float:
    """How far beyond the sweep (factor on its largest N and compute) a figure may draw this fit's curves."""
    return float(fit.get("diagnostics", {}).get("extrapolation_limit", 100.0))


def fit_flags(fit: dict[str, Any]) -> str:
    """The visible mark of a fit's diagnostics, in words, for every figure that draws the law: '' when clean, else a
    new line such as 'not identified by these points: E (at 2.6e-09 — below 1 % of the smallest loss), A (within
    10× of its bound); fitted from 2 sizes'."""
    d = fit.get("diagnostics", {})
    flags = []
    if d.get("converged") is False:
        r2 = fit.get("r2")
        flags.append("fit no better than a constant (R² ≤ 0)" if isinstance(r2, (int, float)) and r2 <= 0
                     else "fit failed its optimality test (not at the minimum of its objective)")
    words = identification_words(d.get("not_identified") or [])
    if words:
        flags.append(words)
    elif d.get("params_at_bound"):
        flags.append("at a bound: " + ", ".join(d["params_at_bound"]))
    if d.get("n_sizes") and d["n_sizes"] < 3:
        flags.append(f"fitted from {d['n_sizes']} sizes")
    return "\n" + "\n".join(textwrap.wrap("; ".join(flags), 90)) if flags else ""


def marker(held: bool) -> dict[str, Any]:
    return {"marker": "*" if held else "o", "s": 55 if held else 20, "edgecolor": "black", "linewidth": 0.4,
            "zorder": 3}


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def save(fig: plt.Figure, out: Path) -> None:
    """Write a figure as PDF atomically (no timestamps, so equal inputs give equal bytes)."""
    write_pdf(fig, out)
    plt.close(fig)
