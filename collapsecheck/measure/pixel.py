"""Seed diversity without learned weights: pairwise RMS distance, per-pixel std, near duplicates.

All functions take a batch of sample sets ``x`` of shape (..., S, *dims) -- S seeds of one
condition along dim -2 after flattening -- and reduce over seeds. Units are those of the samples
(pixels in [-1, 1] for pixel-space models). Higher values mean more diverse.

Pairwise distances use a Gram matrix of the samples *centred on their seed mean*, in float64:
distances are translation invariant, and centring keeps the near-identical samples of a collapsed
model from cancelling catastrophically.
"""
from __future__ import annotations

import torch

#: measure metadata, as reports show it
HIGHER_IS_MORE_DIVERSE = True


def _flat(x: torch.Tensor, seed_dim: int) -> torch.Tensor:
    """(..., S, *dims) -> (..., S, D) float64."""
    lead = x.shape[: seed_dim + 1]
    return x.reshape(lead + (-1,)).double()


def pairwise_rms(x: torch.Tensor, seed_dim: int = 0) -> torch.Tensor:
    """RMS distance ``sqrt(mean_d (x_i - x_j)^2)`` between every pair of seeds: (..., S, S)."""
    flat = _flat(x, seed_dim)
    flat = flat - flat.mean(dim=-2, keepdim=True)
    sq = (flat * flat).sum(-1)
    gram = flat @ flat.transpose(-1, -2)
    d2 = (sq.unsqueeze(-1) + sq.unsqueeze(-2) - 2.0 * gram).clamp_min(0.0) / flat.shape[-1]
    d2 = d2 * (1.0 - torch.eye(d2.shape[-1], dtype=d2.dtype, device=d2.device))
    return d2.sqrt()


def upper_mean(dist: torch.Tensor) -> torch.Tensor:
    """Mean of a (..., S, S) matrix over the pairs i < j."""
    S = dist.shape[-1]
    i, j = torch.triu_indices(S, S, offset=1, device=dist.device)
    return dist[..., i, j].mean(-1)


def mean_pairwise_rms(x: torch.Tensor, seed_dim: int = 0) -> torch.Tensor:
    """Mean over seed pairs of the RMS distance."""
    return upper_mean(pairwise_rms(x, seed_dim))


def per_pixel_std(x: torch.Tensor, seed_dim: int = 0) -> torch.Tensor:
    """Standard deviation across seeds (ddof = 1) at each pixel, averaged over pixels."""
    return _flat(x, seed_dim).std(dim=-2, unbiased=True).mean(-1)


def near_duplicate_fraction(dist: torch.Tensor, threshold: float) -> torch.Tensor:
    """Fraction of seed pairs (i < j) closer than ``threshold``."""
    S = dist.shape[-1]
    i, j = torch.triu_indices(S, S, offset=1, device=dist.device)
    return (dist[..., i, j] < threshold).double().mean(-1)


def near_duplicate_stderr(dist: torch.Tensor, threshold: float) -> torch.Tensor:
    """Jackknife standard error of :func:`near_duplicate_fraction` over the seeds (pairs share seeds, so they
    are not independent): leaving seed i out removes its d_i near pairs, theta_i = (N - d_i) / C(S-1, 2),
    se = sqrt((S-1)/S sum_i (theta_i - mean theta)^2). NaN with fewer than 3 seeds."""
    S = dist.shape[-1]
    if S < 3:
        return torch.full(dist.shape[:-2], float("nan"), dtype=torch.float64, device=dist.device)
    near = (dist < threshold).double()
    near = near * (1 - torch.eye(S, dtype=torch.float64, device=dist.device))  # the diagonal is no pair
    degree = near.sum(-1)  # (..., S): near pairs each seed is in (the matrix is symmetric)
    total = degree.sum(-1, keepdim=True) / 2
    theta = (total - degree) / ((S - 1) * (S - 2) / 2)
    return ((S - 1) / S * (theta - theta.mean(-1, keepdim=True)).pow(2).sum(-1)).sqrt()


def grid_variance(flat: torch.Tensor) -> torch.Tensor:
    """The variance of a (..., C, S, D) grid's samples, per pixel averaged over pixels, as a one-way
    analysis of variance estimates it: the mean within-condition variance across seeds (ddof = 1) plus the
    variance of the C condition means (ddof = 0: the conditions are the scan's, not a sample of them) less its
    sampling part ((C - 1) / C x within / S), clamped at 0. Exactly the within part when every condition gives
    the same samples. Returns (...)."""
    C, S = flat.shape[-3], flat.shape[-2]
    mean_within = flat.var(dim=-2, unbiased=True).mean(-2)  # (..., D)
    spread = flat.mean(-2).var(dim=-2, unbiased=False)
    between = (spread - (C - 1) / C * mean_within / S).clamp_min(0)
    return (mean_within + between).mean(-1)


def seed_share(x: torch.Tensor, seed_dim: int) -> torch.Tensor:
    """Share of the grid's variance that the seed explains within each condition.

    ``x`` is (..., C, S, *dims) with the seeds at ``seed_dim`` and the conditions just before. For each
    condition: its per-pixel variance across seeds (ddof = 1), averaged over pixels, divided by the grid's
    variance (:func:`grid_variance`). Near 1 when the condition leaves the seed's spread alone (exactly 1 when
    every condition gives the same samples), near 0 when the seed no longer matters; scale free; never
    negative; its mean over the conditions is at most 1. Returns (..., C); NaN where the grid has no variance.
    """
    flat = _flat(x, seed_dim)  # (..., C, S, D)
    within = flat.var(dim=-2, unbiased=True).mean(-1)
    return within / grid_variance(flat).unsqueeze(-1)


def spread_share(x: torch.Tensor, of: torch.Tensor) -> float:
    """How much of the grid ``of``'s spread the seeds of ``x`` keep: the mean over ``x``'s conditions of the
    per-pixel variance across seeds (ddof = 1, averaged over pixels), divided by the variance of ``of`` with every
    condition and seed together (:func:`grid_variance`). Both are (C, S, *dims). The null branch's w = 0 samples
    against the w = 1 grid: about 1 for a null that draws the model's marginal, near 0 for one that draws one
    image whatever the seed. Scale free, never negative; NaN when ``of`` has no variance."""
    within, grid = _flat(x, 1).var(dim=-2, unbiased=True).mean(), grid_variance(_flat(of, 1))
    return float(within / grid) if grid > 0 else float("nan")
