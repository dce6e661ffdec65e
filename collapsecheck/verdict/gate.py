"""The ``--fail-on`` gate: does a scan pass, and which axes failed? One rule for scan, compare, trend and
the CI renderers. Pure.

``fail_on`` is one or more axes, comma-separated (``collapsed,not_steerable``), or ``never``. Each axis is
a level on one verdict scale and fails when that verdict is at least this bad:

==================  =====================================================================
``collapsed``       the collapse verdict is ``collapsed``
``at_risk``         the collapse verdict is ``at_risk`` or ``collapsed``
``weak``            the guidance verdict is ``weak`` or ``not_steerable``
``not_steerable``   the guidance verdict is ``not_steerable``
``null_not_learned``  the null-branch verdict is ``not_learned`` (``unclear`` passes; a
                    guidance-distilled model's ``absent_by_design`` passes)
``relative_collapsed``  with ``--reference``: the verdict relative to the base model is ``collapsed``
                    (without a reference the axis reads no verdict and passes)
``relative_at_risk``  ... is ``at_risk`` or ``collapsed``
``never``           nothing fails (alone only)
==================  =====================================================================

The gate fails when any axis fails. With a baseline comparison (``--baseline``, ``compare``) it also
checks the axis ``regression``: seed diversity fell by more than ``--max-regression`` percent, or a
verdict got worse (unless ``never``). :class:`~collapsecheck.result.Gate` records every axis checked
and the failed ones.
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

from ..config import FAIL_ON
from ..errors import UsageError, check_choice
from ..result import Gate, GateCheck
from .rules import worse_or_equal

NEVER = "never"
#: the axis a baseline comparison adds
REGRESSION = "regression"
#: axis -> (the verdict it reads, the level at which it fails)
AXES = {
    "collapsed": ("collapse", "collapsed"),
    "at_risk": ("collapse", "at_risk"),
    "weak": ("guidance", "weak"),
    "not_steerable": ("guidance", "not_steerable"),
    "null_not_learned": ("null", "not_learned"),
    "relative_collapsed": ("relative", "collapsed"),
    "relative_at_risk": ("relative", "at_risk"),
}
#: what each verdict is called in a sentence
VERDICT_NAMES = {"collapse": "the collapse verdict", "guidance": "the guidance verdict", "null": "the null branch",
                 "relative": "the verdict relative to the --reference base model"}
FailOn = Union[str, Sequence[str]]


def parse_fail_on(fail_on: FailOn, flag: str = "--fail-on") -> tuple[str, ...]:
    """The axes of ``fail_on`` (``"collapsed,not_steerable"`` or a sequence), each checked, in order, once.
    Raises :class:`UsageError` (one line, with a "did you mean") on an unknown axis."""
    items = fail_on.split(",") if isinstance(fail_on, str) else list(fail_on)
    axes: list[str] = []
    for item in (str(i).strip() for i in items):
        if item and item not in axes:
            axes.append(check_choice(flag, item, FAIL_ON))
    if not axes:
        raise UsageError(f"{flag} needs at least one axis: {', '.join(FAIL_ON)}")
    if NEVER in axes and len(axes) > 1:
        raise UsageError(f"{flag} never passes everything: it cannot be combined with {','.join(a for a in axes if a != NEVER)}")
    return tuple(axes)


def check_fail_on(fail_on: FailOn) -> tuple[str, ...]:
    """:func:`parse_fail_on`: raise :class:`UsageError` unless every axis of ``fail_on`` is one of :data:`FAIL_ON`."""
    return parse_fail_on(fail_on)


def axis_fails(axis: str, verdict: Optional[str]) -> bool:
    """Does this one verdict fail this one axis? (a verdict on another scale than the axis never does)"""
    if axis not in AXES or verdict is None:
        return False
    scale, level = AXES[axis]
    return verdict == level if scale == "null" else worse_or_equal(verdict, level)


def verdict_fails(verdict: Optional[str], fail_on: FailOn) -> bool:
    """Does this one (collapse or guidance) verdict fail any axis of ``fail_on``? (per-condition verdicts, JUnit
    testcases; the relative axes read the --reference verdict, not these)"""
    axes = [axis for axis in parse_fail_on(fail_on) if AXES.get(axis, ("",))[0] != "relative"]
    return any(axis_fails(axis, verdict) for axis in axes)


def axis_check(axis: str, collapse: Optional[str], guidance: Optional[str], null: Optional[str],
               relative: Optional[str] = None) -> GateCheck:
    """The check of one axis against a scan's collapse, guidance, null-branch and relative (--reference) verdicts."""
    verdict = {"collapse": collapse, "guidance": guidance, "null": null, "relative": relative}[AXES[axis][0]]
    return GateCheck(axis=axis, failed=axis_fails(axis, verdict), verdict=verdict)


