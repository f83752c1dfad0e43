"""Learning-rate schedules as pure functions of the step: linear warmup, then cosine, WSD or constant."""

from __future__ import annotations

import math

from cpt_scaling.train.spec_types import SCHEDULES, OptimizerSpec

WSD_DECAY_FRACTION = 0.2
DECAY_SHAPES = ("linear", "1-sqrt")


def _or(value: float | None, default: float) -> float:
    """``value``, or ``default`` where the spec leaves it unset."""
    return default if value is None else value


def warmup_steps(total_steps: int, warmup_fraction: float) -> int:
    """Number of warmup steps: ``round(warmup_fraction · total_steps)``."""
    return round(warmup_fraction * total_steps)


def wsd_decay_start(total_steps: int, optimizer: OptimizerSpec) -> int:
    """First step of a WSD run's decay: the last ``max(1, round(decay_fraction · total_steps))`` steps decay."""
    decay = max(1, round(float(_or(optimizer.decay_fraction, WSD_DECAY_FRACTION)) * total_steps))
    return total_steps - decay


def learning_rate(step: int, total_steps: int, optimizer: OptimizerSpec) -> float:
    """LR of optimizer step ``step`` (0-based) of ``total_steps``.

    Warmup rises linearly to ``lr`` (step ``s`` gets ``lr·(s+1)/warmup``) over ``warmup_steps`` steps when
    given (the same for every run length: WSD trunks and their branches), else ``warmup_fraction`` of the
    steps. Then ``cosine`` decays to ``lr·min_lr_ratio`` at the last step, ``wsd`` holds ``lr`` and decays to the
    minimum over the last ``decay_fraction`` (default 0.2) of the steps, ``linear`` or ``1-sqrt`` in shape
    (``decay_shape``, default linear; Hägele et al. 2024 find 1-sqrt better), ``constant`` holds ``lr``.
    """
    peak = float(optimizer.lr)
    floor = peak * float(_or(optimizer.min_lr_ratio, 0.0))
    kind = optimizer.schedule
    if optimizer.warmup_steps is not None:
        warm = int(optimizer.warmup_steps)
    else:
        warm = warmup_steps(total_steps, float(_or(optimizer.warmup_fraction, 0.0)))
    if step < warm:
        return peak * (step + 1) / warm
    if kind == "constant":
        return peak
    if kind == "cosine":
        span = total_steps - warm - 1
        progress = 1.0 if span <= 0 else (step - warm) / span
        return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
    if kind == "wsd":
        start = wsd_decay_start(total_steps, optimizer)
        if step < start:
            return peak
        progress = min((step - start + 1) / (total_steps - start), 1.0)
        if optimizer.decay_shape == "1-sqrt":
            return floor + (peak - floor) * (1.0 - math.sqrt(progress))
        return peak + (floor - peak) * progress
    raise ValueError(f"unknown schedule {kind!r} (known: {', '.join(SCHEDULES)})")
