"""``--reference BASE``: seed diversity relative to the base model at the same conditions and seeds. Pure.

A fine-tune can keep ordinary-looking absolute diversity while it lost most of what its base had at a
condition. Per condition the ratio of the fine-tune's mean pairwise pixel RMS and LPIPS to the base's (same
conditions, seeds, steps, guidance scale) says how much is left; the smaller of the two ratios decides: below
``collapsed_relative_diversity`` the condition fell toward a single image, below
``at_risk_relative_diversity`` it is at risk. The overall relative verdict applies the overall fractions of
the absolute verdict (``overall_collapsed_fraction``, ``overall_at_risk_fraction``) to these verdicts.

With a reference, the scan's collapse verdicts are judged against the base as well as against the model's own
spread: each condition takes the worse of its own verdict and its relative one (:func:`against_base`; a condition
that keeps its base's diversity where the base itself, not collapsed as a whole, reads collapsed is ``at_risk``),
and the null branch reads ``not_learned`` when the w = 0 samples keep less than ``collapsed_relative_diversity`` of the
base's w = 0 diversity (:func:`null_against_base`): a fine-tune that overwrote its base's unconditional branch;
``unclear`` when they keep less than ``at_risk_relative_diversity``: it narrowed that branch, and whether w < 1
can bring diversity back is not known.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

from ..errors import UsageError
from ..record import Record
from ..result import ConditionResult, Evidence
from ..thresholds import Thresholds
from .rules import COLLAPSE_ORDER, Finding, overall_collapse


@dataclass
class RelativeCondition(Record):
    """One condition of the fine-tune against the base model's same condition."""

    index: int
    label: str
    verdict: str  # healthy, at_risk, collapsed: relative to the base
    reason: str
    pixel_rms: float  # the fine-tune's
    base_pixel_rms: float
    pixel_ratio: Optional[float]  # fine-tune / base; None when the base has no diversity to compare with
    lpips: Optional[float] = None
    base_lpips: Optional[float] = None
    lpips_ratio: Optional[float] = None
    vendi: Optional[float] = None
    base_vendi: Optional[float] = None
    vendi_ratio: Optional[float] = None
    #: the ratio that decided: the smaller of pixel_ratio and lpips_ratio
    ratio: Optional[float] = None
    base_verdict: Optional[str] = None  # the base model's own (absolute) verdict at this condition


@dataclass
class ReferenceResult(Record):
    """The ``reference`` section of a scan result."""

    path: str
    content_hash: Optional[str]
    model_class: Optional[str]
    verdict: str  # the overall relative verdict
    reasons: list[str]
    base_verdict: str  # the base model's own overall verdict
    conditions: list[RelativeCondition]
    decided_by: list[Evidence] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: the collapse verdict from the model's own spread alone; the scan's verdict comes from the conditions judged
    #: both ways (:func:`against_base`)
    own_verdict: Optional[str] = None
    #: the w = 0 (null branch) seed diversity relative to the base's w = 0; None without w = 0 in both sweeps
    w0_ratio: Optional[float] = None


def ratio(value: Optional[float], base: Optional[float], floor: float = 1e-12) -> Optional[float]:
    """``value / base``; None when either is missing or the base is (numerically) zero."""
    if value is None or base is None or base <= floor:
        return None
    return float(value) / float(base)


def relative_condition(ft: ConditionResult, base: ConditionResult, th: Thresholds) -> RelativeCondition:
    """One condition's ratios and relative verdict."""
    px, lp = ratio(ft.pixel_rms, base.pixel_rms), ratio(ft.lpips, base.lpips)
    vs = ratio(getattr(ft, "vendi", None), getattr(base, "vendi", None))
    decisive = smaller_ratio(px, lp)
    verdict, reason = _relative_verdict(decisive, px, lp, th)
    return RelativeCondition(
        index=ft.index, label=ft.label, verdict=verdict, reason=reason, pixel_rms=ft.pixel_rms,
        base_pixel_rms=base.pixel_rms, pixel_ratio=px, lpips=ft.lpips, base_lpips=base.lpips, lpips_ratio=lp,
        vendi=getattr(ft, "vendi", None), base_vendi=getattr(base, "vendi", None), vendi_ratio=vs,
        ratio=decisive, base_verdict=base.verdict,
    )


def relative_verdict(decisive: Optional[float], th: Thresholds) -> str:
    """healthy, at_risk or collapsed for one relative diversity ratio (None: nothing to compare: healthy)."""
    return _relative_verdict(decisive, None, None, th)[0]


def against_base(own: str, relative: str, base_own: Optional[str] = None, base_overall: Optional[str] = None) -> str:
    """A condition judged against its own spread and against the base: the worse of the two verdicts, except
    where it is collapsed by its own spread only, keeps the base's diversity (``relative`` healthy), the base reads
    collapsed there by its own spread too (``base_own``) and the base as a whole is not collapsed
    (``base_overall``): it is then ``at_risk``. Its seeds vary as little as the base's at that condition, so the
    narrowness is the base's: most likely a class narrow by nature, which a seed share relative to the spread
    across conditions cannot tell (calibration round 20). ``base_own`` is None where the comparison has no ratio
    (:func:`comparable_base_verdict`): no relief."""
    if inherited_narrowness(own, relative, base_own, base_overall):
        return "at_risk"
    return max(own, relative, key=COLLAPSE_ORDER.index)


def comparable_base_verdict(base_verdict: Optional[str], ratio: Optional[float]) -> Optional[str]:
    """The base's own verdict at a condition as :func:`against_base` reads it: None where the comparison has no
    ratio (the base has no seed diversity there), which is no evidence of how narrow the class is."""
    return base_verdict if ratio is not None else None


