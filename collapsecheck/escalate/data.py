"""The seeds against the training data (``--data-images``): :mod:`collapsecheck.measure.datadiv`'s numbers from
the conditions' pixel RMS and seed shares at the verdict scale, as the result reports them.

Fast mode's 7 steps give smoother samples than a full scan's 25 (fast/full mean rho 0.70-2.5 on the zoos), and rho,
unlike the seed share, is not a ratio of the model's own numbers. So when a fast scan's mean rho is below
``data_relative_diversity`` x DATA_ESCALATION_BAND and the model is not collapsed, every condition is drawn again at
the verdict scale at full settings (:class:`~.grids.FullGrids`: a full scan's samples) and rho is read from those:
the full scan's numbers. Not in full mode, without escalation, or when a flow-matching pipeline's sigmas set the steps.

The null branch's own samples against the same images (:func:`~collapsecheck.measure.datadiv.null_data_share`),
for every kind of condition but a ControlNet's (its null is the base model) and a guidance-distilled model (no null):
from the w = 0 sweep point's pixel RMS. Fast mode always reads it from the w = 0 samples drawn again at full settings
(one condition's: at w = 0 the condition does not enter), so its share is the full scan's: fast/full ratios of the
share span 0.49-3.0 on the calibration split (round 29), and a band around the thresholds (1.25 until round 39) left
a null at a threshold read differently by the two modes (round 38's `persian/hint_nodrop`: 0.0938 fast, 0.0605 full,
`null_data_not_learned` 0.0612). The cost: one condition's w = 0 samples at full settings, none where the
escalation drew them.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

import torch

from ..load.images import iter_training_images
from ..config import FULL_SEEDS, FULL_STEPS
from ..measure.cells import cell_shares, reduced
from ..measure.datadiv import DataDiversity, data_relative, null_data_share, streamed_variance
from ..stages import Decided, LpipsMeter, Scan, guidance_kind, judge_guidance
from ..verdict.data import hints_against_cells
from ..verdict.rules import PIXEL_ALIGNED, Finding
from .grids import FullGrids, decoded, escalation_runs, measure_resampled, resample

#: fast mode re-draws the verdict scale at full settings when its mean rho is below data_relative_diversity x this
DATA_ESCALATION_BAND = 1.5
#: fast mode reads the cell shares from the verdict scale re-drawn at full settings when a collapsed condition's
#: fast share lies within this factor of cell_collapsed_share either way (fast/full 0.44-2.71, median 0.92, where not
#: re-drawn on the calibration split's fast scans: docs/measures.md; 2.5 until after round 32's scoring)
CELL_BAND = 3.0
#: the condition kinds whose conditions can be a dataset's classes (not pixel-aligned images)
CLASS_LIKE = ("class", "cross_attn")


@dataclass
class Cells:
    """Each condition's cell share (:mod:`collapsecheck.measure.cells`), its cell's size, and whether fast mode read
    it from the verdict scale drawn again at full settings."""

    shares: list[Optional[float]]
    sizes: list[int]
    redrawn: list[bool]


@dataclass
class AgainstData:
    """What ``--data-images`` measured: rho (class or prompt conditions), the null's share of the data's variance,
    whether fast mode read that share from w = 0 samples drawn again at full settings, and the evaluations spent."""

    diversity: Optional[DataDiversity] = None
    null_share: Optional[float] = None
    null_escalated: bool = False
    nfe: int = 0
    cells: Optional[Cells] = None

    def attach(self, result) -> None:
        """Into ``result`` (a ScanResult): ``data_reference`` and the null branch's ``null_data_share``."""
        result.data_reference = self.diversity.to_dict() if self.diversity else None
        result.guidance.null_branch.null_data_share = self.null_share
        if self.cells is not None:
            for cond, share, size, again in zip(result.conditions, self.cells.shares, self.cells.sizes,
                                                self.cells.redrawn):
                cond.cell_share, cond.cell_images, cond.cell_resampled = share, size, again
        if self.null_escalated:
            result.guidance.null_branch.reasons.append(
                f"null_data_share is read from the w = 0 samples drawn again with {FULL_SEEDS} seeds x {FULL_STEPS} "
                "steps, as a full scan draws them (fast settings' samples are smoother: fast mode always does this)")