def verdicts_pass(collapse: str, guidance: str, fail_on: FailOn, null: Optional[str] = None) -> bool:
    """Do a scan's verdicts pass every axis of ``fail_on``?"""
    return not any(c.failed for c in verdict_checks(collapse, guidance, fail_on, null))


def verdict_checks(collapse: Optional[str], guidance: Optional[str], fail_on: FailOn,
                   null: Optional[str] = None, relative: Optional[str] = None) -> list[GateCheck]:
    """One check per axis of ``fail_on`` (none for ``never``)."""
    return [axis_check(a, collapse, guidance, null, relative) for a in parse_fail_on(fail_on) if a != NEVER]


def apply_gate(collapse: str, guidance: str, fail_on: FailOn, baseline_passed: Optional[bool] = None,
               null: Optional[str] = None, max_regression: Optional[float] = None,
               relative: Optional[str] = None) -> Gate:
    """The gate for a scan's verdicts and, when given, its baseline comparison's outcome."""
    axes = parse_fail_on(fail_on)
    checks = verdict_checks(collapse, guidance, axes, null, relative)
    verdict_passed = not any(c.failed for c in checks)
    never = axes == (NEVER,)
    if baseline_passed is not None and not never:
        checks.append(GateCheck(axis=REGRESSION, failed=not baseline_passed,
                                verdict="passed" if baseline_passed else "regressed"))
    failed = [c.axis for c in checks if c.failed]
    gate = Gate(fail_on=",".join(axes), passed=not failed, checks=checks, failed=failed)
    if baseline_passed is not None:
        gate.verdict_passed, gate.baseline_passed, gate.max_regression = verdict_passed, baseline_passed, max_regression
    return gate


def gate_result(result, fail_on: FailOn, baseline_passed: Optional[bool] = None,
                max_regression: Optional[float] = None) -> Gate:
    """:func:`apply_gate` for a ScanResult or its JSON dict."""
    if isinstance(result, dict):
        guidance = result.get("guidance") or {}
        null = (guidance.get("null_branch") or {}).get("verdict")
        relative = (result.get("reference") or {}).get("verdict")
        return apply_gate(result["verdict"], guidance.get("verdict"), fail_on, baseline_passed, null, max_regression,
                          relative)
    null = result.guidance.null_branch.verdict if result.guidance.null_branch else None
    relative = (getattr(result, "reference", None) or {}).get("verdict")
    return apply_gate(result.verdict, result.guidance.verdict, fail_on, baseline_passed, null, max_regression, relative)


def result_gate(result, fail_on: FailOn) -> Gate:
    """The gate of a result (or its dict) under ``fail_on``, its recorded baseline comparison included, as
    ``scan --baseline`` applies it: what JUnit and GitHub renderers show."""
    data = result if isinstance(result, dict) else result.to_dict()
    base = data.get("baseline")
    if not base:
        return gate_result(data, fail_on)
    return gate_result(data, fail_on, bool(base.get("passed")), base.get("max_regression"))


def failure_line(check: Union[GateCheck, dict], max_regression: Optional[float] = None) -> str:
    """Why one failed axis failed, one line: "not_steerable: the guidance verdict is not_steerable"."""
    check = GateCheck.from_dict(check) if isinstance(check, dict) else check
    if check.axis == REGRESSION:
        limit = f" by more than {max_regression:g}%" if max_regression is not None else ""
        return f"regression: seed diversity fell{limit} or a verdict got worse against the baseline"
    return f"{check.axis}: {VERDICT_NAMES[AXES[check.axis][0]]} is {check.verdict}"


def failure_lines(gate: Union[Gate, dict, None]) -> list[str]:
    """One line per failed axis of a gate (a Gate or its dict), in order; empty when it passed or is absent."""
    if not gate:
        return []
    if isinstance(gate, Gate):
        checks, limit = gate.checks, gate.max_regression
    else:
        checks, limit = [GateCheck.from_dict(c) for c in gate.get("checks") or []], gate.get("max_regression")
    return [failure_line(c, limit) for c in checks if c.failed]


def failed_axes_text(gate: Union[Gate, dict, None]) -> str:
    """``"collapsed, not_steerable"``: the failed axes of a gate, for one-line summaries ("" when none)."""
    if not gate:
        return ""
    return ", ".join(gate["failed"] if isinstance(gate, dict) else gate.failed)
