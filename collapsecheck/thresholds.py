"""The named decision thresholds of every verdict, and how overrides are applied.

Each threshold is a field of :class:`Thresholds`, overridable from the command line
(``--threshold NAME=VALUE``) or a file (``--thresholds FILE``). Calibrated values: docs/calibration.md.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Mapping


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
    #: a condition is collapsed when its seeds explain less than this share of the grid's variance
    collapsed_seed_share: float = 0.1
    #: ... and at risk below this
    at_risk_seed_share: float = 0.2
    #: a condition is collapsed when its mean pairwise LPIPS is below this (when LPIPS is available)
    collapsed_lpips: float = 0.02
    #: ... and at risk below this
    at_risk_lpips: float = 0.05
    #: the overall verdict is collapsed when at least this fraction of conditions is collapsed
    overall_collapsed_fraction: float = 0.5
    #: the overall verdict is at risk when at least this fraction of conditions is not healthy
    overall_at_risk_fraction: float = 0.25
    #: null branch learned when eps_null stays within this distance of the conditions' convex hull
    #: (largest over the probe timesteps, in units of the conditions' spread around their centroid)
    null_learned_residual: float = 0.7
    #: null branch not learned when that distance is at least this
    null_not_learned_residual: float = 0.9
    #: guidance moves nothing when the largest mean pixel RMS shift from the w = 1 samples is below this
    steer_min_shift: float = 0.02
    #: guidance is weak when that shift is below this
    steer_weak_shift: float = 0.05
    #: with an adherence metric, guidance is weak when raising w above 1 lowers adherence by more than this
    steer_adherence_drop: float = 0.05
    #: guidance is weak when the conditional branch pulls this hard: the mean eps ratio
    #: ||eps_c - eps_null|| / ||eps_null|| along the trajectories is at least this, so CFG only amplifies
    #: a one-directional difference
    weak_eps_ratio: float = 0.25
    #: with --reference: a condition fell toward a single image when its seed diversity is below this fraction
    #: of the base model's at the same condition and seeds (the smaller of the pixel RMS and LPIPS ratios;
    #: provisional, not yet calibrated)
    collapsed_relative_diversity: float = 0.3
    #: ... and is at risk relative to the base below this fraction
    at_risk_relative_diversity: float = 0.6
    #: with --train-images: a sample reproduces a training image when it is closer to it than this fraction
    #: of the training set's median nearest-neighbour distance (provisional, not yet calibrated)
    copy_distance_fraction: float = 0.5

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
