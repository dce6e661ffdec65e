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

from ..result import Evidence
from ..thresholds import Thresholds

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
    """Collapse verdict for one condition from its seed-diversity numbers (None: not measured)."""
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
    if seed_share is not None:
        collapsed.append(_below("seed share", seed_share, "collapsed_seed_share", th.collapsed_seed_share, "seed_share"))
        at_risk.append(_below("seed share", seed_share, "at_risk_seed_share", th.at_risk_seed_share, "seed_share"))
    if lpips is not None:
        collapsed.append(_below("LPIPS", lpips, "collapsed_lpips", th.collapsed_lpips, "lpips"))
        at_risk.append(_below("LPIPS", lpips, "at_risk_lpips", th.at_risk_lpips, "lpips"))
    found = _crossed("collapsed", collapsed) or _crossed("at_risk", at_risk)
    if found:
        return found
    parts = [
        f"pixel RMS {pixel_rms:.4g} >= at_risk_rms {th.at_risk_rms:g}",
        f"near-duplicate pairs {near_duplicates:.4g} < at_risk_near_duplicates {th.at_risk_near_duplicates:g}",
    ]
    if seed_share is not None:
        parts.append(f"seed share {seed_share:.4g} >= at_risk_seed_share {th.at_risk_seed_share:g}")
    if lpips is not None:
        parts.append(f"LPIPS {lpips:.4g} >= at_risk_lpips {th.at_risk_lpips:g}")
    return Finding("healthy", (", ".join(parts),))


def overall_collapse(per_condition: Sequence[str], th: Thresholds) -> Finding:
    """Overall collapse verdict from the per-condition verdicts."""
    n = len(per_condition)
    collapsed = sum(v == "collapsed" for v in per_condition) / n
    unhealthy = sum(v != "healthy" for v in per_condition) / n
    summary = f"{sum(v == 'collapsed' for v in per_condition)}/{n} conditions collapsed, " \
              f"{sum(v == 'at_risk' for v in per_condition)}/{n} at risk"
    if collapsed >= th.overall_collapsed_fraction:
        return Finding("collapsed", (f"{summary}: {collapsed:.0%} >= overall_collapsed_fraction {th.overall_collapsed_fraction:.0%}",),
                       (Evidence("collapsed_fraction", collapsed, ">=", "overall_collapsed_fraction",
                                 float(th.overall_collapsed_fraction)),))
    if unhealthy >= th.overall_at_risk_fraction or collapsed > 0:
        # at_risk because some condition collapsed, below overall_at_risk_fraction: no overall threshold crossed
        evidence = (Evidence("unhealthy_fraction", unhealthy, ">=", "overall_at_risk_fraction",
                             float(th.overall_at_risk_fraction)),) if unhealthy >= th.overall_at_risk_fraction else ()
        return Finding("at_risk", (f"{summary}: {unhealthy:.0%} not healthy (overall_at_risk_fraction {th.overall_at_risk_fraction:.0%})",),
                       evidence)
    return Finding("healthy", (f"{summary}",))


#: the null-branch finding of an embedded-guidance model, and the guidance finding's first reason
EMBEDDED_NULL = ("guidance-distilled with embedded guidance (guidance_embeds, Flux dev-like): there is no null branch to "
                 "check; classifier-free guidance was distilled into the guidance input")
EMBEDDED_SWEEP = ("the guidance sweep set the embedded guidance input (no classifier-free guidance): read by how far "
                  "it moves the samples")


def null_branch(residual: Optional[float], th: Thresholds, distilled: bool = False, base_model: bool = False,
                embedded: bool = False) -> Finding:
    """Was the unconditional branch learned? From the null residual (None: not measurable).

    ``base_model``: the null is a trained base model (a ControlNet switched off), not a branch the
    checkpoint had to learn; the same test then says whether the hint overrides the base everywhere.
    ``embedded``: a guidance-distilled model whose guidance is a network input (Flux dev-like)."""
    if distilled:
        return Finding("absent_by_design", (EMBEDDED_NULL if embedded else
                                            "guidance-distilled model: it has no null branch by design",))
    if residual is None:
        return Finding("unclear", ("the null-branch test needs at least two conditions",))
    null = "eps of the base model (ControlNet off)" if base_model else "eps(x_t, null)"
    if residual <= th.null_learned_residual:
        return Finding(
            "learned",
            (f"null residual {residual:.3g} <= null_learned_residual {th.null_learned_residual:g}: "
             f"{null} lies within the mixture of the conditional predictions",),
        )
    if residual >= th.null_not_learned_residual:
        why = ("the hint overrides the base model everywhere" if base_model
               else "as it would be if learned")
        return Finding(
            "not_learned",
            (f"null residual {residual:.3g} >= null_not_learned_residual {th.null_not_learned_residual:g}: "
             f"{null} is not a mixture of the conditional predictions, {why}",),
            (Evidence("null_residual", float(residual), ">=", "null_not_learned_residual",
                      float(th.null_not_learned_residual)),),
        )
    return Finding(
        "unclear",
        (f"null residual {residual:.3g} between null_learned_residual {th.null_learned_residual:g} "
         f"and null_not_learned_residual {th.null_not_learned_residual:g}",),
    )


