"""SGER from annealed, budget-matched curves, with a parametric bootstrap interval.

The specialist's reference is its lowest annealed domain validation loss (a cosine run's last checkpoint or a WSD
branch end); the generalist of the same size is read at its annealed points only (the branch ends of its WSD
trunk at the specialist's budget and at the multiples the plan adds, ``generalist_tokens_factor``). SGER is the
generalist's tokens to the specialist's loss over the specialist's (same N: the compute ratio), interpolated
linearly in log tokens between the annealed points that bracket the crossing
(:func:`cpt_scaling.fit.decisions.sger_from_curves`).

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

from cpt_scaling.fit import decisions

BOOTSTRAP = 400  # resamples of the SGER interval (cheap: an interpolation each)
LEVEL = 0.95


def _sger(spec: tuple[np.ndarray, np.ndarray], gen: tuple[np.ndarray, np.ndarray], start: float | None,
          limit: float) -> float:
    """The SGER of one resample (inf where the generalist never reaches the specialist within ``limit``)."""
    out = decisions.sger_from_curves(spec, gen, general_start_loss=start, limit=limit)
    return math.inf if out["sger"] is None else float(out["sger"])


def annealed_sger(spec_compute: np.ndarray, spec_loss: np.ndarray, gen_compute: np.ndarray, gen_loss: np.ndarray,
                  *, general_start_loss: float | None, run_noise: float | None, limit: float = 100.0,
                  bootstrap: int = BOOTSTRAP, seed: int = 0) -> dict[str, Any]:
    """SGER of one size from annealed points: ``spec_*`` the specialist's, ``gen_*`` the generalist's
    (continued-pretraining compute 6·N·D, validation loss in nats; ``general_start_loss`` the base model's, at
    compute 0). Returns :func:`~cpt_scaling.fit.decisions.sger_from_curves`'s point estimate (``sger``,
    ``status``, ``C_specialist``, ``C_general``) with ``sger_lo``/``sger_hi`` and ``sger_interval`` ("bootstrap
    ..." or "bracket ...")."""
    spec_tokens, gen_tokens = np.asarray(spec_compute, dtype=float), np.asarray(gen_compute, dtype=float)
    spec_loss, gen_loss = np.asarray(spec_loss, dtype=float), np.asarray(gen_loss, dtype=float)
    out = decisions.sger_from_curves((spec_tokens, np.exp(spec_loss)), (gen_tokens, np.exp(gen_loss)),
                                     general_start_loss=None if general_start_loss is None
                                     else math.exp(general_start_loss), limit=limit)
    out["n_general_points"] = len(gen_tokens)
    if not run_noise or bootstrap < 2:
        out["sger_interval"] = "bracket (fit.run_noise unset: not calibrated)"
        return out
    rng = np.random.default_rng(seed)
    draws = np.empty(bootstrap)
    for b in range(bootstrap):
        s = spec_loss * (1.0 + run_noise * rng.standard_normal(spec_loss.shape))
        g = gen_loss * (1.0 + run_noise * rng.standard_normal(gen_loss.shape))
        start = None if general_start_loss is None else math.exp(general_start_loss *
                                                                  (1.0 + run_noise * rng.standard_normal()))
        draws[b] = _sger((spec_tokens, np.exp(s)), (gen_tokens, np.exp(g)), start, limit)
    tail = 100.0 * (1.0 - LEVEL) / 2.0
    lo, hi = np.percentile(draws, [tail, 100.0 - tail], method="linear")
    point = out["sger"] if out["sger"] is not None else math.inf
    out.update(sger_lo=float(min(lo, point)), sger_hi=float(max(hi, point)),
               sger_interval=f"bootstrap ({bootstrap} resamples, run_noise {run_noise:g})")
    return out

