"""Whether a verdict rests on samples in the data range (pure): a reason that says so when not."""
from __future__ import annotations

from typing import Optional

from ..thresholds import Thresholds


def out_of_range_reason(outside_share: float, variance: float, max_abs: float, sampler: str,
                        th: Thresholds) -> Optional[str]:
    """None when the samples stay in [-1, 1]; else the reason that makes the verdict unreliable."""
    crossed = []
    if outside_share >= th.out_of_range_share:
        crossed.append(f"{outside_share:.1%} of values beyond |x| = {1 + th.out_of_range_margin:g} >= out_of_range_share "
                       f"{th.out_of_range_share:g}")
    if variance >= th.out_of_range_variance:
        crossed.append(f"value variance {variance:.3g} >= out_of_range_variance {th.out_of_range_variance:g}")
    if not crossed:
        return None
    return (f"UNRELIABLE: the {sampler} samples leave the data range ({'; '.join(crossed)}; largest |x| {max_abs:.3g}): "
            "they are not the model's own samples, and the collapse and guidance verdicts on them say little; check "
            "clip_sample / thresholding in the scheduler config (--scheduler), --prediction-type, or try --sampler ddpm")
