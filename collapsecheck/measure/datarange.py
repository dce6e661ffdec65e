"""Do the samples stay in the data range? Pixels are judged in [-1, 1]; latent models on their decoded images.

A sampler that leaves the data range (a DDPM-trained model sampled without the ``clip_sample`` its scheduler
config asks for, a model that blows up) gives samples that are not the model's own: their diversity says
nothing about collapse. Per guidance scale, over every condition and seed of the final images:

* ``outside_share``: the share of values with |x| > 1 + ``margin`` (``thresholds.out_of_range_margin``, 0.25:
  trained models overshoot [-1, 1] a little, by ~0.1 on the digits examples, which clipping hides harmlessly);
* ``variance``: the variance of all values (images in [-1, 1] have at most 1);
* ``max_abs``: the largest |x|.
"""
from __future__ import annotations

import torch


def range_numbers(images: torch.Tensor, margin: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(outside_share, variance, max_abs), each (V,) float64 on the CPU, of a (V, C, S, ...) image grid."""
    flat = images.flatten(1)
    outside = (flat.abs() > 1.0 + margin).double().mean(1)
    variance = flat.double().var(dim=1, unbiased=False)
    return outside.cpu(), variance.cpu(), flat.abs().amax(1).double().cpu()
