"""The seeds' diversity against the training data's own (``--data-images DIR``), without the data's labels.

The seed share judges a condition's seeds against the model's own grid, so a model that draws every condition
narrower than its data reads like itself. Given images of the training data whose classes are the scan's
conditions, this module estimates, per condition c,

    rho_c = W_c / (V - B)

- W_c = pixel_rms_c^2 / 2: the seeds' variance per pixel as their mean pairwise RMS distance implies it (two
  independent draws of variance W differ by sqrt(2 W) RMS; the mean of square roots makes it a slight underestimate);
- V: the data images' variance per pixel (ddof = 1, averaged over pixels), classes together, no labels;
- B = G - mean(W): the conditions' between variance, G = mean(W) / mean(seed share) the grid's variance as the seed
  shares imply it on the same scale.

If the conditions' means are the classes' means, V - B is the data's within-class variance and rho_c the share of
it the seeds keep (1: as varied as the data's class; the brute force of the zoos calls a class at risk below 0.4).
Everything here comes from numbers the scan reports (``pixel_rms``, ``seed_share``) and the images, so a result's
JSON and the images reproduce it. Not measurable (None) with fewer than two conditions, no seed share, or when B is
at least V: the conditions spread wider than the data, which is then not the data of these conditions.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable, Optional, Sequence

import torch


@dataclass
class DataDiversity:
    """rho per condition and its mean, and the numbers behind them (per-pixel variances of images in [-1, 1])."""

    per_condition: list[float]
    mean: float
    data_variance: float  # V
    between: float  # B
    within: float  # V - B, the data's within-class variance as estimated
    images: int
    escalated: bool = False  # fast mode: read from the w = 1 samples re-drawn at full settings

    def to_dict(self) -> dict:
        return asdict(self)


def image_variance(images: torch.Tensor) -> float:
    """Per-pixel variance across the images (N, ...) (ddof = 1), averaged over pixels."""
    return streamed_variance([images])[0]


def streamed_variance(chunks: Iterable[torch.Tensor]) -> tuple[float, int]:
    """:func:`image_variance` of the images of ``chunks`` (each (n, ...)) taken together, and their count, holding
    one chunk at a time: per-pixel sums in float64 (values in [-1, 1], so the difference of sums loses nothing
    that matters)."""
    total = squares = None
    count = 0
    for chunk in chunks:
        flat = chunk.double().flatten(1)
        total = flat.sum(0) if total is None else total + flat.sum(0)
        squares = (flat * flat).sum(0) if squares is None else squares + (flat * flat).sum(0)
        count += flat.shape[0]
    if count < 2:
        return float("nan"), count
    variance = (squares - total * total / count) / (count - 1)
    return float(variance.clamp(min=0).mean()), count


def data_relative(pixel_rms: Sequence[float], seed_share: Sequence[Optional[float]], data_variance: float,
                  images: int) -> Optional[DataDiversity]:
    """rho per condition from the conditions' pixel RMS and seed shares and the data's variance; None when not
    measurable (module docstring)."""
    if len(pixel_rms) < 2 or any(s is None for s in seed_share) or sum(seed_share) <= 0:
        return None
    w = [r * r / 2 for r in pixel_rms]
    mean_w = sum(w) / len(w)
    grid = mean_w / (sum(seed_share) / len(seed_share))
    between = max(grid - mean_w, 0.0)
    within = data_variance - between
    if within <= 0:
        return None
    rho = [x / within for x in w]
    return DataDiversity(rho, sum(rho) / len(rho), data_variance, between, within, images)


def null_data_share(w0_pixel_rms: Optional[float], data_variance: Optional[float]) -> Optional[float]:
    """The null branch's own samples against the data: the w = 0 seeds' variance as their mean pairwise RMS distance
    implies it (``pixel_rms^2 / 2``, as W_c for rho) over the data images' variance V (classes together, no labels).
    A learned null draws the model's marginal, which varies as the data does (about 1); a null that draws nearly one
    image whatever the seed keeps almost nothing. None when either number is unknown or V is not positive."""
    if w0_pixel_rms is None or data_variance is None or not data_variance > 0:
        return None
    return w0_pixel_rms * w0_pixel_rms / 2 / data_variance
