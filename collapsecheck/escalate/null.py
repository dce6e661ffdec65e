"""Fast mode's null-branch test run again at full settings when its fast interval came near its boundary."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

from ..config import FULL_SEEDS, FULL_STEPS
from ..measure.implicit import FULL, NullRatio, implicit_nfe, implicit_stats
from ..profile import stage
from ..stages import Decided, Scan, guidance_kind, judge_guidance
from ..verdict import rules as V
from ..verdict.steering import null_test
from .grids import FullGrids

#: fast mode runs the null-branch test again at full settings when its fast interval comes within this of
#: null_ratio_boundary (and when it straddles it): full - fast null ratio spans -1.33..+0.153 on the calibration
#: split's 300 models (round 40), and round 40's holdout (waste/nodrop) read a fast interval ending 0.0003 under the
#: boundary (learned) where the full scan's straddled it (unclear)
NULL_TEST_BAND = 0.2


@dataclass
class NullEscalation:
    """Fast mode's null-branch test re-run at full settings: what the fast test read and what the re-run cost."""

    fast: NullRatio
    samples: int
    nfe: int

    def note(self) -> str:
        f = self.fast
        return (f"the null-branch test was undecided or near its boundary at fast settings (r = {f.ratio:.3g}, 95% "
                f"interval [{f.low:.3g}, {f.high:.3g}] over {f.samples} samples); it was run again on {self.samples} "
                f"w = 1 samples of {FULL_SEEDS} seeds x {FULL_STEPS} steps with the full scan's classifier settings")

    def summary(self) -> dict:
        return {"fast_ratio": self.fast.ratio, "fast_low": self.fast.low, "fast_high": self.fast.high,
                "fast_samples": self.fast.samples, "samples": self.samples, "seeds": FULL_SEEDS, "steps": FULL_STEPS,
                "nfe": self.nfe, "note": self.note()}


def undecided_null(decided: Decided, boundary: float) -> bool:
    """The null-branch test ran with a contrast to measure against, and the null branch read unclear (its interval
    straddled the boundary, or it had too few samples) or the interval comes within NULL_TEST_BAND of
    ``boundary``: more samples at full settings can decide it, or move it across."""
    n = decided.implicit.null if decided.implicit is not None else None
    if n is None or n.ratio is None:
        return False
    near = n.low is not None and n.high is not None and n.low - NULL_TEST_BAND < boundary < n.high + NULL_TEST_BAND
    return decided.null.verdict == "unclear" or near


def escalate_null(s: Scan, decided: Decided, grids: FullGrids) -> tuple[Decided, Optional[NullEscalation]]:
    """An undecided fast null-branch test, or one near its boundary, run again as a full scan runs it: on every
    condition's w = 1 samples of FULL_SEEDS seeds and FULL_STEPS steps (from ``grids``: drawn here unless an earlier
    escalation drew them), with the full classifier settings; the null-branch finding and the guidance verdict that
    reads it judged again. The fast adherence and break ratios are kept."""
    if not undecided_null(decided, s.config.thresholds.null_ratio_boundary):
        return decided, None
    with stage("escalation") as timed:
        grid, sampled = grids.get(1.0)
        total = implicit_nfe(1, len(s.conds), FULL_SEEDS, FULL, True)
        again = s.fit("re-testing the null branch", lambda batch: implicit_stats(
            s.denoiser, s.schedule, s.conds, grid.samples, 0, FULL, batch, True, s.bar("null-branch test", total)))
        timed.nfe += sampled + again.nfe
    esc = NullEscalation(decided.implicit.null, again.null.samples, sampled + again.nfe)
    null = V.null_branch(null_test(again), s.config.thresholds, spread=decided.null_spread,
                         coverage=decided.coverage, **guidance_kind(s))
    null = dataclasses.replace(null, reasons=null.reasons + (esc.note(),))
    guidance = judge_guidance(s, null, decided.steer, decided.max_shift, decided.eps_ratio, decided.collapse)
    implicit = dataclasses.replace(decided.implicit, null=again.null)
    return dataclasses.replace(decided, null=null, guidance=guidance, implicit=implicit), esc