def guidance_verdict(
    null: Finding,
    max_shift: Optional[float],
    th: Thresholds,
    adherence_change: Optional[float] = None,
    eps_ratio: Optional[float] = None,
    base_model: bool = False,
    embedded: bool = False,
) -> Finding:
    """Can guidance steer? From the null-branch finding, how far guidance moves the samples and,
    with an adherence metric, how adherence changes from w = 1 to the largest w.

    ``base_model``: the null is a trained base model (ControlNet off): guidance extrapolates from a real
    prediction whatever the null-branch test says, so only the measured movement decides. ``embedded``: the guidance
    scale was the network's embedded guidance input (Flux dev-like), judged by the movement alone."""
    if null.verdict == "absent_by_design" and not embedded:
        return Finding("not_steerable", ("guidance-distilled: classifier-free guidance does not apply; this is not a training bug",))
    reasons = list(null.reasons)
    if embedded:  # the sweep set the network's guidance input: only how far it moves the samples can say
        reasons, eps_ratio = reasons + [EMBEDDED_SWEEP], None
    if null.verdict == "not_learned" and not base_model:
        return Finding("not_steerable", tuple(reasons + ["CFG extrapolates away from an untrained null prediction"]),
                       null.evidence)
    if max_shift is not None:
        moved = f"guidance moves samples by {max_shift:.4g} pixel RMS from w = 1"
        if max_shift < th.steer_min_shift:
            return Finding("not_steerable", tuple(reasons + [f"{moved} < steer_min_shift {th.steer_min_shift:g}"]),
                           (Evidence("max_shift", float(max_shift), "<", "steer_min_shift", float(th.steer_min_shift)),))
        if max_shift < th.steer_weak_shift:
            return Finding("weak", tuple(reasons + [f"{moved} < steer_weak_shift {th.steer_weak_shift:g}"]),
                           (Evidence("max_shift", float(max_shift), "<", "steer_weak_shift", float(th.steer_weak_shift)),))
        reasons.append(f"{moved} >= steer_weak_shift {th.steer_weak_shift:g}")
    if eps_ratio is not None:
        pull = f"mean eps ratio {eps_ratio:.3g}"
        if eps_ratio >= th.weak_eps_ratio:
            return Finding("weak", tuple(reasons + [
                f"{pull} >= weak_eps_ratio {th.weak_eps_ratio:g}: the conditional branch pulls so hard that "
                "guidance only amplifies it"]),
                (Evidence("eps_ratio", float(eps_ratio), ">=", "weak_eps_ratio", float(th.weak_eps_ratio)),))
        reasons.append(f"{pull} < weak_eps_ratio {th.weak_eps_ratio:g}")
    if adherence_change is not None:
        change = f"adherence changes by {adherence_change:+.3g} from w = 1 to the largest w"
        if adherence_change < -th.steer_adherence_drop:
            return Finding("weak", tuple(reasons + [f"{change} (< -steer_adherence_drop {th.steer_adherence_drop:g})"]),
                           (Evidence("adherence_change", float(adherence_change), "<", "steer_adherence_drop",
                                     -float(th.steer_adherence_drop)),))
        reasons.append(change)
    if null.verdict == "unclear" and not base_model:
        return Finding("weak", tuple(reasons))
    return Finding("steerable", tuple(reasons))


def worse_or_equal(verdict: str, limit: str) -> bool:
    """Is ``verdict`` at least as bad as ``limit``? (collapse and guidance scales)."""
    for order in (COLLAPSE_ORDER, GUIDANCE_ORDER):
        if verdict in order and limit in order:
            return order.index(verdict) >= order.index(limit)
    return False
