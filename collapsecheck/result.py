"""Scan results: dataclasses with a versioned JSON schema. Every renderer reads one ScanResult. Every result
type has ``to_dict()`` (plain JSON-ready values) and ``from_dict()`` (its inverse: ``ScanResult.from_dict(
r.to_dict()) == r``, the samples excepted). The JSON a scan writes is described by
``collapsecheck/schema/scan-result.schema.json`` (:data:`SCHEMA_PATH`); :func:`load_result` reads it back, checked.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

from .errors import UsageError, first_line
from .measures import MEASURES  # noqa: F401  (re-exported: part of the result's vocabulary)
from .record import Record

#: bump the minor version for added fields, the major version for changed or removed ones
#: (2.0: gate, posterior profile points and null-branch probes typed; decided_by added;
#: 2.1: several --fail-on axes, the gate's checks, failed axes and max_regression added;
#: 2.2: world_size; 2.3: batch_size_used, and condition_set.subset_of for the default subset of a large label set;
#: 2.4: the implicit classifier (sweep implicit_adherence, break_ratio; null_ratio), sample_range, standard errors,
#: guidance.kind, reference, copies, features and conditions[].vendi; 2.5: fast mode's escalation and
#: conditions[].resampled; 2.6: escalation.null, the null-branch test re-run at full settings; 2.7: reference.own_verdict and
#: reference.w0_ratio: with --reference the collapse and null verdicts are judged against the base as well;
#: escalation.steering: fast mode measures a borderline guidance verdict again at full settings; 2.8: escalation.w0,
#: fast mode with --reference draws both scans' w = 0 samples again at full settings near the relative threshold;
#: 2.9: escalation.steering's relative shifts, the guidance verdict's steer_still_shift rule;
#: 2.10: guidance.null_branch.null_spread, which the null-branch verdict reads; 2.11: guidance.null_branch.null_coverage
#: and its interval, largest share and samples, which it reads too; 2.12: data_reference, the seeds against
#: --data-images, which the collapse verdict reads; 2.13: guidance.null_branch.null_data_share, the null's w = 0
#: samples against --data-images, which the null-branch verdict reads; 2.14: conditions[].cell_share, cell_images and
#: cell_resampled, each condition against its own cell of --data-images, which its collapse verdict reads; 2.15:
#: cell_share's seeds' spread is taken over pairs of seeds, the median of their half mean squared distance; 2.16:
#: cell_share for pixel-aligned conditions too, whose collapse verdict it decides both ways)
SCHEMA_VERSION = "2.16"
#: the JSON Schema of a scan result, shipped in the package
SCHEMA_PATH = Path(__file__).parent / "schema" / "scan-result.schema.json"


@dataclass(frozen=True)
class Evidence(Record):
    """One threshold crossing behind a verdict: ``measure value op limit``, the limit being the
    Thresholds field ``threshold`` (as it was compared: ``-steer_adherence_drop`` for an adherence drop)."""

    measure: str  # e.g. "seed_share", "pixel_rms", "null_residual", "max_shift"
    value: float
    op: str  # "<" or ">="
    threshold: str  # the Thresholds field name, e.g. "collapsed_seed_share"
    limit: float


@dataclass
class ConditionResult(Record):
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
    #: the threshold crossings that made the verdict; empty when none was crossed (healthy)
    decided_by: list[Evidence] = field(default_factory=list)
    #: jackknife standard error of near_duplicates over the seeds; None with fewer than 3 seeds or in older results
    near_duplicates_stderr: Optional[float] = None
    #: the Vendi score over --features embeddings (MEASURES["vendi"]); None without --features
    vendi: Optional[float] = None
    #: fast mode: re-sampled at a full scan's seeds and steps, its fast numbers near a threshold (collapsecheck.escalate)
    resampled: bool = False
    #: --data-images: the seeds' spread over pairs over the robust spread of the condition's own cell of the data
    #: images (measure/cells.py), the cell's size, and whether fast mode read it from the verdict scale drawn again at
    #: full settings
    cell_share: Optional[float] = None
    cell_images: Optional[int] = None
    cell_resampled: bool = False


@dataclass
class SweepPoint(Record):
    """Diversity and movement at one guidance scale, averaged over conditions."""

    w: float
    pixel_rms: float
    near_duplicates: float
    seed_share: Optional[float]
    lpips: Optional[float]
    shift_from_w1: float  # mean RMS pixel distance to the w = 1 sample of the same condition and seed
    adherence: Optional[float] = None  # the --adherence metric, mean over conditions (higher = more adherent)
    verdict: Optional[str] = None  # the collapse verdict these samples would get
    #: the model's implicit classifier: share of samples whose own condition has the lowest denoising error
    #: (measure/implicit.py; chance is guidance.adherence_chance), with its binomial standard error
    implicit_adherence: Optional[float] = None
    implicit_adherence_stderr: Optional[float] = None
    #: mean own-condition denoising error of these samples / that of the w = 1 samples (higher = further off
    #: what the model considers data)
    break_ratio: Optional[float] = None


@dataclass
class RecoveryProbe(Record):
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
class ProfilePoint(Record):
    step: int
    timestep: int
    alpha_bar: float
    eps_ratio: float
    eps_cos: float


@dataclass
class NullProbe(Record):
    """The null-branch test at one sampling step."""

    step: int
    timestep: int
    alpha_bar: float
    centroid_gap: float
    hull_residual: float


@dataclass
class NullBranchResult(Record):
    verdict: str
    reasons: list[str]
    residual: Optional[float]  # evidence only: the largest hull residual over the probes
    probes: list[NullProbe] = field(default_factory=list)
    #: the threshold crossings that made the verdict; empty when none was crossed (learned, unclear)
    decided_by: list[Evidence] = field(default_factory=list)
    #: the number the verdict used: r = (err_null - err_own) / (err_wrong - err_own) on the w = 1 samples
    #: (< 1: the null explains them better than a wrong condition), with its 95% bootstrap interval
    null_ratio: Optional[float] = None
    null_ratio_low: Optional[float] = None
    null_ratio_high: Optional[float] = None
    null_samples: Optional[int] = None  # how many w = 1 samples the ratio rests on
    null_contrast: Optional[float] = None  # mean (err_wrong - err_own) / mean err_own
    #: the w = 0 samples' seed variance over the w = 1 grid's variance (measure.pixel.spread_share); 2.10
    null_spread: Optional[float] = None
    #: the null's own w = 0 samples over the conditions (measure.coverage): the normalized entropy of the implicit
    #: classifier's assignments (1: even; 0: one condition), its 95% bootstrap interval, the largest share, and
    #: how many samples; 2.11
    null_coverage: Optional[float] = None
    null_coverage_low: Optional[float] = None
    null_coverage_high: Optional[float] = None
    null_coverage_largest: Optional[float] = None
    null_coverage_samples: Optional[int] = None
    #: with --data-images: the w = 0 samples' seed variance (pixel_rms^2 / 2) over the data images' variance
    #: (measure.datadiv.null_data_share; 1: as varied as the data); 2.13
    null_data_share: Optional[float] = None


@dataclass
class GuidanceResult(Record):
    verdict: str
    reasons: list[str]
    null_branch: NullBranchResult
    sweep: list[SweepPoint]
    max_shift: Optional[float]
    recovery: list[RecoveryProbe] = field(default_factory=list)
    adherence_metric: Optional[str] = None  # the --adherence function, when one was given
    #: the threshold crossings that made the verdict; empty when none was crossed (steerable;
    #: guidance-distilled)
    decided_by: list[Evidence] = field(default_factory=list)
    #: the implicit classifier's chance level (1 / candidates per sample) and its noise levels (timesteps)
    adherence_chance: Optional[float] = None
    implicit_levels: list[int] = field(default_factory=list)
    #: what the sweep's w is: ``cfg`` (classifier-free guidance between the condition and the null) or
    #: ``embedded`` (the network's own guidance input, Flux dev-like: no null branch); cfg in older results
    kind: str = "cfg"


@dataclass
class LpipsStatus(Record):
    available: bool
    net: Optional[str] = None
    source: Optional[str] = None
    reason: Optional[str] = None
    note: Optional[str] = None


@dataclass
class PosteriorPoint(Record):
    """Posterior variance at one timestep (Tweedie), means over conditions."""

    timestep: int
    alpha_bar: float
    posterior_var: float  # the raw mean over (condition, seed) cells clamped at 0: a variance is never negative
    x0hat_var: float
    variance_share: float
    #: the raw mean (may be < 0: measure.posterior's docstring) and its standard error over the cells; None in
    #: results written before them (stderr also None with one cell)
    posterior_var_raw: Optional[float] = None
    posterior_var_stderr: Optional[float] = None
    #: why the raw mean was clamped, when it was
    posterior_note: Optional[str] = None


@dataclass
class SampleRange(Record):
    """Whether the final samples (decoded images) at the verdict scale stay in the data range [-1, 1]."""

    sampler: str  # --sampler: ddim, ddim-eta1 or ddpm
    outside_share: float  # share of values with |x| > 1 + thresholds.out_of_range_margin
    variance: float  # variance of all values (images in [-1, 1]: at most 1)
    max_abs: float
    #: False when the samples leave the range: the verdicts rest on samples that are not the model's own
    reliable: bool
    reason: Optional[str] = None


@dataclass
class GateCheck(Record):
    """One axis the gate checked: the verdict it read and whether it failed."""

    #: collapsed, at_risk, weak, not_steerable, null_not_learned, or regression (with a baseline)
    axis: str
    failed: bool
    #: the verdict the axis read (the collapse, guidance or null-branch verdict; "passed" or "regressed"
    #: for the baseline comparison); None when the result has none
    verdict: Optional[str] = None


@dataclass
class Gate(Record):
    """The ``--fail-on`` gate (:mod:`collapsecheck.verdict.gate`). ``verdict_passed``, ``baseline_passed``
    and ``max_regression`` are set only with a baseline comparison, and left out of ``to_dict`` without one."""

    fail_on: str  # the axes, comma-separated: collapsed, at_risk, weak, not_steerable, null_not_learned, relative_*; or never
    passed: bool
    verdict_passed: Optional[bool] = None
    baseline_passed: Optional[bool] = None
    #: every axis checked, in the order of ``fail_on`` (the baseline comparison last, as ``regression``)
    checks: list[GateCheck] = field(default_factory=list)
    #: the axes that failed, in the same order; empty when the gate passed
    failed: list[str] = field(default_factory=list)
    #: with a baseline: the largest allowed fall in seed diversity, in percent
    max_regression: Optional[float] = None

    def to_dict(self) -> dict:
        return {k: v for k, v in super().to_dict().items() if v is not None}


@dataclass(frozen=True)
class StageTime(Record):
    """One stage of a scan under ``--profile``: its own wall seconds (the stages it contains are counted
    apart, so the stages add up to at most the scan's seconds) and the network evaluations it ran."""

    name: str
    seconds: float
    nfe: int = 0


@dataclass
class TimeProfile(Record):
    """Where a scan's time went (``--profile``): its stages in the order they first ran, and the scan's
    seconds, load to result; ``other`` is the time in no stage. ``synchronized``: the device (CUDA) was
    synchronised before every clock reading, so queued GPU work is counted in the stage that queued it."""

    stages: list[StageTime]
    total_seconds: float
    other_seconds: float
    synchronized: bool = False


@dataclass
class ScanResult(Record):
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
    #: posterior variance by timestep (Tweedie), full mode; empty when not measured
    posterior_profile: list[PosteriorPoint] = field(default_factory=list)
    gate: Optional[Gate] = None  # set by the caller that applies ``--fail-on``; None when no gate was applied
    schema_version: str = SCHEMA_VERSION
    measures: dict = field(default_factory=lambda: MEASURES)
    #: the threshold crossings that made the overall verdict; empty when none was crossed (healthy, or
    #: at_risk only because some condition collapsed: see ``conditions[].decided_by``)
    decided_by: list[Evidence] = field(default_factory=list)
    #: the comparison with a baseline scan (``scan --baseline``), ``Comparison.to_dict()``; None without one
    baseline: Optional[dict] = None
    world_size: int = 1  # how many processes shared the scan's work (torchrun, accelerate launch)
    #: the batch size the scan ran at: --batch-size, or the half of it (down to 1) that fit after an
    #: out-of-memory error (2.3); None in results written before 2.3
    batch_size_used: Optional[int] = None
    #: the data-range check of the samples the verdicts rest on; None in results written before it
    sample_range: Optional[SampleRange] = None
    #: --reference BASE: ``verdict.relative.ReferenceResult.to_dict()`` (diversity relative to the base model)
    reference: Optional[dict] = None
    #: --train-images DIR: ``measure.copies.CopiesResult.to_dict()`` (samples that reproduce training images)
    copies: Optional[dict] = None
    #: --data-images DIR: ``measure.datadiv.DataDiversity.to_dict()`` (the seeds against the data's within-class
    #: variance); None without it, for pixel-aligned conditions, or when not measurable
    data_reference: Optional[dict] = None
    #: --features PATH: the feature extractor behind ``conditions[].vendi``
    features: Optional[dict] = None
    #: fast mode: the borderline conditions re-sampled at full settings (``escalate.Escalation``); None when none was
    escalation: Optional[dict] = None
    #: --reference: the base model's samples at the verdict scale (C, S, channels, H, W); never written to JSON
    reference_samples: Any = field(default=None, repr=False, compare=False, metadata={"json": False})
    #: where the scan's time went, per stage (``--profile``, ``profile=True``); None when not asked for
    profile: Optional[TimeProfile] = None
    #: the final samples, (W, C, S, channels, H, W) on the CPU, clipped to [-1, 1], in the order of
    #: ``guidance.sweep``, ``conditions`` and ``seeds``; for image renderers, never written to JSON
    samples: Any = field(default=None, repr=False, compare=False, metadata={"json": False})


def schema() -> dict:
    """The JSON Schema of a scan result (:data:`SCHEMA_PATH`)."""
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def schema_errors(data: Any) -> list[str]:
    """Where ``data`` breaks the schema, one line each ("guidance.verdict: ..."); empty when valid."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema())
    return [f"{'.'.join(map(str, e.absolute_path)) or '(top)'}: {_short(e.message)}"
            for e in sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))]


def _short(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def read_json(path: Union[str, Path]) -> Any:
    """The JSON in ``path``. Raises :class:`UsageError` (one line) when it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path} does not exist or is not a file")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"{path} cannot be read as JSON: {first_line(exc)}") from None


def load_result(path: Union[str, Path]) -> ScanResult:
    """A scan JSON (``scan --json``) as a :class:`ScanResult` without samples, checked against the
    schema. Raises :class:`UsageError` (one line) on a file that is not a scan result of this schema."""
    data = read_json(path)
    if not isinstance(data, dict) or "schema_version" not in data:
        raise UsageError(f"{path} is not a collapsecheck scan JSON (no schema_version; write one with scan --json)")
    version = str(data["schema_version"])
    if version.split(".")[0] != SCHEMA_VERSION.split(".")[0]:
        raise UsageError(f"{path} has schema_version {version}; this collapsecheck reads "
                         f"{SCHEMA_VERSION.split('.')[0]}.x: rescan with this version")
    errors = schema_errors(data)
    if errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise UsageError(f"{path} is not a valid scan result: {errors[0]}{more}")
    return ScanResult.from_dict(data)


