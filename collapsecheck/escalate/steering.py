"""Fast mode's guidance verdict measured again at full settings when it lay near a threshold."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

import torch

from ..config import FULL_SEEDS, FULL_STEPS, STEERING_BREAK_BAND, STEERING_ESCALATION_Z, STEERING_SHIFT_BAND
from ..measure.diversity import mean_shift
from ..measure.implicit import FULL, implicit_nfe, implicit_stats
from ..profile import stage
from ..stages import Decided, Scan, judge_guidance
from ..thresholds import Thresholds, near
from ..verdict import rules as V
from ..verdict.steering import shift_ratio
from .grids import FullGrids


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


def near_still(relative_shift: Optional[float], th: Thresholds) -> bool:
    """Is the relative shift within STEERING_SHIFT_BAND of steer_still_shift (where fast and full may read apart)?"""
    return near(relative_shift, th.steer_still_shift, STEERING_SHIFT_BAND)


def borderline_steering(st: Optional[V.Steering], th: Thresholds, z: float = STEERING_ESCALATION_Z,
                        band: float = STEERING_BREAK_BAND) -> bool:
    """Could the guidance verdict read otherwise at full settings? Its adherence change within ``z`` standard errors
    of steer_adherence_gain or steer_weak_gain, the lower adherence within them of adherence_ceiling, the break ratio
    within a factor ``band`` of guidance_break_ratio, or the relative shift near its own threshold
    (:func:`near_still`)."""
    if st is None or st.metric != "implicit adherence" or st.adherence_w1 is None or st.adherence_max is None:
        return False
    margin, gain = z * st.stderr, st.adherence_max - st.adherence_w1
    near_gain = any(abs(gain - limit) <= margin for limit in (th.steer_adherence_gain, th.steer_weak_gain))
    near_ceiling = abs(min(st.adherence_w1, st.adherence_max) - th.adherence_ceiling) <= margin
    return near_gain or near_ceiling or near_still(st.relative_shift, th) or near(st.break_ratio,
                                                                                 th.guidance_break_ratio, band)


def escalate_steering(s: Scan, decided: Decided, grids: FullGrids) -> tuple[Decided, Optional[SteeringEscalation]]:
    """A borderline fast guidance verdict (:func:`borderline_steering`) measured again as a full scan measures it:
    the implicit adherence and break ratio of every condition's samples at w = 1 and at the judged scale, FULL_SEEDS
    seeds and FULL_STEPS steps, the full classifier settings (the same noises: a full scan's numbers exactly), and the
    relative shift when it lay near steer_still_shift; the verdict judged again. The sweep's fast numbers are kept."""
    fast = decided.steer
    if not borderline_steering(fast, s.config.thresholds):
        return decided, None
    with stage("escalation") as timed:
        (w1, sampled), (top, drawn_top) = grids.get(1.0), grids.get(fast.w_max)
        raw = torch.cat([w1.samples, top.samples])
        total = implicit_nfe(2, len(s.conds), FULL_SEEDS, FULL, False)
        again = s.fit("measuring guidance again", lambda batch: implicit_stats(
            s.denoiser, s.schedule, s.conds, raw, 0, FULL, batch, False, s.bar("guidance", total)))
        moved, drawn = (full_relative_shift(grids, fast.w_max) if near_still(fast.relative_shift, s.config.thresholds)
                        else (fast.relative_shift, 0))
        nfe = sampled + drawn_top + again.nfe + drawn
        timed.nfe += nfe
    a1, am = again.adherence
    steer = V.Steering(fast.w_max, a1.value, am.value, (a1.stderr ** 2 + am.stderr ** 2) ** 0.5, again.break_ratio[1],
                       relative_shift=moved)
    esc = SteeringEscalation(fast, steer, nfe)
    found = judge_guidance(s, decided.null, steer, decided.max_shift, decided.eps_ratio, decided.collapse)
    guidance = dataclasses.replace(found, reasons=found.reasons + (esc.note(),))
    return dataclasses.replace(decided, steer=steer, guidance=guidance), esc


def full_relative_shift(grids: FullGrids, top: float) -> tuple[Optional[float], int]:
    """The relative shift (verdict.steering.relative_shift) at full settings: the w = 0, w = 1 and ``top`` grids
    decoded (once each, shared with the other escalations) and clipped as the sweep's are; and what drawing the w = 0
    samples cost (the other two were drawn for the adherence)."""
    (zero, drawn), (one, _), (moved, _) = (grids.decoded(w) for w in (0.0, 1.0, top))
    one = one.clamp(-1.0, 1.0)
    far, moved = (float(mean_shift(x.clamp(-1.0, 1.0), one[0])[0]) for x in (zero, moved))
    return shift_ratio(moved, far), drawn
