"""Scan results: dataclasses with a versioned JSON schema. Every renderer reads one ScanResult."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Optional

#: bump the minor version for added fields, the major version for changed or removed ones
SCHEMA_VERSION = "1.1"

#: what each per-condition number means: its direction and how it was computed
MEASURES = {
    "pixel_rms": {
        "direction": "higher = more diverse",
        "method": "mean over seed pairs of the RMS pixel distance between final samples, clipped to [-1, 1] as images",
    },
    "pixel_std": {
        "direction": "higher = more diverse",
        "method": "standard deviation across seeds (ddof = 1) at each pixel, averaged over pixels",
    },
    "near_duplicates": {
        "direction": "higher = less diverse",
        "method": "fraction of seed pairs whose RMS pixel distance is below thresholds.near_duplicate_rms",
    },
    "seed_share": {
        "direction": "higher = more diverse",
        "method": "per-pixel variance across this condition's seeds / per-pixel variance across all conditions "
                  "and seeds (1: the condition leaves the seed's spread alone; 0: the seed no longer matters); "
                  "null with fewer than two conditions",
    },
    "lpips": {
        "direction": "higher = more diverse",
        "method": "mean over seed pairs of LPIPS (net named in lpips.net); null when LPIPS is unavailable",
    },
    "eps_ratio": {
        "direction": "higher = the condition pulls harder",
        "method": "||eps_c - eps_null|| / ||eps_null|| along the sampling trajectories at the verdict scale, "
                  "mean over steps and seeds",
    },
    "eps_cos": {
        "direction": "informational",
        "method": "cosine between eps_c - eps_null and eps_null, mean over steps and seeds",
    },
}


@dataclass
class ConditionResult:
    index: int
    label: str
    verdict: str
    reasons: list[str]
    pixel_rms: float
    pixel_std: float
    near_duplicates: float
    seed_share: Optional[float]
    lpips: Optional[float]
    eps_ratio: float
    eps_cos: float


@dataclass
class SweepPoint:
    """Diversity and movement at one guidance scale, averaged over conditions."""

    w: float
    pixel_rms: float
    near_duplicates: float
    seed_share: Optional[float]
    lpips: Optional[float]
    shift_from_w1: float  # mean RMS pixel distance to the w = 1 sample of the same condition and seed
    adherence: Optional[float] = None  # the --adherence metric, mean over conditions (higher = more adherent)
    verdict: Optional[str] = None  # the collapse verdict these samples would get


@dataclass
class RecoveryProbe:
    """A way of sampling that might bring diversity back without retraining, and what it reached."""

    name: str
    description: str
    uses_null_branch: bool
    pixel_rms: float
    seed_share: Optional[float]
    lpips: Optional[float]
    adherence: Optional[float]
    shift_from_w1: float
    verdict: str
    works: str  # yes, partly, no, not_needed
    reason: str


@dataclass
class ProfilePoint:
    step: int
    timestep: int
    alpha_bar: float
    eps_ratio: float
    eps_cos: float


@dataclass
class NullBranchResult:
    verdict: str
    reasons: list[str]
    residual: Optional[float]  # the number the verdict used: the largest hull residual over the probes
    probes: list[dict] = field(default_factory=list)  # per probe: step, timestep, alpha_bar, centroid_gap, hull_residual


@dataclass
class GuidanceResult:
    verdict: str
    reasons: list[str]
    null_branch: NullBranchResult
    sweep: list[SweepPoint]
    max_shift: Optional[float]
    recovery: list[RecoveryProbe] = field(default_factory=list)
    adherence_metric: Optional[str] = None  # the --adherence function, when one was given


@dataclass
class LpipsStatus:
    available: bool
    net: Optional[str] = None
    source: Optional[str] = None
    reason: Optional[str] = None
    note: Optional[str] = None


@dataclass
class ScanResult:
    verdict: str
    reasons: list[str]
    recommendations: list[str]
    guidance: GuidanceResult
    conditions: list[ConditionResult]
    eps_profile: list[ProfilePoint]
    lpips: LpipsStatus
    checkpoint: dict
    condition_set: dict
    config: dict
    versions: dict
    seeds: list[int]
    verdict_guidance_scale: float
    nfe: int
    seconds: float
    device: str
    created: str
    #: posterior variance by timestep (Tweedie), full mode: per point timestep, alpha_bar,
    #: posterior_var, x0hat_var, variance_share (means over conditions); empty when not measured
    posterior_profile: list = field(default_factory=list)
    gate: dict = field(default_factory=dict)
    schema_version: str = SCHEMA_VERSION
    measures: dict = field(default_factory=lambda: MEASURES)
    #: the comparison with a baseline scan (``scan --baseline``), ``Comparison.to_dict()``; None without one
    baseline: Optional[dict] = None
    #: the final samples, (W, C, S, channels, H, W) on the CPU, clipped to [-1, 1], in the order of
    #: ``guidance.sweep``, ``conditions`` and ``seeds``; for image renderers, never written to JSON
    samples: Any = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict:
        """Everything but the samples, as plain JSON-ready values."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self) if f.name != "samples"}


def _plain(value):
    if hasattr(value, "__dataclass_fields__"):
        return asdict(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
