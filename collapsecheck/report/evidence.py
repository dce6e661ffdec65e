"""The numbers that decided a verdict, as renderers show them.

The verdict stage records them on ConditionResult, ScanResult, GuidanceResult and NullBranchResult as
``decided_by``: a list of Evidence (measure, value, op, threshold, limit). Renderers read both the
dataclasses and the JSON dict form, and show nothing when a result carries no ``decided_by`` (older
results): the deciding number is never guessed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional

FIELDS = ("measure", "value", "op", "threshold", "limit")


@dataclass(frozen=True)
class Decided:
    """One piece of evidence: ``value op limit``, e.g. seed_share 0.048 < collapsed_seed_share 0.1."""

    measure: str
    value: Optional[float]
    op: str
    threshold: str
    limit: Optional[float]

    def text(self) -> str:
        """'seed share 0.048 < collapsed_seed_share 0.1'."""
        return f"{measure_name(self.measure)} {number(self.value)} {self.op} {self.threshold} {number(self.limit)}"

    def short(self) -> str:
        """'seed share 0.048 < 0.1', for narrow places (contact-sheet rows)."""
        return f"{measure_name(self.measure)} {number(self.value)} {self.op} {number(self.limit)}"


def _field(item: Any, name: str):
    return item.get(name) if isinstance(item, Mapping) else getattr(item, name, None)


def decided_by(result: Any) -> list[Decided]:
    """The evidence of ``result`` (a dataclass or its dict form); [] when it carries none."""
    items = _field(result, "decided_by") if result is not None else None
    out = []
    for item in items or []:
        values = {name: _field(item, name) for name in FIELDS}
        if values["measure"] is None:
            continue
        out.append(Decided(str(values["measure"]), _float(values["value"]), str(values["op"] or "?"),
                           str(values["threshold"] or "?"), _float(values["limit"])))
    return out


def deciding_measures(result: Any) -> set[str]:
    """Names of the measures that decided ``result``'s verdict (e.g. {'seed_share'})."""
    return {e.measure for e in decided_by(result)}


def evidence_text(result: Any, short: bool = False) -> str:
    """Every piece of evidence joined with '; ', or '' when there is none."""
    return "; ".join(e.short() if short else e.text() for e in decided_by(result))


def measure_name(measure: str) -> str:
    return {"lpips": "LPIPS", "pixel_rms": "pixel RMS", "eps_ratio": "eps ratio"}.get(measure, measure.replace("_", " "))


def number(value: Optional[float]) -> str:
    """Three significant digits, no exponent for ordinary sizes: 0.048, 0.1, 12.3, 1.2e-05."""
    if value is None:
        return "n/a"
    return f"{value:.3g}"


def _float(value) -> Optional[float]:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None
