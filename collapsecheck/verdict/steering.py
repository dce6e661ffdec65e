"""The guidance and null-branch verdicts' inputs from a sweep's measures: what raising w does to adherence
(the ``--adherence`` plug-in when given, else the model's implicit classifier) and the null ratio."""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch

from ..measure.diversity import GridStats
from ..measure.implicit import ImplicitStats
from ..measure.pixel import spread_share
from .null import NullTest
from .rules import Steering


#: guidance is judged between w = 1 and this scale when the sweep has it (fast mode's largest, a moderate
#: guidance), so that fast and full scans judge the same thing; else between w = 1 and the sweep's largest w
GUIDANCE_JUDGED_AT = 3.0


def judged_scale(scales: Sequence[float]) -> float:
    """The guidance scale the guidance verdict compares with w = 1."""
    return GUIDANCE_JUDGED_AT if GUIDANCE_JUDGED_AT in scales else max(scales)


def steering(scales: Sequence[float], stats: GridStats, implicit: Optional[ImplicitStats], plugin: Optional[str]
             ) -> Optional[Steering]:
    """Adherence at w = 1 and at the judged scale (:func:`judged_scale`), with the break ratio and the relative
    shift there; None without a scale above 1."""
    top = judged_scale(scales)
    if top <= 1.0 or 1.0 not in scales:
        return None
    one, hi = list(scales).index(1.0), list(scales).index(top)
    broke = implicit.break_ratio[hi] if implicit is not None else None
    moved = relative_shift(scales, stats.shift_from_w1, top)
    if plugin:
        return Steering(top, stats.mean("adherence", one), stats.mean("adherence", hi), 0.0, broke,
                        metric=f"adherence ({plugin})", relative_shift=moved)
    if implicit is None:
        return None
    a1, am = implicit.adherence[one], implicit.adherence[hi]
    return Steering(top, a1.value, am.value, (a1.stderr ** 2 + am.stderr ** 2) ** 0.5, broke, relative_shift=moved)


def relative_shift(scales: Sequence[float], shift_from_w1: Sequence[float], top: float) -> Optional[float]:
    """How far the scale ``top`` moves the samples from w = 1, over how far the w = 0 samples lie from them (mean
    pixel RMS to the same seed's w = 1 sample); None without w = 0 or when the w = 0 samples sit on the w = 1 ones."""
    if 0.0 not in scales:
        return None
    return shift_ratio(float(shift_from_w1[list(scales).index(top)]), float(shift_from_w1[list(scales).index(0.0)]))


def shift_ratio(moved: float, far: float) -> Optional[float]:
    """The relative shift from its two mean shifts: ``moved`` (the judged scale's) over ``far`` (w = 0's); None
    when the w = 0 samples sit on the w = 1 ones."""
    return moved / far if far > 0 else None


def null_test(implicit: Optional[ImplicitStats]) -> Optional[NullTest]:
    """The null ratio as the null-branch verdict reads it; None when it was not measured."""
    if implicit is None or implicit.null is None:
        return None
    n = implicit.null
    return NullTest(n.ratio, n.low, n.high, n.samples, implicit.conditions)


def null_spread(scales: Sequence[float], stats: GridStats) -> Optional[float]:
    """The null branch's spread share: its w = 0 samples' seed variance over the variance of the w = 1 grid
    (:func:`collapsecheck.measure.pixel.spread_share`); None without both scales, with one seed, or when the
    w = 1 grid has no variance."""
    if 0.0 not in scales or 1.0 not in scales or stats.samples.shape[2] < 2:
        return None
    return finite_spread(stats.samples[list(scales).index(0.0)], stats.samples[list(scales).index(1.0)])


def finite_spread(w0: torch.Tensor, w1: torch.Tensor) -> Optional[float]:
    """:func:`collapsecheck.measure.pixel.spread_share` of the w = 0 samples against the w = 1 grid, None where it
    is not a finite number (a w = 1 grid without variance)."""
    share = spread_share(w0, w1)
    return share if math.isfinite(share) else None
