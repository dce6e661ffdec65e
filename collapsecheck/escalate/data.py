"""The seeds against the training data (``--data-images``): :mod:`collapsecheck.measure.datadiv`'s numbers from
the conditions' pixel RMS and seed shares at the verdict scale, as the result reports them.

Fast mode's 7 steps give smoother samples than a full scan's 25 (fast/full mean rho 0.70-2.5 on the zoos), and rho,
unlike the seed share, is not a ratio of the model's own numbers. So when a fast scan's mean rho is below
``data_relative_diversity`` x DATA_ESCALATION_BAND and the model is not collapsed, every condition is drawn again at
the verdict scale at full settings (:class:`~.grids.FullGrids`: a full scan's samples) and rho is read from those:
the full scan's numbers. Not in full mode, without escalation, or when a flow-matching pipeline's sigmas set the steps.
"""
from __future__ import annotations

from typing import Optional

import torch

from ..load.images import iter_training_images
from ..measure.datadiv import DataDiversity, data_relative, streamed_variance
from ..stages import Decided, LpipsMeter, Scan
from .grids import FullGrids, escalation_runs, measure_resampled

#: fast mode re-draws the verdict scale at full settings when its mean rho is below data_relative_diversity x this
DATA_ESCALATION_BAND = 1.5
#: the condition kinds whose conditions can be a dataset's classes (not pixel-aligned images)
CLASS_LIKE = ("class", "cross_attn")


def measure_against_data(s: Scan, decided: Decided, images: torch.Tensor,
                         lpips: LpipsMeter) -> tuple[Optional[DataDiversity], int]:
    """rho of the scan's conditions against ``--data-images`` and the network evaluations spent (fast mode's
    re-draw); None without the option, for pixel-aligned conditions, or when not measurable. ``images``: the
    samples at the verdict scale (C, S, channels, H, W), whose shape the data images are read at."""
    if not s.config.data_images or s.conds.kind not in CLASS_LIKE:
        return None, 0
    variance, count = streamed_variance(iter_training_images(s.config.data_images, images.shape[2],
                                                             tuple(images.shape[-2:])))
    found = data_relative([c.pixel_rms for c in decided.conditions], [c.seed_share for c in decided.conditions],
                          variance, count)
    if found is None or not redraw(s, decided, found):
        return found, 0
    full, spent = FullGrids(s).decoded(s.config.guidance_scale)
    stats = measure_resampled(s, full, list(range(len(s.conds))), lpips)
    again = data_relative(stats.pixel_rms[0].tolist(), stats.seed_share[0].tolist(), variance, count)
    if again is not None:
        again.escalated = True
    return again, spent


def redraw(s: Scan, decided: Decided, found: DataDiversity) -> bool:
    """Fast mode: is the fast rho near or below the threshold, for a model not collapsed, where escalation runs?"""
    return (escalation_runs(s) and decided.collapse.verdict != "collapsed"
            and found.mean < s.config.thresholds.data_relative_diversity * DATA_ESCALATION_BAND)
