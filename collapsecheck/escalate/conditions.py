"""Fast mode's borderline conditions re-sampled at full settings: their numbers and verdicts measured again, the
seed share over the exact or mixed grid variance (see the package docstring), and the overall verdict recomputed."""
from __future__ import annotations

import dataclasses
from typing import Optional

import torch

from ..measure.diversity import GridStats
from ..measure.pixel import grid_variance
from ..profile import stage
from ..result import ConditionResult
from ..sample.grid import GridSamples
from ..stages import Decided, LpipsMeter, Scan, judge_guidance
from ..thresholds import Thresholds
from ..verdict.grid import borderline, cell_finding
from ..verdict.rules import overall_collapse
from .escalation import Escalation
from .grids import FullGrids, decoded, measure_resampled, resample


def escalate_conditions(s: Scan, decided: Decided, fast_images: torch.Tensor, lpips: LpipsMeter,
                        grids: FullGrids) -> tuple[Decided, Escalation]:
    """The borderline conditions (:func:`~collapsecheck.verdict.grid.borderline`) re-sampled and re-measured; the
    overall verdict recomputed. When every condition was re-sampled, ``grids`` keeps their samples."""
    th, w = s.config.thresholds, s.config.guidance_scale
    picked = [c.index for c in decided.conditions if borderline(c, th) or c.index in s.config.escalate_also]
    if not picked:
        return decided, Escalation(conditions=len(s.conds), guidance_scale=w)
    with stage("escalation") as timed:
        grid = resample(s, picked, w)
        timed.nfe += grid.nfe
        images = decoded(s, grid)
        stats, rescale = remeasure(s, images, picked, fast_images, lpips)
    if len(picked) == len(s.conds):
        grids.offer(w, grid, images)
    conditions = list(decided.conditions)
    for j, c in enumerate(picked):
        conditions[c] = remeasured_condition(conditions[c], stats, grid, j, th)
    collapse = overall_collapse([c.verdict for c in conditions], th)
    esc = Escalation(picked, len(s.conds), grid.nfe, w, "exact" if len(picked) == len(s.conds) else "mixed",
                     rescale)
    guidance = judge_guidance(s, decided.null, decided.steer, decided.max_shift, decided.eps_ratio, collapse)
    return dataclasses.replace(decided, conditions=conditions, collapse=collapse, guidance=guidance), esc


def remeasure(s: Scan, images: torch.Tensor, indices: list[int], fast_images: torch.Tensor,
              lpips: LpipsMeter) -> tuple[GridStats, Optional[float]]:
    """The re-sampled conditions' measures (1, k), their seed shares over the full grid's variance (exact when every
    condition was re-sampled, else the mixed grid's: see the package docstring), and mixed / fast grid variance."""
    stats = measure_resampled(s, images, indices, lpips)
    full = _flat(stats.samples[0])  # (k, S, D), clipped
    within = full.var(dim=-2, unbiased=True).mean(-1)
    denominator, rescale = shared_denominator(full, _flat(fast_images.to(full.device)), indices)
    share = (within / denominator).cpu() if len(s.conds) >= 2 else None
    return dataclasses.replace(stats, seed_share=None if share is None else share.unsqueeze(0)), rescale


def shared_denominator(full: torch.Tensor, fast: torch.Tensor, indices: list[int]) -> tuple[torch.Tensor, Optional[float]]:
    """The full grid's variance: exact from ``full`` (k, S, D) when it holds every condition of ``fast`` (C, S', D),
    else :func:`mixed_grid_variance` of the grid with the re-sampled conditions' full sets in place of their fast
    ones; with the factor by which that differs from the fast grid's variance."""
    if full.shape[0] == fast.shape[0]:
        return grid_variance(full), None
    sets = [fast[c] for c in range(fast.shape[0])]
    for j, c in enumerate(indices):
        sets[c] = full[j]
    mixed = mixed_grid_variance(sets)
    return mixed, float(mixed / grid_variance(fast))


def mixed_grid_variance(sets: list[torch.Tensor]) -> torch.Tensor:
    """:func:`~collapsecheck.measure.pixel.grid_variance` of C sample sets (S_c, D) of different sizes: the mean
    within-condition variance (ddof = 1) plus the variance of the condition means (ddof = 0) less its sampling part
    (C - 1) / C^2 sum_c within_c / S_c (with one S, grid_variance's (C - 1) / C x within / S), clamped at 0 per
    pixel, averaged over pixels."""
    C = len(sets)
    within = torch.stack([x.var(dim=0, unbiased=True) for x in sets])  # (C, D)
    sizes = torch.tensor([x.shape[0] for x in sets], dtype=within.dtype, device=within.device)
    spread = torch.stack([x.mean(0) for x in sets]).var(dim=0, unbiased=False)
    between = (spread - (C - 1) / C ** 2 * (within / sizes.unsqueeze(-1)).sum(0)).clamp_min(0)
    return (within.mean(0) + between).mean(-1)


def _flat(images: torch.Tensor) -> torch.Tensor:
    """(C, S, ...) -> (C, S, D) float64."""
    return images.reshape(images.shape[0], images.shape[1], -1).double()


def remeasured_condition(old: ConditionResult, stats: GridStats, grid: GridSamples, j: int,
                         th: Thresholds) -> ConditionResult:
    """Condition ``old`` with the numbers and verdict of its re-sampled set (column ``j`` of ``stats``)."""
    f = cell_finding(stats, 0, j, th)
    return dataclasses.replace(
        old, verdict=f.verdict, reasons=list(f.reasons), decided_by=list(f.evidence), resampled=True,
        pixel_rms=float(stats.pixel_rms[0, j]), pixel_std=float(stats.pixel_std[0, j]),
        near_duplicates=float(stats.near_duplicates[0, j]),
        near_duplicates_stderr=stats.value("near_duplicates_stderr", 0, j), seed_share=stats.value("seed_share", 0, j),
        lpips=stats.value("lpips", 0, j), **_eps(old, grid, j))


def _eps(old: ConditionResult, grid: GridSamples, j: int) -> dict:
    """The re-sampled set's eps ratio and cosine; the fast ones where it was sampled without the null half (w = 1)."""
    ratio = grid.eps_ratio[:, 0, j].mean(-1).cpu().mean()
    if torch.isnan(ratio):
        return {"eps_ratio": old.eps_ratio, "eps_cos": old.eps_cos}
    return {"eps_ratio": float(ratio), "eps_cos": float(grid.eps_cos[:, 0, j].mean(-1).cpu().mean())}