def inherited_narrowness(own: str, relative: str, base_own: Optional[str], base_overall: Optional[str]) -> bool:
    """Collapsed by the model's own spread, but as diverse as the base, which reads collapsed there too without
    being collapsed as a whole."""
    return (own == "collapsed" and relative == "healthy" and base_own == "collapsed"
            and base_overall in ("healthy", "at_risk"))


#: the reason a condition collapsed by its own spread reads at_risk against the base (:func:`against_base`)
INHERITED = ("as diverse as the base model here, which reads collapsed by its own spread too (and is not collapsed as "
             "a whole): narrow in the base as well, most likely a class narrow by nature, so at_risk, not collapsed")


def smaller_ratio(pixel_ratio: Optional[float], lpips_ratio: Optional[float]) -> Optional[float]:
    """The ratio a relative verdict reads: the smaller of the pixel RMS and LPIPS ratios (None when neither is known)."""
    known = [r for r in (pixel_ratio, lpips_ratio) if r is not None]
    return min(known) if known else None


def null_against_base(w0_ratio: Optional[float], th: Thresholds) -> Optional[Finding]:
    """The null branch from the w = 0 samples' seed diversity relative to the base model's at the same seeds:
    ``not_learned`` below ``collapsed_relative_diversity`` (the fine-tune overwrote the unconditional branch it
    inherited), ``unclear`` below ``at_risk_relative_diversity`` (it narrowed that branch); None otherwise (the
    null-ratio test's finding stands)."""
    if w0_ratio is None or w0_ratio >= th.at_risk_relative_diversity:
        return None
    kept = f"the w = 0 samples keep {w0_ratio:.0%} of the base model's w = 0 seed diversity"
    if w0_ratio >= th.collapsed_relative_diversity:
        return Finding("unclear", (f"{kept} ({w0_ratio:.3g} < at_risk_relative_diversity "
                                   f"{th.at_risk_relative_diversity:g}): the fine-tune narrowed the unconditional "
                                   "branch it inherited",),
                       (Evidence("w0_relative_diversity", float(w0_ratio), "<", "at_risk_relative_diversity",
                                 float(th.at_risk_relative_diversity)),))
    return Finding("not_learned", (f"{kept} ({w0_ratio:.3g} < collapsed_relative_diversity "
                                   f"{th.collapsed_relative_diversity:g}): the fine-tune overwrote the unconditional "
                                   "branch it inherited",),
                   (Evidence("w0_relative_diversity", float(w0_ratio), "<", "collapsed_relative_diversity",
                             float(th.collapsed_relative_diversity)),))



def base_overrides_null(own: str, against: Optional[Finding]) -> bool:
    """Does the comparison with the base (:func:`null_against_base`) replace the null-ratio test's verdict ``own``?
    ``not_learned`` replaces ``learned`` and ``unclear``; ``unclear`` replaces ``learned``."""
    if against is None:
        return False
    return own == "learned" or (own == "unclear" and against.verdict == "not_learned")

def _relative_verdict(decisive: Optional[float], px: Optional[float], lp: Optional[float],
                      th: Thresholds) -> tuple[str, str]:
    if decisive is None:
        return "healthy", "the base model has no seed diversity here to compare with (ratio undefined)"
    parts = [f"pixel RMS {px:.0%}" if px is not None else None, f"LPIPS {lp:.0%}" if lp is not None else None]
    said = f"seed diversity is {decisive:.0%} of the base model's ({', '.join(p for p in parts if p)})"
    if decisive < th.collapsed_relative_diversity:
        return "collapsed", f"{said}: fell toward a single image ({decisive:.3g} < collapsed_relative_diversity " \
                            f"{th.collapsed_relative_diversity:g})"
    if decisive < th.at_risk_relative_diversity:
        return "at_risk", f"{said} ({decisive:.3g} < at_risk_relative_diversity {th.at_risk_relative_diversity:g})"
    return "healthy", f"{said} (>= at_risk_relative_diversity {th.at_risk_relative_diversity:g})"


def compare_with_reference(conditions: Sequence[ConditionResult], base_conditions: Sequence[ConditionResult],
                           th: Thresholds, *, path: str, content_hash: Optional[str] = None,
                           model_class: Optional[str] = None, base_verdict: str = "") -> ReferenceResult:
    """The reference section: every condition against the base's, and the overall relative verdict.
    The two scans must cover the same conditions (a one-line UsageError otherwise)."""
    if len(conditions) != len(base_conditions):
        raise UsageError(f"--reference {path}: the base model was scanned at {len(base_conditions)} conditions, "
                         f"this model at {len(conditions)}; they must take the same conditions")
    rel = [relative_condition(ft, base, th) for ft, base in zip(conditions, base_conditions)]
    notes = [f"condition {ft.index}: '{ft.label}' here is '{base.label}' in the base model"
             for ft, base in zip(conditions, base_conditions) if ft.label != base.label]
    overall = overall_collapse([c.verdict for c in rel], th)
    ratios = [c.ratio for c in rel if c.ratio is not None]
    reasons = list(overall.reasons)
    if ratios:
        reasons.insert(0, f"seed diversity relative to the base model: median {_median(ratios):.0%}, "
                          f"lowest {min(ratios):.0%} ({rel[[c.ratio for c in rel].index(min(ratios))].label})")
    return ReferenceResult(path=path, content_hash=content_hash, model_class=model_class, verdict=overall.verdict,
                           reasons=reasons, base_verdict=base_verdict, conditions=rel,
                           decided_by=list(overall.evidence), notes=notes)


def _median(values: Sequence[float]) -> float:
    s = sorted(values)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2
