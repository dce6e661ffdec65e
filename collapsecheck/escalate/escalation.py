"""What fast mode's escalation did: the summary each scan's JSON and notes carry."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional

from ..config import ESCALATION_BAND, ESCALATION_BAND_ABOVE, FULL_SEEDS, FULL_STEPS
from ..result import ScanResult

if TYPE_CHECKING:  # the records of the other escalations, for the annotations only
    from .null import NullEscalation
    from .spread import SpreadEscalation
    from .steering import SteeringEscalation
    from .w0 import W0Escalation


@dataclass
class Escalation:
    """What escalation did: the conditions re-sampled, the null-branch test re-run, and what it cost."""

    indices: list[int] = field(default_factory=list)
    conditions: int = 0
    nfe: int = 0
    guidance_scale: float = 1.0
    denominator: str = "exact"
    rescale: Optional[float] = None
    null: Optional["NullEscalation"] = None
    spread: Optional["SpreadEscalation"] = None
    steering: Optional["SteeringEscalation"] = None
    w0: Optional["W0Escalation"] = None

    def note(self) -> str:
        return (f"{len(self.indices)} of {self.conditions} conditions were re-sampled at full settings ({FULL_SEEDS} "
                f"seeds x {FULL_STEPS} steps) because their fast estimate was near a threshold (with --reference: "
                "their own, or their diversity relative to the base model's, in both scans)")

    def others(self) -> list:
        """The other escalations that ran (null test, null spread, steering, w = 0), in that order."""
        return [e for e in (self.null, self.spread, self.steering, self.w0) if e is not None]

    def notes(self) -> list[str]:
        return ([self.note()] if self.indices else []) + [e.note() for e in self.others()]

    def report(self, result: ScanResult) -> ScanResult:
        """``result`` with the escalation's summary and notes (unchanged when nothing was escalated)."""
        if not self.indices and not self.others():
            return result
        result.escalation = {"resampled": len(self.indices), "conditions": self.conditions, "seeds": FULL_SEEDS,
                             "steps": FULL_STEPS, "guidance_scale": self.guidance_scale, "band": ESCALATION_BAND,
                             "band_above": ESCALATION_BAND_ABOVE, "nfe": self.nfe, "denominator": self.denominator,
                             "rescale": self.rescale, "indices": list(self.indices), "note": " ".join(self.notes()),
                             "null": None if self.null is None else self.null.summary(),
                             "null_spread": None if self.spread is None else self.spread.summary(),
                             "steering": None if self.steering is None else self.steering.summary(),
                             "w0": None if self.w0 is None else self.w0.summary()}
        result.checkpoint["notes"] = list(result.checkpoint.get("notes", [])) + self.notes()
        return result
