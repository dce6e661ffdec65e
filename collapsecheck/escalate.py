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
measure against), it is run again as a full scan runs it, on every condition's w = 1 samples of FULL_SEEDS seeds
and FULL_STEPS steps with the full classifier settings, and the null-branch and guidance findings are judged again.
At fast settings (half the samples, 7 steps' smoother samples) the interval was up to 3.7x wider than the full
scan's on the latent zoo's healthy ``cifar`` models, which read ``unclear`` where the full scan read ``learned``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Optional

import torch

from .config import (ESCALATION_BAND, ESCALATION_BAND_ABOVE, FULL_SEEDS, FULL_STEPS, STEERING_BREAK_BAND,
                     STEERING_ESCALATION_Z, STEERING_SHIFT_BAND)
from .load.conditions import ConditionSet
from .measure.diversity import GridStats, mean_shift, measure_grid
from .measure.implicit import FULL, NullRatio, implicit_nfe, implicit_stats
from .measure.pixel import grid_variance
from .model.guard import memory_guard
from .profile import stage
from .result import ConditionResult, ScanResult
from .sample.grid import GridSamples, sample_grid
from .stages import Decided, LpipsMeter, Scan, guidance_kind, judge_guidance, on_measuring_device
from .thresholds import Thresholds, near
from .verdict.grid import borderline, cell_finding
from .verdict import rules as V
from .verdict.rules import overall_collapse
from .verdict.steering import null_test, shift_ratio


@dataclass
class NullEscalation:
    """Fast mode's null-branch test re-run at full settings: what the fast test read and what the re-run cost."""

    fast: NullRatio
    samples: int
    nfe: int

    def note(self) -> str:
        f = self.fast
        return (f"the null-branch test was undecided at fast settings (r = {f.ratio:.3g}, 95% interval [{f.low:.3g}, "
                f"{f.high:.3g}] over {f.samples} samples); it was run again on {self.samples} w = 1 samples of "
                f"{FULL_SEEDS} seeds x {FULL_STEPS} steps with the full scan's classifier settings")

    def summary(self) -> dict:
        return {"fast_ratio": self.fast.ratio, "fast_low": self.fast.low, "fast_high": self.fast.high,
                "fast_samples": self.fast.samples, "samples": self.samples, "seeds": FULL_SEEDS, "steps": FULL_STEPS,
                "nfe": self.nfe, "note": self.note()}


@dataclass
class Escalation:
    """What escalation did: the conditions re-sampled, the null-branch test re-run, and what it cost."""

    indices: list[int] = field(default_factory=list)
    conditions: int = 0
    nfe: int = 0
    guidance_scale: float = 1.0
    denominator: str = "exact"
    rescale: Optional[float] = None
    null: Optional[NullEscalation] = None
    steering: Optional["SteeringEscalation"] = None
    w0: Optional["W0Escalation"] = None

    def note(self) -> str:
        return (f"{len(self.indices)} of {self.conditions} conditions were re-sampled at full settings ({FULL_SEEDS} "
                f"seeds x {FULL_STEPS} steps) because their fast estimate was near a threshold (with --reference: "
                "their own, or their diversity relative to the base model's, in both scans)")

    def notes(self) -> list[str]:
        extra = (self.null, self.steering, self.w0)
        return ([self.note()] if self.indices else []) + [e.note() for e in extra if e is not None]

    def report(self, result: ScanResult) -> ScanResult:
        """``result`` with the escalation's summary and notes (unchanged when nothing was escalated)."""
        if not self.indices and self.null is None and self.steering is None and self.w0 is None:
            return result
        result.escalation = {"resampled": len(self.indices), "conditions": self.conditions, "seeds": FULL_SEEDS,
                             "steps": FULL_STEPS, "guidance_scale": self.guidance_scale, "band": ESCALATION_BAND,
                             "band_above": ESCALATION_BAND_ABOVE, "nfe": self.nfe, "denominator": self.denominator,
                             "rescale": self.rescale, "indices": list(self.indices), "note": " ".join(self.notes()),
                             "null": None if self.null is None else self.null.summary(),
                             "steering": None if self.steering is None else self.steering.summary(),
                             "w0": None if self.w0 is None else self.w0.summary()}
        result.checkpoint["notes"] = list(result.checkpoint.get("notes", [])) + self.notes()
        return result


def escalate(s: Scan, decided: Decided, fast_images: torch.Tensor, lpips: LpipsMeter) -> tuple[Decided, Escalation]:
    """Fast mode: the borderline conditions re-sampled at full settings, their numbers and verdicts measured again,
    and the overall verdict recomputed; then the null-branch test, the guidance verdict and the w = 0 comparison
    measured again where borderline. ``fast_images``: the clipped fast samples (C, S, ...) at the verdict scale.
    Nothing changes in full mode, when nothing is borderline, or when a flow-matching pipeline's own sigmas
    set the steps (a full scan's 25 steps are another schedule, which this scan's schedule does not hold)."""
    none = Escalation(conditions=len(s.conds), guidance_scale=s.config.guidance_scale)
    if s.config.mode != "fast" or not s.config.escalation or (
            s.schedule.table is not None and s.schedule.table.sampling is not None):
        return decided, none
    decided, esc, grid = escalate_conditions(s, decided, fast_images, lpips)
    every_w1 = FullW1(s, grid if len(esc.indices) == len(s.conds) and esc.guidance_scale == 1.0 else None)
    decided, esc.null = escalate_null(s, decided, every_w1)
    decided, esc.steering = escalate_steering(s, decided, every_w1)
    esc.w0 = escalate_w0(s, lpips)
    esc.nfe += sum(e.nfe for e in (esc.null, esc.steering, esc.w0) if e is not None)
    return decided, esc


class FullW1:
    """Every condition's w = 1 samples at full settings, drawn once when first asked for (or the conditions'
    escalation's, when it drew them all): the null-branch test and the guidance verdict share them, and the cost of
    drawing them is charged to the first to ask (:meth:`get`)."""

    def __init__(self, s: Scan, grid: Optional[GridSamples] = None):
        self.s, self.grid = s, grid

    def get(self) -> tuple[GridSamples, int]:
        """The samples, and the network evaluations this call spent drawing them."""
        if self.grid is not None:
            return self.grid, 0
        self.grid = resample(self.s, list(range(len(self.s.conds))), 1.0)
        return self.grid, self.grid.nfe


def escalate_conditions(s: Scan, decided: Decided, fast_images: torch.Tensor,
                        lpips: LpipsMeter) -> tuple[Decided, Escalation, Optional[GridSamples]]:
    """The borderline conditions (:func:`borderline`) re-sampled and re-measured; the overall verdict recomputed.
    Also returns their full-setting samples (None when none was borderline)."""
    th, w = s.config.thresholds, s.config.guidance_scale
    picked = [c.index for c in decided.conditions if borderline(c, th) or c.index in s.config.escalate_also]
    if not picked:
        return decided, Escalation(conditions=len(s.conds), guidance_scale=w), None
    with stage("escalation") as timed:
        grid = resample(s, picked, w)
        timed.nfe += grid.nfe
        stats, rescale = remeasure(s, grid, picked, fast_images, lpips)
    conditions = list(decided.conditions)
    for j, c in enumerate(picked):
        conditions[c] = remeasured_condition(conditions[c], stats, grid, j, th)
    collapse = overall_collapse([c.verdict for c in conditions], th)
    esc = Escalation(picked, len(s.conds), grid.nfe, w, "exact" if len(picked) == len(s.conds) else "mixed",
                     rescale)
    guidance = judge_guidance(s, decided.null, decided.steer, decided.max_shift, decided.eps_ratio, collapse)
    return dataclasses.replace(decided, conditions=conditions, collapse=collapse, guidance=guidance), esc, grid


def undecided_null(decided: Decided) -> bool:
    """The null-branch test ran with a contrast to measure against, and its interval straddled the boundary (or
    it had too few samples): more samples at full settings can decide it."""
    n = decided.implicit.null if decided.implicit is not None else None
    return decided.null.verdict == "unclear" and n is not None and n.ratio is not None


def escalate_null(s: Scan, decided: Decided, every_w1: FullW1) -> tuple[Decided, Optional[NullEscalation]]:
    """An undecided fast null-branch test run again as a full scan runs it: on every condition's w = 1 samples
    of FULL_SEEDS seeds and FULL_STEPS steps (``every_w1`` when the conditions' escalation already drew them, else
    sampled here), with the full classifier settings; the null-branch finding and the guidance verdict that reads
    it judged again. The fast adherence and break ratios are kept."""
    if not undecided_null(decided):
        return decided, None
    with stage("escalation") as timed:
        grid, sampled = every_w1.get()
        total = implicit_nfe(1, len(s.conds), FULL_SEEDS, FULL, True)
        again = s.fit("re-testing the null branch", lambda batch: implicit_stats(
            s.denoiser, s.schedule, s.conds, grid.samples, 0, FULL, batch, True, s.bar("null-branch test", total)))
        timed.nfe += sampled + again.nfe
    esc = NullEscalation(decided.implicit.null, again.null.samples, sampled + again.nfe)
    null = V.null_branch(null_test(again), s.config.thresholds, **guidance_kind(s))
    null = dataclasses.replace(null, reasons=null.reasons + (esc.note(),))
    guidance = judge_guidance(s, null, decided.steer, decided.max_shift, decided.eps_ratio, decided.collapse)
    implicit = dataclasses.replace(decided.implicit, null=again.null)
    return dataclasses.replace(decided, null=null, guidance=guidance, implicit=implicit), esc


@dataclass
class SteeringEscalation:
    """Fast mode's guidance verdict measured again at full settings: what the fast measurement read and the cost."""

    fast: V.Steering
    full: V.Steering  # what the full settings read, which the verdict reads
    nfe: int

    def note(self) -> str:
        f = self.fast
        shift = "" if f.relative_shift is None else f", relative shift {f.relative_shift:.3g}"
        zero = " (and at w = 0, for the relative shift)" if self.full.relative_shift != f.relative_shift else ""
        return (f"the guidance verdict was near a threshold at fast settings (implicit adherence {f.adherence_w1:.3g} at "
                f"w = 1, {f.adherence_max:.3g} at w = {f.w_max:g}, standard error of the change {f.stderr:.2g}{shift}); it "
                f"was measured again on every condition's samples of {FULL_SEEDS} seeds x {FULL_STEPS} steps at both "
                f"scales{zero} with the full scan's classifier settings")

    def summary(self) -> dict:
        f, g = self.fast, self.full
        return {"fast_adherence_w1": f.adherence_w1, "fast_adherence_max": f.adherence_max, "fast_stderr": f.stderr,
                "fast_break_ratio": f.break_ratio, "w_max": f.w_max, "seeds": FULL_SEEDS, "steps": FULL_STEPS,
                "nfe": self.nfe, "note": self.note(), "adherence_w1": g.adherence_w1, "adherence_max": g.adherence_max,
                "stderr": g.stderr, "break_ratio": g.break_ratio, "fast_relative_shift": f.relative_shift,
                "relative_shift": g.relative_shift}


def borderline_steering(st: Optional[V.Steering], th: Thresholds, z: float = STEERING_ESCALATION_Z,
                        band: float = STEERING_BREAK_BAND) -> bool:
    """Could the guidance verdict read otherwise at full settings? Its adherence change within ``z`` standard errors
    of steer_adherence_gain or steer_weak_gain, the lower adherence within them of adherence_ceiling, the break ratio
    within a factor ``band`` of guidance_break_ratio, or the relative shift within STEERING_SHIFT_BAND of its own."""
    if st is None or st.metric != "implicit adherence" or st.adherence_w1 is None or st.adherence_max is None:
        return False
    margin, gain = z * st.stderr, st.adherence_max - st.adherence_w1
    near_gain = any(abs(gain - limit) <= margin for limit in (th.steer_adherence_gain, th.steer_weak_gain))
    near_ceiling = abs(min(st.adherence_w1, st.adherence_max) - th.adherence_ceiling) <= margin
    near_still = near(st.relative_shift, th.steer_still_shift, STEERING_SHIFT_BAND)
    return near_gain or near_ceiling or near_still or near(st.break_ratio, th.guidance_break_ratio, band)


def escalate_steering(s: Scan, decided: Decided, every_w1: FullW1) -> tuple[Decided, Optional[SteeringEscalation]]:
    """A borderline fast guidance verdict (:func:`borderline_steering`) measured again as a full scan measures it:
    the implicit adherence and break ratio of every condition's samples at w = 1 and at the judged scale, FULL_SEEDS
    seeds and FULL_STEPS steps, the full classifier settings (the same noises: a full scan's numbers exactly), and the
    relative shift when it lay near steer_still_shift; the verdict judged again. The sweep's fast numbers are kept."""
    fast = decided.steer
    if not borderline_steering(fast, s.config.thresholds):
        return decided, None
    with stage("escalation") as timed:
        w1, sampled = every_w1.get()
        top = resample(s, list(range(len(s.conds))), fast.w_max)
        raw = torch.cat([w1.samples, top.samples])
        total = implicit_nfe(2, len(s.conds), FULL_SEEDS, FULL, False)
        again = s.fit("measuring guidance again", lambda batch: implicit_stats(
            s.denoiser, s.schedule, s.conds, raw, 0, FULL, batch, False, s.bar("guidance", total)))
        again_shift = near(fast.relative_shift, s.config.thresholds.steer_still_shift, STEERING_SHIFT_BAND)
        moved, drawn = full_relative_shift(s, w1, top) if again_shift else (fast.relative_shift, 0)
        timed.nfe += sampled + top.nfe + again.nfe + drawn
    a1, am = again.adherence
    steer = V.Steering(fast.w_max, a1.value, am.value, (a1.stderr ** 2 + am.stderr ** 2) ** 0.5, again.break_ratio[1],
                       relative_shift=moved)
    esc = SteeringEscalation(fast, steer, sampled + top.nfe + again.nfe + drawn)
    found = judge_guidance(s, decided.null, steer, decided.max_shift, decided.eps_ratio, decided.collapse)
    guidance = dataclasses.replace(found, reasons=found.reasons + (esc.note(),))
    return dataclasses.replace(decided, steer=steer, guidance=guidance), esc


@dataclass
class W0Escalation:
    """With --reference, fast mode: the w = 0 seed diversity measured again at full settings, in both scans."""

    pixel_rms: float
    lpips: Optional[float]
    nfe: int

    def note(self) -> str:
        return ("the w = 0 seed diversity relative to the base model's was near collapsed_relative_diversity at fast "
                f"settings; every condition's w = 0 samples were drawn again with {FULL_SEEDS} seeds x {FULL_STEPS} "
                "steps in both scans, and the comparison with the base reads those")

    def summary(self) -> dict:
        return {"pixel_rms": self.pixel_rms, "lpips": self.lpips, "seeds": FULL_SEEDS, "steps": FULL_STEPS,
                "nfe": self.nfe, "note": self.note()}


def escalate_w0(s: Scan, lpips: LpipsMeter) -> Optional[W0Escalation]:
    """The w = 0 point's seed diversity (mean pixel RMS and LPIPS over conditions) measured as a full scan measures
    it: FULL_SEEDS seeds, FULL_STEPS steps, the same noises; when the --reference comparison asked for it
    (``ScanConfig.escalate_w0``) and the sweep holds w = 0."""
    if not s.config.escalate_w0 or 0.0 not in s.scales:
        return None
    with stage("escalation") as timed:
        grid = resample(s, every := list(range(len(s.conds))), 0.0)
        timed.nfe += grid.nfe
        stats = measure_resampled(s, grid, every, lpips)
    return W0Escalation(float(stats.pixel_rms[0].mean()), stats.mean("lpips", 0), grid.nfe)


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


def remeasure(s: Scan, grid: GridSamples, indices: list[int], fast_images: torch.Tensor,
              lpips: LpipsMeter) -> tuple[GridStats, Optional[float]]:
    """The re-sampled conditions' measures (1, k), their seed shares over the full grid's variance (exact when every
    condition was re-sampled, else the mixed grid's: see the module docstring), and mixed / fast grid variance."""
    stats = measure_resampled(s, grid, indices, lpips)
    full = _flat(stats.samples[0])  # (k, S, D), clipped
    within = full.var(dim=-2, unbiased=True).mean(-1)
    denominator, rescale = shared_denominator(full, _flat(fast_images.to(full.device)), indices)
    share = (within / denominator).cpu() if len(s.conds) >= 2 else None
    return dataclasses.replace(stats, seed_share=None if share is None else share.unsqueeze(0)), rescale


def full_relative_shift(s: Scan, w1: GridSamples, top: GridSamples) -> tuple[Optional[float], int]:
    """The relative shift (verdict.steering.relative_shift) at full settings: every condition's w = 0 samples drawn
    as well, the three grids decoded and clipped as the sweep's are; and what the w = 0 samples cost."""
    zero = resample(s, list(range(len(s.conds))), 0.0)
    far, one, moved = (decoded(s, g).clamp(-1.0, 1.0) for g in (zero, w1, top))
    far, moved = (float(mean_shift(x, one[0])[0]) for x in (far, moved))
    return shift_ratio(moved, far), zero.nfe


def decoded(s: Scan, grid: GridSamples) -> torch.Tensor:
    """A re-sampled grid's samples decoded as the sweep decodes its samples, on the measuring device."""
    with stage("decoding"):
        return on_measuring_device(s.fit("decoding the re-sampled conditions",
                                         lambda b: s.denoiser.decode_grid(grid.samples, b)))


def measure_resampled(s: Scan, grid: GridSamples, indices: list[int], lpips: LpipsMeter) -> GridStats:
    """The measures (1, k) of the re-sampled conditions ``indices``, decoded as the sweep decodes its samples."""
    images = decoded(s, grid)
    with stage("measures"), memory_guard("measuring the re-sampled conditions", s.batch_size):
        return measure_grid(images, images[0].clamp(-1.0, 1.0), s.config.thresholds, pick(s.conds, indices),
                            lpips.for_scan(s))


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
