"""Whether a verdict rests on samples in the data range, and whether they are as far apart as noise (pure)."""
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


#: samples farther apart than this (mean pairwise RMS, pixels clipped to [-1, 1]) are as far apart as
#: clipped Gaussian noise (about 1.1): the diversity numbers then measure noise, not images
NOISE_LIKE_RMS = 1.0


def noise_like_notes(mean_pixel_rms: float) -> list[str]:
    """A note when the samples at the verdict scale are as far apart as noise (none otherwise)."""
    if mean_pixel_rms > NOISE_LIKE_RMS:
        return [
            f"the samples are as far apart as noise (mean pixel RMS {mean_pixel_rms:.2f} > {NOISE_LIKE_RMS:g}): check "
            "--concat-order, the condition's value range, --prediction-type and the scheduler; the diversity "
            "numbers may measure noise rather than images"
        ]
    return []
