"""Full-setting grids for fast mode's escalation: conditions re-sampled as a full scan samples them (FULL_SEEDS
seeds from ``--seed``, FULL_STEPS steps, the same sampler), decoded as the sweep decodes, and measured; and
:class:`FullGrids`, every condition's full-setting grid per guidance scale, drawn and decoded once for all the
escalations that need it."""
from __future__ import annotations

import dataclasses
from typing import Optional

import torch

from ..config import FULL_SEEDS, FULL_STEPS
from ..load.conditions import ConditionSet
from ..measure.diversity import GridStats, measure_grid
from ..model.guard import memory_guard
from ..profile import stage
from ..sample.grid import GridSamples, sample_grid
from ..stages import LpipsMeter, Scan, on_measuring_device


def escalation_runs(s: Scan) -> bool:
    """Does fast mode escalate here? Not in full mode, not with escalation off, and not when a flow-matching
    pipeline's own sigmas set the steps (a full scan's 25 steps are another schedule, which this scan's schedule
    does not hold)."""
    return (s.config.mode == "fast" and s.config.escalation
            and not (s.schedule.table is not None and s.schedule.table.sampling is not None))


class FullGrids:
    """Every condition's samples at full settings, per guidance scale: drawn (and decoded) once, when first asked
    for, or offered by the conditions' escalation when it drew them all. The network evaluations of a draw are
    charged to the first to ask (:meth:`get`)."""

    def __init__(self, s: Scan):
        self.s = s
        self.grids: dict[float, GridSamples] = {}
        self.images: dict[float, torch.Tensor] = {}

    def offer(self, scale: float, grid: GridSamples, images: Optional[torch.Tensor] = None) -> None:
        """Keep ``grid`` (every condition at ``scale``) and its decoded ``images``, drawn elsewhere."""
        self.grids[scale] = grid
        if images is not None:
            self.images[scale] = images

    def has(self, scale: float) -> bool:
        """Were every condition's samples at ``scale`` drawn already (nothing to spend)?"""
        return scale in self.grids

    def get(self, scale: float) -> tuple[GridSamples, int]:
        """Every condition's full-setting samples at ``scale``, and the network evaluations this call spent."""
        if scale in self.grids:
            return self.grids[scale], 0
        grid = resample(self.s, list(range(len(self.s.conds))), scale)
        self.grids[scale] = grid
        return grid, grid.nfe

    def decoded(self, scale: float) -> tuple[torch.Tensor, int]:
        """:meth:`get`'s samples decoded as the sweep decodes its samples (once), and the evaluations spent."""
        grid, spent = self.get(scale)
        if scale not in self.images:
            self.images[scale] = decoded(self.s, grid)
        return self.images[scale], spent


def pick(conds: ConditionSet, indices: list[int]) -> ConditionSet:
    """Conditions ``indices`` of ``conds``, with the same null (their own nulls, when each has one)."""
    at = torch.tensor(indices)
    null = conds.null[at] if conds.paired_null else conds.null
    return dataclasses.replace(conds, values=conds.values[at], labels=tuple(conds.labels[i] for i in indices),
                               null=null, complete=False)


def resample(s: Scan, indices: list[int], scale: float) -> GridSamples:
    """The conditions ``indices`` at guidance ``scale``, FULL_SEEDS seeds from ``--seed`` and FULL_STEPS steps."""
    seeds = [s.config.seed + i for i in range(FULL_SEEDS)]
    conds = pick(s.conds, indices)
    cond_only = scale == 1.0 and not getattr(s.denoiser, "embedded_guidance", False)  # w = 1 needs no null half
    return s.fit("re-sampling the borderline conditions", lambda batch: sample_grid(
        s.denoiser, s.schedule, conds, seeds, [scale], FULL_STEPS, batch, s.bar("escalation", FULL_STEPS),
        with_null=not cond_only))


def decoded(s: Scan, grid: GridSamples) -> torch.Tensor:
    """A re-sampled grid's samples decoded as the sweep decodes its samples, on the measuring device."""
    with stage("decoding"):
        return on_measuring_device(s.fit("decoding the re-sampled conditions",
                                         lambda b: s.denoiser.decode_grid(grid.samples, b)))


def measure_resampled(s: Scan, images: torch.Tensor, indices: list[int], lpips: LpipsMeter) -> GridStats:
    """The measures (1, k) of the re-sampled conditions ``indices`` from their decoded ``images``."""
    with stage("measures"), memory_guard("measuring the re-sampled conditions", s.batch_size):
        return measure_grid(images, images[0].clamp(-1.0, 1.0), s.config.thresholds, pick(s.conds, indices),
                            lpips.for_scan(s))
