"""Every diversity and adherence number of a sampled grid, per (variant, condition).

Samples are clipped to [-1, 1] first, as images would show them (how far they leave that range is measured
before, :mod:`.datarange`). The individual measures live in
:mod:`.pixel` (pixel distances), :mod:`.lpips` and :mod:`.adherence`. Numbers only: the verdicts
on them are :mod:`collapsecheck.verdict.grid`'s.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch

from .adherence import adherence_scores, centroid_adherence
from .datarange import range_numbers
from .pixel import mean_pairwise_rms, near_duplicate_fraction, near_duplicate_stderr, pairwise_rms, per_pixel_std, seed_share
from ..thresholds import Thresholds

#: how the adherence numbers are measured when no --adherence metric is given
BUILTIN_ADHERENCE = "nearest-centroid: share of samples nearest to their own condition's mean w = 1 sample (built-in)"


@dataclass
class GridStats:
    """(V, C) tensors on the CPU; None where a measure is unavailable."""

    samples: torch.Tensor  # (V, C, S, ...) clipped, on the sampling device
    pixel_rms: torch.Tensor
    pixel_std: torch.Tensor
    near_duplicates: torch.Tensor
    seed_share: Optional[torch.Tensor]
    lpips: Optional[torch.Tensor]
    adherence: Optional[torch.Tensor]
    shift_from_w1: torch.Tensor  # (V,): mean RMS distance to the reference (w = 1) sample of the same cell
    #: (V,) each: the unclipped images' share of values outside [-1, 1], variance, largest |x| (measure.datarange)
    outside_share: Optional[torch.Tensor] = None
    value_variance: Optional[torch.Tensor] = None
    max_abs: Optional[torch.Tensor] = None
    #: (V, C): jackknife standard error of near_duplicates over the seeds (NaN with fewer than 3 seeds)
    near_duplicates_stderr: Optional[torch.Tensor] = None

    def value(self, name: str, v: int, c: int) -> Optional[float]:
        values = getattr(self, name)
        if values is None:
            return None
        x = float(values[v, c])
        return x if x == x and abs(x) != float("inf") else None

    def mean(self, name: str, v: int) -> Optional[float]:
        values = [self.value(name, v, c) for c in range(self.pixel_rms.shape[1])]
        finite = [x for x in values if x is not None]
        return sum(finite) / len(finite) if finite else None


def measure_grid(
    raw: torch.Tensor,
    reference: torch.Tensor,
    th: Thresholds,
    conds,
    lpips_means: Optional[Callable[[torch.Tensor], Optional[torch.Tensor]]] = None,
    adherence_fn=None,
) -> GridStats:
    """Measure a (V, C, S, ...) grid. ``reference`` (C, S, ...) is the clipped w = 1 sample set that
    shifts and the built-in adherence are measured against."""
    outside, variance, max_abs = range_numbers(raw, th.out_of_range_margin)
    samples = raw.clamp(-1.0, 1.0)
    pairs = pairwise_rms(samples, seed_dim=2)
    C = samples.shape[1]
    if adherence_fn is not None:
        adherence = adherence_scores(adherence_fn, samples, conds)
    elif C >= 2:
        adherence = centroid_adherence(samples, reference).cpu()
    else:
        adherence = None
    return GridStats(
        samples=samples,
        pixel_rms=mean_pairwise_rms(samples, seed_dim=2).cpu(),
        pixel_std=per_pixel_std(samples, seed_dim=2).cpu(),
        near_duplicates=near_duplicate_fraction(pairs, th.near_duplicate_rms).cpu(),
        near_duplicates_stderr=near_duplicate_stderr(pairs, th.near_duplicate_rms).cpu(),
        seed_share=seed_share(samples, seed_dim=2).cpu() if C >= 2 else None,
        lpips=lpips_means(samples) if lpips_means is not None else None,
        adherence=adherence,
        shift_from_w1=mean_shift(samples, reference).cpu(),
        outside_share=outside, value_variance=variance, max_abs=max_abs,
    )


def mean_shift(samples: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """(V,): the mean over conditions and seeds of each sample's RMS distance to the same cell of ``reference``
    (C, S, ...), the w = 1 samples of the same seeds."""
    return (samples - reference.unsqueeze(0)).flatten(3).pow(2).mean(-1).sqrt().mean((-1, -2))
