"""With --reference, fast mode: the w = 0 seed diversity measured again at full settings, in both scans."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..config import FULL_SEEDS, FULL_STEPS
from ..profile import stage
from ..stages import LpipsMeter, Scan
from .grids import FullGrids, measure_resampled


@dataclass
class W0Escalation:
    """The w = 0 seed diversity at full settings (means over conditions) and what drawing it cost here (0 when the
    guidance escalation had drawn the same samples)."""

    pixel_rms: float
    lpips: Optional[float]
    nfe: int

    def note(self) -> str:
        return ("the w = 0 seed diversity relative to the base model's was near collapsed_relative_diversity or "
                "at_risk_relative_diversity at fast settings; every condition's w = 0 samples were drawn again with "
                f"{FULL_SEEDS} seeds x {FULL_STEPS} steps in both scans, and the comparison with the base reads those")

    def summary(self) -> dict:
        return {"pixel_rms": self.pixel_rms, "lpips": self.lpips, "seeds": FULL_SEEDS, "steps": FULL_STEPS,
                "nfe": self.nfe, "note": self.note()}


def escalate_w0(s: Scan, lpips: LpipsMeter, grids: FullGrids) -> Optional[W0Escalation]:
    """The w = 0 point's seed diversity (mean pixel RMS and LPIPS over conditions) measured as a full scan measures
    it: FULL_SEEDS seeds, FULL_STEPS steps, the same noises; when the --reference comparison asked for it
    (``ScanConfig.escalate_w0``) and the sweep holds w = 0."""
    if not s.config.escalate_w0 or 0.0 not in s.scales:
        return None
    with stage("escalation") as timed:
        images, drawn = grids.decoded(0.0)
        timed.nfe += drawn
        stats = measure_resampled(s, images, list(range(len(s.conds))), lpips)
    return W0Escalation(float(stats.pixel_rms[0].mean()), stats.mean("lpips", 0), drawn)
