"""Fast mode's escalation: conditions whose fast numbers lie near a threshold are re-sampled at a full scan's settings.

Fast mode samples FAST_SEEDS seeds with FAST_STEPS steps; its per-condition estimates differ from a full scan's
(seed share ratios 0.37-1.69 on the zoo), so a condition near a threshold can change verdict. After the verdicts,
every condition whose deciding numbers lie near a threshold (:func:`borderline`: ESCALATION_BAND below
collapsed_seed_share, ESCALATION_BAND_ABOVE above at_risk_seed_share) is sampled
again at the verdict scale with FULL_SEEDS seeds (the scan's seeds 0..15 from ``--seed``) and FULL_STEPS steps, the
same sampler: exactly the samples a full scan draws for that condition at that scale. Its numbers and verdict are
measured from them, and the overall verdict recomputed from the conditions' verdicts.

The seed share's denominator is the variance of the whole grid (all conditions) at full settings, which fast mode
has only when every condition was escalated ("exact"). Otherwise ("mixed") it is the variance of the grid whose
escalated conditions are their full-setting sets (16 seeds, 25 steps) and the others their fast sets, as
:func:`mixed_grid_variance` estimates it for sets of different sizes: the best estimate of each condition's spread
the scan holds, assuming only that the conditions far from the thresholds spread alike at 7 and 25 steps (their
fast/full seed share ratios on the zoo: about 0.75-1.2); exact when every condition is escalated (docs/measures.md).

With ``--reference``, a condition whose fast diversity relative to the base lies within RELATIVE_ESCALATION_BAND of
a relative threshold is re-sampled in both scans (``ScanConfig.escalate_also``, chosen from a first pass of both
scans without escalation, ``ScanConfig.escalation`` False: :func:`collapsecheck.witnesses.with_reference`), so that
its ratio compares full-setting samples with full-setting samples. When the fast w = 0 diversity relative to the
base's lies within the same band of collapsed_relative_diversity, every condition's w = 0 samples are drawn again at
full settings in both scans (``ScanConfig.escalate_w0``), and the w = 0 comparison reads those.

The null-branch test is escalated too: when its fast interval straddles the boundary (``unclear`` with a contrast to
measure against) or comes within NULL_TEST_BAND of it (:func:`.null.undecided_null`), it is run again as a full scan
runs it, on every condition's w = 1 samples of FULL_SEEDS seeds and FULL_STEPS steps with the full classifier
settings, and the null-branch and guidance findings are judged again.
At fast settings (half the samples, 7 steps' smoother samples) the interval was up to 3.7x wider than the full
scan's on the latent zoo's healthy ``cifar`` models, which read ``unclear`` where the full scan read ``learned``.
So is the null spread (:mod:`.spread`): when its fast value lies within NULL_SPREAD_BAND of the seed-share
thresholds that read it, every condition's w = 0 and w = 1 samples are drawn at full settings and the null branch
reads their spread.
"""
from __future__ import annotations

import torch

from ..stages import Decided, LpipsMeter, Scan
from .conditions import escalate_conditions, mixed_grid_variance, shared_denominator
from .escalation import Escalation
from .grids import FullGrids, escalation_runs
from .null import NullEscalation, escalate_null
from .spread import SpreadEscalation, escalate_spread
from .steering import SteeringEscalation, borderline_steering, escalate_steering
from .w0 import W0Escalation, escalate_w0

__all__ = ["escalate", "Escalation", "FullGrids", "NullEscalation", "SpreadEscalation", "SteeringEscalation",
           "W0Escalation",
           "borderline_steering",
           "mixed_grid_variance", "shared_denominator"]


def escalate(s: Scan, decided: Decided, fast_images: torch.Tensor, lpips: LpipsMeter,
             grids: FullGrids) -> tuple[Decided, Escalation]:
    """Fast mode: the borderline conditions re-sampled at full settings, their numbers and verdicts measured again,
    and the overall verdict recomputed; then the null-branch test, the guidance verdict and the w = 0 comparison
    measured again where borderline, sharing every full-setting grid they draw (:class:`~.grids.FullGrids`).
    ``fast_images``: the clipped fast samples (C, S, ...) at the verdict scale. Nothing changes in full mode, when
    nothing is borderline, or when a flow-matching pipeline's own sigmas set the steps (a full scan's 25 steps are
    another schedule, which this scan's schedule does not hold). ``grids``: the caller's, which keeps the grids drawn
    here for a later step (``--data-images``, :func:`~.data.measure_against_data`)."""
    none = Escalation(conditions=len(s.conds), guidance_scale=s.config.guidance_scale)
    if not escalation_runs(s):
        return decided, none
    decided, esc = escalate_conditions(s, decided, fast_images, lpips, grids)
    decided, esc.null = escalate_null(s, decided, grids)
    decided, esc.spread = escalate_spread(s, decided, grids)
    decided, esc.steering = escalate_steering(s, decided, grids)
    esc.w0 = escalate_w0(s, lpips, grids)
    esc.nfe += sum(e.nfe for e in esc.others())
    return decided, esc
