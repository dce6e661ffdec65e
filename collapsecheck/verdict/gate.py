"""The ``--fail-on`` gate: does a scan pass? One rule for scan, compare, trend and the CI renderers. Pure.

``fail_on`` is a level on one of the verdict scales, or ``never``:

* ``collapsed``, ``at_risk``: the collapse verdict fails when it is at least this bad;
* ``not_steerable``: the guidance verdict fails when it is at least this bad;
* ``never``: nothing fails.

With a baseline comparison, the gate also fails when the comparison found a regression (unless ``never``).
"""
from __future__ import annotations

from typing import Optional

from ..config import FAIL_ON
from ..errors import check_choice
from ..result import Gate
from .rules import COLLAPSE_ORDER, GUIDANCE_ORDER, worse_or_equal

NEVER = "never"


def check_fail_on(fail_on: str) -> None:
    """Raise :class:`UsageError` unless ``fail_on`` is one of :data:`FAIL_ON`."""
    check_choice("--fail-on", fail_on, FAIL_ON)


def verdict_fails(verdict: Optional[str], fail_on: str) -> bool:
    """Does this one verdict fail under ``fail_on``? (a verdict on another scale than the level never does)"""
    return verdict is not None and fail_on != NEVER and worse_or_equal(verdict, fail_on)


def verdicts_pass(collapse: str, guidance: str, fail_on: str) -> bool:
    """Do a scan's collapse and guidance verdicts pass ``fail_on``? Each level answers to its own scale."""
    if fail_on == NEVER:
        return True
    if fail_on in GUIDANCE_ORDER:
        return not verdict_fails(guidance, fail_on)
    return not verdict_fails(collapse, fail_on)


def failing_scale(fail_on: str, passed: bool) -> Optional[str]:
    """The scale whose verdict failed the gate: "collapse", "guidance", or None when the gate passed."""
    if passed or fail_on == NEVER:
        return None
    return "guidance" if fail_on in GUIDANCE_ORDER else "collapse" if fail_on in COLLAPSE_ORDER else None


def gate_failed(fail_on: str, passed: bool) -> bool:
    """Did the gate fail? (a gate of ``never`` never does)"""
    return not passed and fail_on != NEVER


def regressions_fail(has_regressions: bool, fail_on: str) -> bool:
    """Do a baseline comparison's regressions fail the gate? (always, unless ``never``)"""
    return has_regressions and fail_on != NEVER


def apply_gate(collapse: str, guidance: str, fail_on: str, baseline_passed: Optional[bool] = None) -> Gate:
    """The gate for a scan's verdicts and, when given, its baseline comparison's outcome."""
    verdict_passed = verdicts_pass(collapse, guidance, fail_on)
    if baseline_passed is None:
        return Gate(fail_on=fail_on, passed=verdict_passed)
    passed = fail_on == NEVER or (verdict_passed and baseline_passed)
    return Gate(fail_on=fail_on, passed=passed, verdict_passed=verdict_passed, baseline_passed=baseline_passed)


def gate_result(result, fail_on: str, baseline_passed: Optional[bool] = None) -> Gate:
    """:func:`apply_gate` for a ScanResult or its JSON dict."""
    if isinstance(result, dict):
        return apply_gate(result["verdict"], result["guidance"]["verdict"], fail_on, baseline_passed)
    return apply_gate(result.verdict, result.guidance.verdict, fail_on, baseline_passed)
