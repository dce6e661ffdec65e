"""The named decision thresholds of every verdict, and how overrides are applied.

Each threshold is a field of :class:`Thresholds`, overridable from the command line
(``--threshold NAME=VALUE``) or a file (``--thresholds FILE``). Calibrated values: docs/calibration.md.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Mapping, Optional


@dataclass(frozen=True)
class Thresholds:
    """Named decision thresholds. Pixel distances are RMS distances between samples in [-1, 1]."""

    #: a condition is collapsed when its mean pairwise pixel RMS distance across seeds is below this
    collapsed_rms: float = 0.05
    #: ... and at risk below this
    at_risk_rms: float = 0.15
    #: two seeds' samples are near duplicates when their pixel RMS distance is below this
    near_duplicate_rms: float = 0.05
    #: a condition is collapsed when at least this fraction of its seed pairs are near duplicates
    collapsed_near_duplicates: float = 0.5
    #: ... and at risk from this fraction
    at_risk_near_duplicates: float = 0.2
    #: a condition is collapsed when its seeds explain less than this share of the grid's variance (fitted on the
    #: calibration split, round 8, and taken by its leave-one-dataset-out check: examples/calibrate.py,
    #: docs/calibration.md)
    collapsed_seed_share: float = 0.184
    #: ... and at risk below this
    at_risk_seed_share: float = 0.2
    #: a condition is collapsed when its mean pairwise LPIPS is below this (when LPIPS is available)
    collapsed_lpips: float = 0.02
    #: ... and at risk below this
    at_risk_lpips: float = 0.05
    #: the overall verdict is collapsed when at least this fraction of conditions is collapsed (fitted alone on
    #: the calibration split, round 23, 172 models, and taken by its leave-one-dataset-out check; nine of ten,
    #: seven of eight, six of seven: examples/calibrate.py, docs/calibration.md)
    overall_collapsed_fraction: float = 0.806
    #: the overall verdict is at risk when at least this fraction of conditions is not healthy
    overall_at_risk_fraction: float = 0.25
    #: the null-branch test's boundary on the null ratio r = (err_null - err_own) / (err_wrong - err_own)
    #: (measure/implicit.py): learned when r's 95% interval lies below it, not learned when above. Scale free
    #: and fixed at 1 by the test's definition (the null explains the samples as badly as a wrong condition);
    #: not a fitted threshold
    null_ratio_boundary: float = 1.0
    #: a null read learned is unclear when its own w = 0 samples cover the conditions this unevenly: their
    #: normalized entropy over the conditions, as the implicit classifier assigns them, is below this
    #: (measure/coverage.py; fitted on the calibration split, round 27, and taken by its leave-one-dataset-out check)
    null_coverage_entropy: float = 0.77
    #: with --data-images: a model read healthy reads at_risk when its seeds keep less than this share of the
    #: training data's within-class variance, mean over the conditions (measure/datadiv.py; fitted on the
    #: calibration split after round 27 by examples/data_reference.py, and taken by its leave-one-dataset-out check)
    data_relative_diversity: float = 0.375
    #: with --data-images: a condition its seed share reads collapsed reads at_risk when its seeds keep at least this
    #: share of the robust spread of its own cell of the training data (measure/cells.py, verdict/data.py); the zoos'
    #: brute force's collapsed bound on the seeds' variance over their class's; a definition, not fitted
    cell_collapsed_share: float = 0.15
    #: with --data-images: a pixel-aligned condition (a concatenated image, a ControlNet hint) reads collapsed when its
    #: seeds keep less than this share of its own cell's robust spread, and one its seed share reads collapsed reads
    #: at_risk at or above it (verdict/data.py hint_against_cell); fitted on the calibration split's 64 hint models
    #: in round 36 and taken by their leave-one-dataset-out check (680 against 672 at cell_collapsed_share's 0.15)
    hint_cell_collapsed_share: float = 0.126
    #: with --data-images: a null read learned reads unclear when its own w = 0 samples keep less than this share of
    #: the training data's variance (classes together) (measure/datadiv.py null_data_share, verdict/data.py; fitted on
    #: the calibration split in round 29 by examples/null_data.py, and taken by its leave-one-dataset-out check)
    null_data_unclear: float = 0.2
    #: ... and any null reads not_learned below this; at or above it a not_learned from the other tests reads unclear
    null_data_not_learned: float = 0.0612
    #: guidance holds adherence at its ceiling when the adherence is at least this at w = 1 and at the judged
    #: scale (w = 3; verdict/steering.py); a definition, not fitted
    adherence_ceiling: float = 0.95
    #: guidance is steerable when raising w from 1 to the judged scale raises adherence by at least this (the
    #: calibration split kept it)
    steer_adherence_gain: float = 0.05
    #: ... weak when it raises it by at least this but less than steer_adherence_gain; not steerable below
    #: (it does not raise adherence) (the calibration split kept it)
    steer_weak_gain: float = 0.01
    #: guidance leaves the samples where they were (weak) when the judged scale moves them from w = 1 by less than
    #: this fraction of the distance the w = 0 samples lie from them (relative shift; calibration round 16)
    steer_still_shift: float = 0.08
    #: guidance breaks the samples (not steerable) when the judged scale's samples have at least this times the
    #: own-condition denoising error of the w = 1 samples (break ratio; fitted on the calibration split)
    guidance_break_ratio: float = 6.17
    #: without an adherence measure (fewer than two conditions): guidance moves nothing when the largest mean
    #: pixel RMS shift from the w = 1 samples is below this
    steer_min_shift: float = 0.02
    #: ... and is weak when that shift is below this
    steer_weak_shift: float = 0.05
    #: reference values only, no longer deciding (kept so that threshold files and the zoo's margin tables that
    #: name them still read): the old null-branch hull-residual bounds, the old adherence drop, and the mean eps
    #: ratio ||eps_c - eps_null|| / ||eps_null|| drawn as a reference line in eps_profile.png
    null_learned_residual: float = 0.7
    null_not_learned_residual: float = 0.9
    steer_adherence_drop: float = 0.05
    weak_eps_ratio: float = 0.25
    #: with --reference: a condition fell toward a single image when its seed diversity is below this fraction
    #: of the base model's at the same condition and seeds (the smaller of the pixel RMS and LPIPS ratios); the
    #: null branch was overwritten when its w = 0 diversity is (calibration round 11: fitted on the latent zoo's
    #: fine-tunes against their bases, 0.3 before)
    collapsed_relative_diversity: float = 0.463
    #: ... and is at risk relative to the base below this fraction (round 11 kept it)
    at_risk_relative_diversity: float = 0.6
    #: with --train-images: a sample reproduces a training image when it is closer to it than this fraction
    #: of the training set's median nearest-neighbour distance (provisional, not yet calibrated)
    copy_distance_fraction: float = 0.5

    #: a sample value is out of the data range when |x| > 1 + this (small overshoots are common and harmless)
    out_of_range_margin: float = 0.25
    #: the samples (decoded images) leave the data range, and the verdicts on them are unreliable, when at
    #: least this share of their values is out of range ...
    out_of_range_share: float = 0.05
    #: ... or the variance of their values is at least this (images in [-1, 1] have at most 1)
    out_of_range_variance: float = 1.0

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    def as_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def thresholds_with(base: Thresholds, overrides: Mapping[str, float]) -> Thresholds:
    """A copy of ``base`` with ``overrides`` applied; names are checked by the caller (config)."""
    values = base.as_dict()
    values.update(overrides)
    return Thresholds(**values)


def near(value: Optional[float], limit: float, band: float) -> bool:
    """``value`` within a factor ``band`` of ``limit``: in [limit / band, limit x band] (fast mode's escalation)."""
    return value is not None and limit / band <= value <= limit * band
