"""Fast mode's null spread measured again at full settings when it lies near the thresholds that read it."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

from ..config import FULL_SEEDS, FULL_STEPS, NULL_SPREAD_BAND
from ..profile import stage
from ..stages import Decided, Scan, guidance_kind, judge_guidance
from ..thresholds import Thresholds
from ..verdict import rules as V
from ..verdict.null import without_contrast
from ..verdict.steering import finite_spread, null_test
from .grids import FullGrids


@dataclass
class SpreadEscalation:
    """The null spread at fast settings, at full settings, and what drawing the full grids cost here (0 when another
    escalation had drawn them)."""

    fast: float
    spread: Optional[float]
    nfe: int

    def note(self) -> str:
        return (f"the null spread at fast settings ({self.fast:.3g}) lay near collapsed_seed_share or "
                f"at_risk_seed_share; every condition's w = 0 and w = 1 samples were drawn again with {FULL_SEEDS} "
                f"seeds x {FULL_STEPS} steps, and the null branch reads the spread of those")

    def summary(self) -> dict:
        return {"fast_spread": self.fast, "spread": self.spread, "seeds": FULL_SEEDS, "steps": FULL_STEPS,
                "nfe": self.nfe, "note": self.note()}


def borderline_spread(spread: Optional[float], null: V.Finding, th: Thresholds, contrast: bool = True) -> bool:
    """Could the null spread read otherwise at full settings and change the null-branch verdict? Not when the ratio
    has already read ``not_learned``; else when it lies within NULL_SPREAD_BAND of collapsed_seed_share, or, where
    the ratio has no ``contrast`` (the spread can then read ``learned``), up to at_risk_seed_share x the band."""
    if spread is None or (null.verdict == "not_learned" and not _by_spread(null)):
        return False
    top = th.collapsed_seed_share if contrast else th.at_risk_seed_share
    return th.collapsed_seed_share / NULL_SPREAD_BAND <= spread <= top * NULL_SPREAD_BAND


def _by_spread(null: V.Finding) -> bool:
    return any(e.measure == "null_spread" for e in null.evidence)


def escalate_spread(s: Scan, decided: Decided, grids: FullGrids) -> tuple[Decided, Optional[SpreadEscalation]]:
    """A borderline fast null spread (:func:`borderline_spread`) measured again from every condition's w = 0 and
    w = 1 samples at FULL_SEEDS seeds and FULL_STEPS steps (a full scan's samples exactly); the null-branch finding
    and the guidance verdict that reads it judged again."""
    contrast = not without_contrast(null_test(decided.implicit))
    if s.config.guidance_distilled or not borderline_spread(decided.null_spread, decided.null, s.config.thresholds,
                                                            contrast):
        return decided, None
    with stage("escalation") as timed:
        (w0, drawn0), (w1, drawn1) = grids.decoded(0.0), grids.decoded(1.0)
        timed.nfe += drawn0 + drawn1
    spread = finite_spread(w0[0].clamp(-1.0, 1.0), w1[0].clamp(-1.0, 1.0))
    esc = SpreadEscalation(decided.null_spread, spread, drawn0 + drawn1)
    null = V.null_branch(null_test(decided.implicit), s.config.thresholds, spread=spread, coverage=decided.coverage,
                         **guidance_kind(s))
    null = dataclasses.replace(null, reasons=null.reasons + (esc.note(),))
    guidance = judge_guidance(s, null, decided.steer, decided.max_shift, decided.eps_ratio, decided.collapse)
    return dataclasses.replace(decided, null=null, guidance=guidance, null_spread=spread), esc