def measure_against_data(s: Scan, decided: Decided, images: torch.Tensor, lpips: LpipsMeter,
                         grids: FullGrids) -> AgainstData:
    """rho of the scan's conditions and the null's share of the data's variance against ``--data-images``, and the
    network evaluations spent (fast mode's re-draws); nothing without the option. ``images``: the samples at the
    verdict scale (C, S, channels, H, W), whose shape the data images are read at. ``grids``: the scan's full-setting grids,
    those fast mode's escalation drew (:func:`~collapsecheck.escalate.escalate`) read instead of drawn again."""
    if not s.config.data_images:
        return AgainstData()
    kept: list[torch.Tensor] = []  # the images reduced for the cells, read in the same pass
    variance, count = streamed_variance(tapped(iter_training_images(s.config.data_images, images.shape[2],
                                                                    tuple(images.shape[-2:])), kept))
    share, escalated, spent = null_against_data(s, decided, variance, lpips, grids)
    rho, redrawn = rho_against_data(s, decided, variance, count, lpips, grids)
    cells, cell_nfe = cells_against_data(s, decided, images, torch.cat(kept) if kept else None, grids)
    return AgainstData(rho, share, escalated, spent + redrawn + cell_nfe, cells)


def tapped(chunks, kept: list[torch.Tensor]):
    """``chunks`` passed on, each kept reduced (:func:`~collapsecheck.measure.cells.reduced`) in ``kept``."""
    for chunk in chunks:
        kept.append(reduced(chunk))
        yield chunk


def cells_against_data(s: Scan, decided: Decided, images: torch.Tensor, data: Optional[torch.Tensor],
                       grids: FullGrids) -> tuple[Optional[Cells], int]:
    """Each condition's cell share (class, prompt or pixel-aligned conditions) and the evaluations spent: fast mode
    reads every share from the verdict scale drawn again at full settings (a full scan's samples, so its shares) when
    the fast share of a condition it can move lies within CELL_BAND of its bound (a class or prompt condition read
    collapsed, which cell_collapsed_share can relieve; any pixel-aligned one, which hint_cell_collapsed_share reads
    either way)."""
    if s.conds.kind not in CLASS_LIKE + PIXEL_ALIGNED or data is None or len(s.conds) < 2:
        return None, 0
    shares, sizes = cell_shares(images, data)
    aligned = s.conds.kind in PIXEL_ALIGNED
    x = s.config.thresholds.hint_cell_collapsed_share if aligned else s.config.thresholds.cell_collapsed_share
    near = any((aligned or c.verdict == "collapsed") and share is not None and x / CELL_BAND <= share < x * CELL_BAND
               for c, share in zip(decided.conditions, shares))
    if not near or not escalation_runs(s):
        return Cells(shares, sizes, [False] * len(shares)), 0
    full, spent = grids.decoded(s.config.guidance_scale)
    shares, sizes = cell_shares(full[0].clamp(-1.0, 1.0), data)  # as the sweep's samples are measured
    return Cells(shares, sizes, [True] * len(shares)), spent


