"""Verdicts: small pure functions from measured numbers to a finding and its reasons.

No torch here. Every threshold is a named field of :class:`Thresholds`, documented below and
overridable from the command line (``--threshold NAME=VALUE``) or a file (``--thresholds FILE``).
Every verdict lists the numbers that drove it, each as "measure value op threshold-name value", and
carries the threshold crossings that made it as :class:`Evidence` (``Finding.evidence``): the
crossings toward a worse verdict, empty when none was crossed (healthy, learned, steerable).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional, Sequence

from ..measure.coverage import NullCoverage
from ..measures import interval_text
from ..result import Evidence
from ..thresholds import Thresholds
from .null import NO_CONTRAST, NULL_MIN_SAMPLES, NullTest, read_spread, uneven_coverage, without_contrast

Collapse = Literal["healthy", "at_risk", "collapsed"]
Guidance = Literal["steerable", "weak", "not_steerable"]
NullBranch = Literal["learned", "not_learned", "unclear", "absent_by_design"]

COLLAPSE_ORDER = ("healthy", "at_risk", "collapsed")
GUIDANCE_ORDER = ("steerable", "weak", "not_steerable")


@dataclass(frozen=True)
class Finding:
    """A verdict and the reasons (with their numbers) behind it."""

    verdict: str
    reasons: tuple[str, ...]
    evidence: tuple[Evidence, ...] = ()


@dataclass(frozen=True)
class _Check:
    """A threshold test: its reason text when crossed, and the Evidence."""

    reason: str
    evidence: Evidence


def _below(name: str, value: float, threshold_name: str, threshold: float, measure: str) -> Optional[_Check]:
    if not value < threshold:
        return None
    return _Check(f"{name} {value:.4g} < {threshold_name} {threshold:g}",
                  Evidence(measure, float(value), "<", threshold_name, float(threshold)))


def _at_least(name: str, value: float, threshold_name: str, threshold: float, measure: str) -> Optional[_Check]:
    if not value >= threshold:
        return None
    return _Check(f"{name} {value:.4g} >= {threshold_name} {threshold:g}",
                  Evidence(measure, float(value), ">=", threshold_name, float(threshold)))


def _crossed(name: str, checks: Sequence[Optional[_Check]]) -> Optional[Finding]:
    hits = [c for c in checks if c]
    if not hits:
        return None
    return Finding(name, tuple(c.reason for c in hits), tuple(c.evidence for c in hits))


def condition_collapse(
    pixel_rms: float,
    near_duplicates: float,
    seed_share: Optional[float],
    lpips: Optional[float],
    th: Thresholds,
) -> Finding:
    """Collapse verdict for one condition from its seed-diversity numbers (None: not measured).

    Scale-free: the seed share (this condition's seed variance over the grid's, relative to the model's own
    spread) decides; the absolute measures (pixel RMS, near duplicates, LPIPS: their thresholds are in pixel
    or perceptual units) only corroborate: they turn an at-risk seed share into collapsed, never a healthy one
    into anything. Without a relative measure (one condition), or when the whole grid has collapsed to one image
    (nothing for the seed share to be relative to), the absolute ones decide, and the reasons say so.
    """
    absolute_collapsed, absolute_at_risk = _absolute_checks(pixel_rms, near_duplicates, lpips, th)
    no_relative = _no_relative(pixel_rms, seed_share, th)
    if no_relative:
        found = _crossed("collapsed", absolute_collapsed) or _crossed("at_risk", absolute_at_risk)
        if found:
            return Finding(found.verdict, found.reasons + (no_relative,), found.evidence)
        return Finding("healthy", (_healthy_text(pixel_rms, near_duplicates, seed_share, lpips, th), no_relative))
    collapsed = _below("seed share", seed_share, "collapsed_seed_share", th.collapsed_seed_share, "seed_share")
    at_risk = _below("seed share", seed_share, "at_risk_seed_share", th.at_risk_seed_share, "seed_share")
    if collapsed or (at_risk and any(absolute_collapsed)):
        return _crossed("collapsed", [collapsed or at_risk] + absolute_collapsed)
    if at_risk:
        return _crossed("at_risk", [at_risk] + absolute_at_risk)
    reasons = (_healthy_text(pixel_rms, near_duplicates, seed_share, lpips, th),)
    corroborating = [c.reason for c in absolute_at_risk if c]
    if corroborating:
        reasons += (f"{'; '.join(corroborating)}: absolute thresholds corroborate only, and the seed share "
                    "(relative to the model's own spread) is not at risk",)
    return Finding("healthy", reasons)


#: the reason added when no relative measure is available and the absolute thresholds decide
NO_RELATIVE = ("no seed share (one condition, or a grid without any variance), so the absolute pixel and LPIPS "
               "thresholds decide (provisional)")


def _no_relative(pixel_rms: float, seed_share: Optional[float], th: Thresholds) -> Optional[str]:
    """Why the seed share cannot decide, or None when it can: there is none, or the whole grid (every condition
    and seed) is as tight as a collapsed condition, its spread ~ pixel RMS / sqrt(seed share) below collapsed_rms
    (a total collapse: no spread left for a relative measure to be relative to)."""
    if seed_share is None:
        return NO_RELATIVE
    grid_rms = pixel_rms / seed_share ** 0.5 if seed_share > 0 else float("inf")
    if grid_rms < th.collapsed_rms:
        return (f"the whole grid is as tight as a collapsed condition (pixel RMS / sqrt(seed share) {grid_rms:.3g} < "
                f"collapsed_rms {th.collapsed_rms:g}): no spread for the seed share to be relative to, so the absolute "
                "thresholds decide")
    return None


def _absolute_checks(pixel_rms: float, near_duplicates: float, lpips: Optional[float],
                     th: Thresholds) -> tuple[list, list]:
    """The crossings of the absolute (pixel, LPIPS) thresholds: (toward collapsed, toward at risk)."""
    collapsed = [
        _below("pixel RMS", pixel_rms, "collapsed_rms", th.collapsed_rms, "pixel_rms"),
        _at_least("near-duplicate pairs", near_duplicates, "collapsed_near_duplicates", th.collapsed_near_duplicates,
                  "near_duplicates"),
    ]
    at_risk = [
        _below("pixel RMS", pixel_rms, "at_risk_rms", th.at_risk_rms, "pixel_rms"),
        _at_least("near-duplicate pairs", near_duplicates, "at_risk_near_duplicates", th.at_risk_near_duplicates,
                  "near_duplicates"),
    ]
    if lpips is not None:
        collapsed.append(_below("LPIPS", lpips, "collapsed_lpips", th.collapsed_lpips, "lpips"))
        at_risk.append(_below("LPIPS", lpips, "at_risk_lpips", th.at_risk_lpips, "lpips"))
    return collapsed, at_risk


def _healthy_text(pixel_rms: float, near_duplicates: float, seed_share: Optional[float], lpips: Optional[float],
                  th: Thresholds) -> str:
    parts = []
    if seed_share is not None:
        parts.append(f"seed share {seed_share:.4g} >= at_risk_seed_share {th.at_risk_seed_share:g}")
    parts += [
        f"pixel RMS {pixel_rms:.4g} {'>=' if pixel_rms >= th.at_risk_rms else '<'} at_risk_rms {th.at_risk_rms:g}",
        f"near-duplicate pairs {near_duplicates:.4g} {'<' if near_duplicates < th.at_risk_near_duplicates else '>='} "
        f"at_risk_near_duplicates {th.at_risk_near_duplicates:g}",
    ]
    if lpips is not None:
        parts.append(f"LPIPS {lpips:.4g} {'>=' if lpips >= th.at_risk_lpips else '<'} at_risk_lpips {th.at_risk_lpips:g}")
    return ", ".join(parts)


def _percent(fraction: float) -> str:
    """A fraction as a percentage to three significant digits: a fitted 0.879 reads 87.9 %, not a rounded 88 %."""
    return f"{100 * fraction:.3g}%"


def overall_collapse(per_condition: Sequence[str], th: Thresholds) -> Finding:
    """Overall collapse verdict from the per-condition verdicts."""
    n = len(per_condition)
    collapsed = sum(v == "collapsed" for v in per_condition) / n
    unhealthy = sum(v != "healthy" for v in per_condition) / n
    summary = f"{sum(v == 'collapsed' for v in per_condition)}/{n} conditions collapsed, " \
              f"{sum(v == 'at_risk' for v in per_condition)}/{n} at risk"
    if collapsed >= th.overall_collapsed_fraction:
        return Finding("collapsed", (f"{summary}: {_percent(collapsed)} >= overall_collapsed_fraction "
                                     f"{_percent(th.overall_collapsed_fraction)}",),
                       (Evidence("collapsed_fraction", collapsed, ">=", "overall_collapsed_fraction",
                                 float(th.overall_collapsed_fraction)),))
    if unhealthy >= th.overall_at_risk_fraction or collapsed > 0:
        # at_risk because some condition collapsed, below overall_at_risk_fraction: no overall threshold crossed
        evidence = (Evidence("unhealthy_fraction", unhealthy, ">=", "overall_at_risk_fraction",
                             float(th.overall_at_risk_fraction)),) if unhealthy >= th.overall_at_risk_fraction else ()
        return Finding("at_risk", (f"{summary}: {_percent(unhealthy)} not healthy (overall_at_risk_fraction "
                                   f"{_percent(th.overall_at_risk_fraction)})",),
                       evidence)
    return Finding("healthy", (f"{summary}",))


#: the null-branch finding of an embedded-guidance model, and the guidance finding's first reason
EMBEDDED_NULL = ("guidance-distilled with embedded guidance (guidance_embeds, Flux dev-like): there is no null branch to "
                 "check; classifier-free guidance was distilled into the guidance input")
EMBEDDED_SWEEP = ("the guidance sweep set the embedded guidance input (no classifier-free guidance): read by how far "
                  "it moves the samples")

def null_branch(test: Optional[NullTest], th: Thresholds, distilled: bool = False,
                base_model: bool = False, embedded: bool = False, spread: Optional[float] = None,
                coverage: Optional[NullCoverage] = None) -> Finding:
    """Was the unconditional branch learned? From the null ratio's interval around the fixed boundary
    ``null_ratio_boundary`` (1): a learned null (the marginal) explains the model's own samples better than a
    wrong condition does, an untrained one worse. None: not measurable. ``spread``, the null's w = 0 samples' share
    of the w = 1 grid's variance (:mod:`collapsecheck.verdict.null`): below ``collapsed_seed_share`` the null
    reads ``not_learned`` whatever the ratio says; where the ratio is unclear for want of contrast (none, or an
    unbounded interval), at or above ``at_risk_seed_share`` it reads ``learned``. ``coverage``, the null's own
    w = 0 samples over the conditions (:func:`collapsecheck.verdict.null.uneven_coverage`): a ``learned`` null
    whose coverage entropy is below ``null_coverage_entropy`` reads ``unclear``.

    ``base_model``: the null is a trained base model (a ControlNet switched off), not a branch the
    checkpoint had to learn; the same test then says whether the hint overrides the base everywhere (the spread
    is not read). ``embedded``: a guidance-distilled model whose guidance is a network input (Flux dev-like)."""
    if distilled:
        return Finding("absent_by_design", (EMBEDDED_NULL if embedded else
                                            "guidance-distilled model: it has no null branch by design",))
    by_ratio = _null_by_ratio(test, th, base_model)
    reading = None if base_model else read_spread(spread, th)
    no_contrast = by_ratio.verdict == "unclear" and without_contrast(test)
    if reading is not None and (reading.verdict == "not_learned" or (no_contrast and reading.verdict == "learned")):
        found = Finding(reading.verdict, (reading.reason,) + by_ratio.reasons, reading.evidence + by_ratio.evidence)
    else:
        found = by_ratio
    uneven = None if base_model else uneven_coverage(coverage, th)
    if found.verdict == "learned" and uneven is not None:
        return Finding("unclear", (uneven.reason,) + found.reasons, uneven.evidence)
    return found


def _null_by_ratio(test: Optional[NullTest], th: Thresholds, base_model: bool) -> Finding:
    if test is None or test.conditions < 2:
        return Finding("unclear", ("the null-branch test needs at least two conditions",))
    if test.samples < NULL_MIN_SAMPLES:
        return Finding("unclear", (f"the null-branch test has {test.samples} samples (< {NULL_MIN_SAMPLES})",))
    if test.ratio is None:
        return Finding("unclear", (NO_CONTRAST,))
    b = th.null_ratio_boundary
    null = "the base model (ControlNet off)" if base_model else "the null branch"
    said = (f"null ratio r = (err_null - err_own) / (err_wrong - err_own) = {test.ratio:.3g}, 95% interval "
            f"{interval_text(test.low, test.high)} over {test.samples} w = 1 samples")
    if test.high < b:
        return Finding("learned", (f"{said} < null_ratio_boundary {b:g}: {null} explains the samples better than "
                                   "a wrong condition, as the marginal does",))
    if test.low >= b:
        why = "the hint overrides the base model everywhere" if base_model else "it was not learned as the marginal"
        return Finding("not_learned", (f"{said} >= null_ratio_boundary {b:g}: {null} explains the samples worse "
                                       f"than a wrong condition: {why}",),
                       (Evidence("null_ratio_low", float(test.low), ">=", "null_ratio_boundary", float(b)),))
    return Finding("unclear", (f"{said} straddles null_ratio_boundary {b:g}",))


@dataclass(frozen=True)
class Steering:
    """What raising w from 1 to ``w_max`` does: adherence at both (None: not measured), the combined standard
    error of their difference, and the break ratio (None: not measured)."""

    w_max: float
    adherence_w1: Optional[float]
    adherence_max: Optional[float]
    stderr: float = 0.0
    break_ratio: Optional[float] = None
    metric: str = "implicit adherence"
    #: how far the judged scale moves the samples from w = 1, over how far the w = 0 samples lie from them (the
    #: same seeds; mean pixel RMS): None when w = 0 was not sampled
    relative_shift: Optional[float] = None


#: the note beside a ceiling held by collapsed samples (a memoriser or copier; calibration.md, round 6)
COLLAPSED_CEILING = ("the samples collapsed: each condition gives nearly one image, which the model's own classifier "
                     "reads at its ceiling at every w; guidance cannot change how well that image shows its condition "
                     "to another reader (an external classifier, a person)")


def guidance_verdict(
    null: Finding,
    steering: Optional[Steering],
    max_shift: Optional[float],
    th: Thresholds,
    eps_ratio: Optional[float] = None,
    base_model: bool = False,
    embedded: bool = False,
    decoder: bool = False,
    collapsed: bool = False,
) -> Finding:
    """Can guidance steer? steerable: raising w raises adherence (or holds it at its ceiling) without breaking
    the samples; weak: it barely moves adherence; not_steerable: it does not raise adherence, or breaks the
    samples. Without an adherence measure, by how far guidance moves the samples. The eps ratio and the null
    branch are evidence beside the verdict, not criteria.

    ``base_model``: the null is a trained base model (ControlNet off), which the null finding's note says.
    ``embedded``: the sweep set the network's embedded guidance input (Flux dev-like), judged by the movement.
    ``decoder``: the condition is pixel-aligned (a concatenated or ControlNet hint) and the samples collapsed: a
    hint that fixes the sample is read perfectly by the model's own classifier at every w, so adherence held at
    its ceiling shows nothing to steer, and the verdict is weak: guidance barely moves what the samples show
    (calibration round 42). ``collapsed`` (any other condition): a ceiling held by collapsed samples stays
    steerable, and the reasons say what that ceiling is."""
    if null.verdict == "absent_by_design" and not embedded:
        return Finding("not_steerable", ("guidance-distilled: classifier-free guidance does not apply; this is not a training bug",))
    if embedded:  # the sweep set the network's guidance input: only how far it moves the samples can say
        found = _by_shift(max_shift, th)
        return Finding(found.verdict, (EMBEDDED_SWEEP,) + found.reasons, found.evidence)
    notes = _evidence_notes(null, eps_ratio, base_model)
    if steering is None or steering.adherence_w1 is None or steering.adherence_max is None or steering.w_max <= 1:
        found = _by_shift(max_shift, th)
        return Finding(found.verdict, found.reasons + notes, found.evidence)
    return _by_adherence(steering, th, notes, decoder, collapsed)


def _by_adherence(st: Steering, th: Thresholds, notes: tuple[str, ...], decoder: bool = False,
                  collapsed: bool = False) -> Finding:
    # shares of n samples are exact fractions: a change equal to a threshold reaches it (0.975 - 0.925 is
    # 0.04999999999999993 in floating point), so the change is rounded to 12 decimals before it is compared
    a1, am, gain = st.adherence_w1, st.adherence_max, round(st.adherence_max - st.adherence_w1, 12)
    said = (f"{st.metric} {a1:.3g} at w = 1, {am:.3g} at w = {st.w_max:g}: change {gain:+.3g} "
            f"(standard error {st.stderr:.2g})")
    if st.break_ratio is not None:
        broke = f"break ratio {st.break_ratio:.3g} at w = {st.w_max:g}"
        if st.break_ratio >= th.guidance_break_ratio:
            return Finding("not_steerable", (f"{broke} >= guidance_break_ratio {th.guidance_break_ratio:g}: guidance "
                                             "pushes the samples off what the model considers data", said) + notes,
                           (Evidence("break_ratio", float(st.break_ratio), ">=", "guidance_break_ratio",
                                     float(th.guidance_break_ratio)),))
        notes = (f"{broke} < guidance_break_ratio {th.guidance_break_ratio:g}",) + notes
    if st.relative_shift is not None and st.relative_shift < th.steer_still_shift:
        return _still(st, th, said, notes)
    at_ceiling = a1 >= th.adherence_ceiling and am >= th.adherence_ceiling
    if at_ceiling and decoder:
        return Finding("weak", (f"{said}: at its ceiling, but the samples collapsed onto a pixel-aligned hint: the "
                                "hint fixes what each sample shows, so guidance barely moves adherence (a decoder)",)
                       + notes,
                       (Evidence("adherence_max", float(am), ">=", "adherence_ceiling", float(th.adherence_ceiling)),))
    if at_ceiling:
        return Finding("steerable", (f"{said}: held at its ceiling (>= adherence_ceiling {th.adherence_ceiling:g})",)
                       + ((COLLAPSED_CEILING,) if collapsed else ()) + notes)
    if gain >= th.steer_adherence_gain:
        return Finding("steerable", (f"{said} >= steer_adherence_gain {th.steer_adherence_gain:g}",) + notes)
    if gain >= th.steer_weak_gain:
        return Finding("weak", (f"{said} < steer_adherence_gain {th.steer_adherence_gain:g}: guidance barely moves "
                                "adherence",) + notes,
                       (Evidence("adherence_gain", float(gain), "<", "steer_adherence_gain",
                                 float(th.steer_adherence_gain)),))
    return Finding("not_steerable", (f"{said} < steer_weak_gain {th.steer_weak_gain:g}: guidance does not raise "
                                     "adherence",) + notes,
                   (Evidence("adherence_gain", float(gain), "<", "steer_weak_gain", float(th.steer_weak_gain)),))


def _still(st: Steering, th: Thresholds, said: str, notes: tuple[str, ...]) -> Finding:
    """Guidance leaves the samples where they were: whatever reads them, their adherence cannot move."""
    moved = (f"w = {st.w_max:g} moves the samples from w = 1 by {st.relative_shift:.3g} of the distance the w = 0 "
             f"samples lie from them (same seeds) < steer_still_shift {th.steer_still_shift:g}")
    return Finding("weak", (f"{moved}: guidance leaves each sample nearly where it was, so it cannot change what the "
                            "samples show", said) + notes,
                   (Evidence("relative_shift", float(st.relative_shift), "<", "steer_still_shift",
                             float(th.steer_still_shift)),))


def _by_shift(max_shift: Optional[float], th: Thresholds) -> Finding:
    """Without an adherence measure: how far guidance moves the samples from w = 1."""
    if max_shift is None:
        return Finding("weak", ("no adherence measure and no guidance scale besides w = 1: guidance was not "
                                "measured",))
    moved = f"no adherence measure; guidance moves samples by {max_shift:.4g} pixel RMS from w = 1"
    if max_shift < th.steer_min_shift:
        return Finding("not_steerable", (f"{moved} < steer_min_shift {th.steer_min_shift:g}",),
                       (Evidence("max_shift", float(max_shift), "<", "steer_min_shift", float(th.steer_min_shift)),))
    if max_shift < th.steer_weak_shift:
        return Finding("weak", (f"{moved} < steer_weak_shift {th.steer_weak_shift:g}",),
                       (Evidence("max_shift", float(max_shift), "<", "steer_weak_shift", float(th.steer_weak_shift)),))
    return Finding("steerable", (f"{moved} >= steer_weak_shift {th.steer_weak_shift:g}",))


#: what the null-branch finding implies for guidance, beside its verdict
NULL_NOT_LEARNED_NOTE = ("the null branch was not learned: w > 1 still extrapolates away from the untrained null (the "
                         "adherence above says whether that steers), but w < 1 cannot bring diversity back")
NULL_UNCLEAR_NOTE = "the null-branch test was unclear: whether w < 1 can bring diversity back is not known"


def _evidence_notes(null: Finding, eps_ratio: Optional[float], base_model: bool) -> tuple[str, ...]:
    """What the null branch and the eps ratio imply, reported beside the verdict (neither decides it)."""
    notes = []
    if null.verdict == "not_learned" and not base_model:
        notes.append(NULL_NOT_LEARNED_NOTE)
    elif null.verdict == "not_learned":
        notes.append("the base model explains the samples worse than a wrong hint: the hint overrides it everywhere")
    elif null.verdict == "unclear":
        notes.append(NULL_UNCLEAR_NOTE)
    if eps_ratio is not None:
        notes.append(f"mean eps ratio {eps_ratio:.3g} (evidence only: how hard the condition pulls)")
    return tuple(notes)


#: condition kinds aligned pixel for pixel with the sample (a concatenated image or a ControlNet hint)
PIXEL_ALIGNED = ("concat", "control")


def is_decoder(condition_kind: str, collapse: str) -> bool:
    """A deterministic decoder: a pixel-aligned condition and a collapsed overall verdict."""
    return condition_kind in PIXEL_ALIGNED and collapse == "collapsed"


def worse_or_equal(verdict: str, limit: str) -> bool:
    """Is ``verdict`` at least as bad as ``limit``? (collapse and guidance scales)."""
    for order in (COLLAPSE_ORDER, GUIDANCE_ORDER):
        if verdict in order and limit in order:
            return order.index(verdict) >= order.index(limit)
    return False
