"""Fast mode's null-branch test run again at full settings when its fast interval straddled the boundary."""
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



def undecided_null(decided: Decided) -> bool:
    """The null-branch test ran with a contrast to measure against, and its interval straddled the boundary (or
    it had too few samples): more samples at full settings can decide it."""
    n = decided.implicit.null if decided.implicit is not None else None
    return decided.null.verdict == "unclear" and n is not None and n.ratio is not None


def escalate_null(s: Scan, decided: Decided, grids: FullGrids) -> tuple[Decided, Optional[NullEscalation]]:
    """An undecided fast null-branch test run again as a full scan runs it: on every condition's w = 1 samples
    of FULL_SEEDS seeds and FULL_STEPS steps (from ``grids``: drawn here unless an earlier escalation drew them),
    with the full classifier settings; the null-branch finding and the guidance verdict that reads it judged
    again. The fast adherence and break ratios are kept."""
    if not undecided_null(decided):
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