def hints_judged_by_cells(s: Scan, decided: Decided, cells: Optional[Cells]) -> Decided:
    """A pixel-aligned condition set's conditions judged by their cell shares
    (:func:`~collapsecheck.verdict.data.hints_against_cells`), the overall verdict recounted and guidance judged
    again (a decoder's rule reads the overall verdict); ``decided`` itself for any other kind, or where nothing
    moved."""
    if cells is None or s.conds.kind not in PIXEL_ALIGNED:
        return decided
    th = s.config.thresholds
    found, overall = hints_against_cells([c.verdict for c in decided.conditions], cells.shares, th)
    if overall is None:
        return decided
    conditions = [c if f is None else dataclasses.replace(
        c, verdict=f.verdict, reasons=list(f.reasons) + [f"by its seed share alone: {r}" for r in c.reasons],
        decided_by=list(f.evidence)) for c, f in zip(decided.conditions, found)]
    collapse = Finding(overall.verdict, tuple(f"each condition judged against its own cell of the training data: {r}"
                                              for r in overall.reasons), overall.evidence)
    guidance = judge_guidance(s, decided.null, decided.steer, decided.max_shift, decided.eps_ratio, collapse)
    return dataclasses.replace(decided, conditions=conditions, collapse=collapse, guidance=guidance)


def null_against_data(s: Scan, decided: Decided, variance: float, lpips: LpipsMeter,
                      grids: FullGrids) -> tuple[Optional[float], bool, int]:
    """The null's share of the data's variance from the w = 0 sweep point (in fast mode from w = 0 re-drawn at full
    settings, or read from ``grids`` where the escalation drew w = 0 already), whether it was re-drawn, and the
    evaluations spent; None for a ControlNet or a guidance-distilled model, or without w = 0."""
    w0 = [p.pixel_rms for p in decided.sweep if p.w == 0.0]
    kind = guidance_kind(s)  # a ControlNet's null is its base; with embedded guidance w = 0 is no null
    if kind["base_model"] or kind["embedded"] or s.config.guidance_distilled or not w0:
        return None, False, 0
    share = null_data_share(w0[0], variance)
    if share is None or not escalation_runs(s):
        return share, False, 0
    indices = list(range(len(s.conds))) if s.conds.paired_null else [0]  # w = 0: the condition does not enter
    images, spent = w0_images(s, indices, grids)
    stats = measure_resampled(s, images, indices, lpips)
    return null_data_share(float(stats.pixel_rms[0].mean()), variance), True, spent


def w0_images(s: Scan, indices: list[int], grids: FullGrids) -> tuple[torch.Tensor, int]:
    """Conditions ``indices`` at w = 0 and full settings, decoded, and the evaluations spent: from ``grids`` where
    they hold every condition's w = 0 samples, or drawn for those conditions alone."""
    if grids.has(0.0) or len(indices) == len(s.conds):
        images, spent = grids.decoded(0.0)
        return images[:, indices], spent
    grid = resample(s, indices, 0.0)
    return decoded(s, grid), grid.nfe


def rho_against_data(s: Scan, decided: Decided, variance: float, count: int, lpips: LpipsMeter,
                     grids: FullGrids) -> tuple[Optional[DataDiversity], int]:
    """rho of the scan's conditions (class or prompt conditions only), re-drawn at full settings in fast mode near
    the threshold, and the evaluations spent."""
    if s.conds.kind not in CLASS_LIKE:
        return None, 0
    found = data_relative([c.pixel_rms for c in decided.conditions], [c.seed_share for c in decided.conditions],
                          variance, count)
    if found is None or not redraw(s, decided, found):
        return found, 0
    full, spent = grids.decoded(s.config.guidance_scale)
    stats = measure_resampled(s, full, list(range(len(s.conds))), lpips)
    again = data_relative(stats.pixel_rms[0].tolist(), stats.seed_share[0].tolist(), variance, count)
    if again is not None:
        again.escalated = True
    return again, spent


def redraw(s: Scan, decided: Decided, found: DataDiversity) -> bool:
    """Fast mode: is the fast rho near or below the threshold, for a model not collapsed, where escalation runs?"""
    return (escalation_runs(s) and decided.collapse.verdict != "collapsed"
            and found.mean < s.config.thresholds.data_relative_diversity * DATA_ESCALATION_BAND)
