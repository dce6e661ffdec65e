"""Regression gate: compare a scan with a baseline scan. Pure functions on result dicts (or
ScanResults); never prints, never exits.

A comparison fails when

* seed diversity fell by more than ``max_drop`` (a fraction of the baseline value; the CLI's
  ``--max-regression PCT`` is ``max_drop = PCT / 100``): per condition
  (matched by label) and for the mean over conditions, for ``pixel_rms`` and, when both scans have
  it, ``lpips``; or
* the overall collapse verdict or the guidance verdict got worse (``healthy -> at_risk``, ...).

Scans of different condition sets cannot be compared (:class:`UsageError`); different settings
(seeds, steps, thresholds, ...) are allowed and noted, since the numbers may then move for that
reason alone.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

from ..errors import UsageError
from ..result import SCHEMA_VERSION, ScanResult, read_json
from .rules import COLLAPSE_ORDER, GUIDANCE_ORDER

DEFAULT_MAX_DROP = 0.2
#: the measures compared, all "higher = more diverse"
DIVERSITY_MEASURES = ("pixel_rms", "lpips")
#: settings that change the numbers; a difference is noted, not refused
COMPARABLE_SETTINGS = ("seeds", "seed", "steps", "guidance_scale", "prediction_type", "lpips_net", "dtype", "thresholds")
_REQUIRED = ("schema_version", "verdict", "guidance", "conditions")


@dataclass
class Change:
    """One number (or verdict) before and after."""

    measure: str  # "pixel_rms", "lpips", "collapse verdict", "guidance verdict", "verdict"
    condition: Optional[str]  # a condition label, or None for the whole scan
    before: Any
    after: Any
    change: Optional[float] = None  # relative change (after - before) / before, for numbers
    regressed: bool = False
    reason: str = ""


@dataclass
class Comparison:
    """The result of :func:`compare`."""

    base: dict  # path, created, checkpoint, content_hash of the baseline scan
    max_drop: float
    changes: list[Change]
    notes: list[str] = field(default_factory=list)

    @property
    def regressions(self) -> list[str]:
        return [c.reason for c in self.changes if c.regressed]

    @property
    def passed(self) -> bool:
        return not self.regressions

    def to_dict(self) -> dict:
        return {
            **self.base,
            "max_drop": self.max_drop,
            "max_regression": round(self.max_drop * 100, 6),
            "passed": self.passed,
            "regressions": self.regressions,
            "changes": [asdict(c) for c in self.changes],
            "notes": list(self.notes),
        }


# ------------------------------------------------------------------------------ input


def as_dict(result: Union[ScanResult, dict]) -> dict:
    """A result as the plain dict its JSON holds."""
    return result.to_dict() if isinstance(result, ScanResult) else result


def check_result(data: Any, where: str) -> dict:
    """Raise :class:`UsageError` unless ``data`` is a scan result of a schema this version reads."""
    if not isinstance(data, dict):
        raise UsageError(f"{where} is not a collapsecheck scan result (expected a JSON object)")
    if "schema_version" not in data:
        raise UsageError(f"{where} has no schema_version: it is not a collapsecheck scan JSON (write one with scan --json)")
    version = str(data["schema_version"])
    major = SCHEMA_VERSION.split(".")[0]
    if version.split(".")[0] != major:
        raise UsageError(
            f"{where} has schema_version {version}; this collapsecheck reads {major}.x: "
            f"rescan the baseline with this version"
        )
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise UsageError(f"{where} lacks {', '.join(missing)}: it is not a complete collapsecheck scan result")
    if not isinstance(data["conditions"], list) or not data["conditions"]:
        raise UsageError(f"{where} has no conditions")
    return data


def load_result(path: Union[str, Path]) -> dict:
    """Read a scan JSON as its dict, checked for what a comparison needs (schema major version,
    verdicts, conditions). Raises :class:`UsageError` (exit 2) on any problem. For the full typed
    result, checked against the schema, see :func:`collapsecheck.result.load_result`."""
    return check_result(read_json(path), str(path))


# ------------------------------------------------------------------------------ compare


def relative_change(before: Optional[float], after: Optional[float]) -> Optional[float]:
    """(after - before) / before; None when either is missing or the baseline is 0."""
    if before is None or after is None or not math.isfinite(before) or not math.isfinite(after) or before == 0:
        return None
    return (after - before) / abs(before)


def _mean(values: list) -> Optional[float]:
    if not values or any(v is None for v in values):
        return None
    return sum(values) / len(values)


def _labels(data: dict) -> list[str]:
    return [str(c.get("label")) for c in data["conditions"]]


def _check_same_conditions(base: dict, new: dict, base_name: str, new_name: str) -> None:
    b, n = _labels(base), _labels(new)
    if set(b) == set(n) and len(b) == len(n):
        return
    only_b = [x for x in b if x not in set(n)]
    only_n = [x for x in n if x not in set(b)]

    def few(items):
        return ", ".join(items[:5]) + (f" (+{len(items) - 5} more)" if len(items) > 5 else "")

    parts = []
    if only_b:
        parts.append(f"only in {base_name}: {few(only_b)}")
    if only_n:
        parts.append(f"only in {new_name}: {few(only_n)}")
    if not parts:
        parts.append("a label appears more than once")
    raise UsageError(
        f"{base_name} and {new_name} scanned different conditions ({len(b)} vs {len(n)}; {'; '.join(parts)}): "
        "scan both with the same --classes / --cond to compare them"
    )


def _diversity(measure: str, label: Optional[str], before, after, max_drop: float) -> Change:
    rel = relative_change(before, after)
    where = label or "mean over conditions"
    regressed = rel is not None and -rel > max_drop
    reason = ""
    if regressed:
        reason = (f"{where}: {measure} fell {-rel:.0%} ({before:.4g} -> {after:.4g}), "
                  f"more than --max-regression {max_drop * 100:g}%")
    return Change(measure, label, before, after, rel, regressed, reason)


def _verdict(name: str, order: tuple, before: str, after: str) -> Change:
    worse = before in order and after in order and order.index(after) > order.index(before)
    reason = f"{name} got worse: {before} -> {after}" if worse else ""
    return Change(name, None, before, after, None, worse, reason)


def compare(base: Union[ScanResult, dict], new: Union[ScanResult, dict], max_drop: float = DEFAULT_MAX_DROP,
            base_path: Optional[str] = None, base_name: str = "the baseline", new_name: str = "the new scan") -> Comparison:
    """Compare ``new`` with ``base``. Raises :class:`UsageError` when they cannot be compared."""
    if not (isinstance(max_drop, (int, float)) and 0 <= max_drop < 1):
        raise UsageError(f"max_drop must be a fraction in [0, 1), e.g. 0.2 for --max-regression 20, but got {max_drop!r}")
    base = check_result(as_dict(base), base_name)
    new = check_result(as_dict(new), new_name)
    _check_same_conditions(base, new, base_name, new_name)

    changes = [
        _verdict("collapse verdict", COLLAPSE_ORDER, base["verdict"], new["verdict"]),
        _verdict("guidance verdict", GUIDANCE_ORDER, base["guidance"]["verdict"], new["guidance"]["verdict"]),
    ]
    by_label = {str(c["label"]): c for c in new["conditions"]}
    pairs = [(c, by_label[str(c["label"])]) for c in base["conditions"]]
    for measure in DIVERSITY_MEASURES:
        before = _mean([b.get(measure) for b, _ in pairs])
        after = _mean([n.get(measure) for _, n in pairs])
        if before is not None and after is not None:
            changes.append(_diversity(measure, None, before, after, max_drop))
    for b, n in pairs:
        label = str(b["label"])
        for measure in DIVERSITY_MEASURES:
            if b.get(measure) is not None and n.get(measure) is not None:
                changes.append(_diversity(measure, label, b[measure], n[measure], max_drop))
        if b.get("verdict") != n.get("verdict"):
            changes.append(Change("verdict", label, b.get("verdict"), n.get("verdict")))

    notes = []
    for name in ("verdict", "guidance"):
        v_b = base[name] if name == "verdict" else base["guidance"]["verdict"]
        v_n = new[name] if name == "verdict" else new["guidance"]["verdict"]
        order = COLLAPSE_ORDER if name == "verdict" else GUIDANCE_ORDER
        if v_b not in order or v_n not in order:
            notes.append(f"{name} verdicts {v_b!r} and {v_n!r} cannot be ordered; not compared")
    have_lpips = [all(c.get("lpips") is not None for c in d["conditions"]) for d in (base, new)]
    if have_lpips[0] != have_lpips[1]:
        notes.append("LPIPS is in only one of the two scans; compared on pixel RMS alone")
    b_cfg, n_cfg = base.get("config") or {}, new.get("config") or {}
    for key in COMPARABLE_SETTINGS:
        if key in b_cfg and key in n_cfg and b_cfg[key] != n_cfg[key]:
            what = "thresholds differ" if key == "thresholds" else f"{key} {b_cfg[key]!r} vs {n_cfg[key]!r}"
            notes.append(f"settings differ ({what}): numbers may move for that reason alone")
    b_ck, n_ck = base.get("checkpoint") or {}, new.get("checkpoint") or {}
    if b_ck.get("content_hash") and b_ck.get("content_hash") == n_ck.get("content_hash"):
        notes.append("both scans are of the same checkpoint content (same content_hash)")

    info = {
        "path": base_path,
        "created": base.get("created"),
        "checkpoint": b_ck.get("path"),
        "content_hash": b_ck.get("content_hash"),
    }
    return Comparison(base=info, max_drop=float(max_drop), changes=changes, notes=notes)

