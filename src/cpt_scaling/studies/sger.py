"""SGER from annealed, budget-matched curves, with a parametric bootstrap interval.

The specialist's reference is its lowest annealed domain validation loss (a cosine run's last checkpoint or a WSD
branch end); the generalist of the same size is read at its annealed points only (the branch ends of its WSD
trunk at the specialist's budget and at the multiples the plan adds, ``generalist_tokens_factor``). SGER is the
generalist's tokens to the specialist's loss over the specialist's (same N: the compute ratio), log loss
interpolated linearly in log compute between the annealed points that bracket the crossing (:func:`crossing`; a
local power law: perplexity linear in log compute is convex there and puts the crossing several per cent late
between points a factor 2 apart; bench/bench_sger.py).

The interval is a parametric bootstrap: every annealed point's loss gets an independent relative offset of sd
``fit.run_noise`` (the sweep's stated run-to-run noise; a decay branch is its own run's end), and SGER is
recomputed; ``sger_lo``/``sger_hi`` are the 2.5 and 97.5 percentiles (a resample the generalist never reaches
counts as infinite). Without ``run_noise`` the interval is the two bracketing annealed points (the curve's
resolution) and ``sger_interval`` says it is not calibrated.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

BOOTSTRAP = 400  # resamples of the SGER interval (cheap: an interpolation each)
LEVEL = 0.95


def crossing(spec: tuple[np.ndarray, np.ndarray], gen: tuple[np.ndarray, np.ndarray], start: float | None,
             limit: float) -> dict[str, Any]:
    """SGER of one size from annealed points ``(compute, loss)``: the specialist's lowest loss, and the compute at
    which the generalist's annealed points first reach it, log loss linear in log compute between the points that
    bracket it (a local power law; between its start ``start`` at compute 0 and its first point, linear in
    compute). Beyond its last point, the power law through its last two points is extrapolated up to ``limit`` x
    its largest compute ("extrapolated"), else "> limit" (``sger`` None, ``sger_lo`` the bound). ``sger_lo``/
    ``sger_hi`` here are the bracketing points (the curve's resolution)."""
    cs, ls = (np.asarray(v, dtype=float) for v in spec)
    order = np.argsort(gen[0])
    cg, lg = np.asarray(gen[0], dtype=float)[order], np.asarray(gen[1], dtype=float)[order]
    i = int(np.argmin(ls))
    c_spec, target = float(cs[i]), float(ls[i])
    out: dict[str, Any] = {"C_specialist": c_spec, "specialist_best_loss": target, "general_best_loss": float(lg.min()),
                           "C_general_own_min": float(cg[int(np.argmin(lg))]), "limit": limit}
    hit = np.flatnonzero(lg <= target)
    if hit.size and hit[0] == 0:
        c = cg[0] * (start - target) / (start - lg[0]) if start is not None and start > target else cg[0]
        lo_c, hi_c, status = 0.0, cg[0], "interpolated"
    elif hit.size:
        j = int(hit[0])
        x0, x1, y0, y1 = np.log(cg[j - 1]), np.log(cg[j]), np.log(lg[j - 1]), np.log(lg[j])
        c = math.exp(x0 + (y0 - math.log(target)) / (y0 - y1) * (x1 - x0))
        lo_c, hi_c, status = cg[j - 1], cg[j], "interpolated"
    else:
        slope = (np.log(lg[-1]) - np.log(lg[-2])) / (np.log(cg[-1]) - np.log(cg[-2])) if cg.size >= 2 else 0.0
        log_c = np.log(cg[-1]) + (math.log(target) - np.log(lg[-1])) / slope if slope < 0 else math.inf
        lo_c, hi_c = float(cg[-1]), math.inf
        status = "extrapolated" if log_c <= math.log(limit * cg[-1]) else "> limit"
        c = math.exp(log_c) if status == "extrapolated" else math.inf
    out["status"] = status
    if status == "> limit":
        out.update(C_general=None, sger=None, sger_lo=limit * float(cg[-1]) / c_spec, sger_hi=math.inf)
    else:
        out.update(C_general=float(c), sger=float(c) / c_spec, sger_lo=min(lo_c, c) / c_spec,
                   sger_hi=max(hi_c, c) / c_spec)
    return out


def annealed_sger(spec_compute: np.ndarray, spec_loss: np.ndarray, gen_compute: np.ndarray, gen_loss: np.ndarray,
                  *, general_start_loss: float | None, run_noise: float | None, limit: float = 100.0,
                  bootstrap: int = BOOTSTRAP, seed: int = 0) -> dict[str, Any]:
    """SGER of one size from annealed points: ``spec_*`` the specialist's, ``gen_*`` the generalist's
    (continued-pretraining compute 6·N·D, validation loss in nats; ``general_start_loss`` the base model's, at
    compute 0). Returns :func:`crossing`'s point estimate (``sger``, ``status``, ``C_specialist``,
    ``C_general``) with ``sger_lo``/``sger_hi`` and ``sger_interval`` ("bootstrap ..." or "bracket ...")."""
    spec_tokens, gen_tokens = np.asarray(spec_compute, dtype=float), np.asarray(gen_compute, dtype=float)
    spec_loss, gen_loss = np.asarray(spec_loss, dtype=float), np.asarray(gen_loss, dtype=float)
    out = crossing((spec_tokens, spec_loss), (gen_tokens, gen_loss), general_start_loss, limit)
    out["n_general_points"] = len(gen_tokens)
    if not run_noise or bootstrap < 2:
        out["sger_interval"] = "bracket (fit.run_noise unset: not calibrated)"
        return out
    rng = np.random.default_rng(seed)
    draws = np.empty(bootstrap)
    for b in range(bootstrap):
        s = spec_loss * (1.0 + run_noise * rng.standard_normal(spec_loss.shape))
        g = gen_loss * (1.0 + run_noise * rng.standard_normal(gen_loss.shape))
        start = None if general_start_loss is None else general_start_loss * (1.0 + run_noise * rng.standard_normal())
        sger = crossing((spec_tokens, s), (gen_tokens, g), start, limit)["sger"]
        draws[b] = math.inf if sger is None else sger
    tail = 100.0 * (1.0 - LEVEL) / 2.0
    lo, hi = np.percentile(draws, [tail, 100.0 - tail], method="linear")
    point = out["sger"] if out["sger"] is not None else math.inf
    out.update(sger_lo=float(min(lo, point)), sger_hi=float(max(hi, point)),
               sger_interval=f"bootstrap ({bootstrap} resamples, run_noise {run_noise:g})")
    return out

