"""The one --fail-on gate (verdict/gate.py): the same answers for scan, compare, trend, JUnit and GitHub."""
import pytest

from collapsecheck.errors import UsageError
from collapsecheck.result import Gate, GateCheck, ScanResult
from collapsecheck.verdict.gate import (
    FAIL_ON,
    apply_gate,
    check_fail_on,
    failure_lines,
    gate_result,
    parse_fail_on,
    result_gate,
    verdict_fails,
    verdicts_pass,
)


@pytest.mark.parametrize("collapse, guidance, fail_on, passed", [
    ("healthy", "steerable", "collapsed", True),
    ("at_risk", "not_steerable", "collapsed", True),  # a collapse level ignores the guidance verdict
    ("collapsed", "steerable", "collapsed", False),
    ("at_risk", "steerable", "at_risk", False),
    ("healthy", "weak", "at_risk", True),
    ("collapsed", "weak", "not_steerable", True),  # a guidance level ignores the collapse verdict
    ("healthy", "not_steerable", "not_steerable", False),
    ("healthy", "weak", "weak", False),
    ("healthy", "steerable", "weak", True),
    ("collapsed", "not_steerable", "never", True),
])
def test_each_level_answers_to_its_own_scale(collapse, guidance, fail_on, passed):
    assert verdicts_pass(collapse, guidance, fail_on) is passed
    gate = apply_gate(collapse, guidance, fail_on)
    assert gate.passed is passed and gate.fail_on == fail_on
    assert gate.failed == ([] if passed else [fail_on])
    verdict = guidance if fail_on in ("weak", "not_steerable") else collapse
    assert gate.checks == ([] if fail_on == "never" else [GateCheck(fail_on, not passed, verdict)])
    assert gate_result({"verdict": collapse, "guidance": {"verdict": guidance}}, fail_on) == gate


def test_several_axes_fail_together_and_each_is_recorded():
    gate = apply_gate("at_risk", "not_steerable", "collapsed,not_steerable,null_not_learned", null="not_learned")
    assert not gate.passed
    assert [(c.axis, c.failed, c.verdict) for c in gate.checks] == [
        ("collapsed", False, "at_risk"), ("not_steerable", True, "not_steerable"),
        ("null_not_learned", True, "not_learned")]
    assert gate.failed == ["not_steerable", "null_not_learned"]
    assert failure_lines(gate) == ["not_steerable: the guidance verdict is not_steerable",
                                   "null_not_learned: the null branch is not_learned"]
    assert Gate.from_dict(gate.to_dict()) == gate
    # the same verdicts pass when only collapse is gated
    assert apply_gate("at_risk", "not_steerable", "collapsed", null="not_learned").passed


@pytest.mark.parametrize("null, failed", [("not_learned", True), ("unclear", False), ("learned", False),
                                          ("absent_by_design", False), (None, False)])
def test_null_not_learned_reads_the_null_branch_alone(null, failed):
    gate = apply_gate("healthy", "steerable", "null_not_learned", null=null)
    assert gate.passed is not failed and gate.checks == [GateCheck("null_not_learned", failed, null)]


@pytest.mark.parametrize("verdicts_ok, baseline_ok, fail_on, passed", [
    (True, True, "collapsed", True),
    (True, False, "collapsed", False),
    (False, True, "collapsed", False),
    (True, False, "never", True),
])
def test_a_baseline_regression_fails_the_gate_unless_never(verdicts_ok, baseline_ok, fail_on, passed):
    collapse = "healthy" if verdicts_ok else "collapsed"
    gate = apply_gate(collapse, "steerable", fail_on, baseline_passed=baseline_ok, max_regression=15.0)
    assert gate.passed is passed
    d = gate.to_dict()
    assert (d["verdict_passed"], d["baseline_passed"], d["max_regression"]) == (verdicts_ok or fail_on == "never",
                                                                                baseline_ok, 15.0)
    assert ("regression" in gate.failed) is (not baseline_ok and fail_on != "never")
    if fail_on != "never":
        assert gate.checks[-1] == GateCheck("regression", not baseline_ok, "passed" if baseline_ok else "regressed")
    if not baseline_ok and fail_on != "never":
        assert "by more than 15%" in failure_lines(d)[-1]


def test_result_gate_reads_the_recorded_baseline():
    data = {"verdict": "healthy", "guidance": {"verdict": "steerable"},
            "baseline": {"passed": False, "max_regression": 10.0}}
    assert result_gate(data, "collapsed").failed == ["regression"]
    assert result_gate({**data, "baseline": None}, "collapsed").passed


def test_fail_on_parsing():
    assert parse_fail_on("collapsed, not_steerable,collapsed") == ("collapsed", "not_steerable")
    assert parse_fail_on(["at_risk", "weak"]) == ("at_risk", "weak")
    assert set(FAIL_ON) == {"collapsed", "at_risk", "weak", "not_steerable", "null_not_learned", "relative_collapsed",
                            "relative_at_risk", "never"}
    check_fail_on("at_risk")
    with pytest.raises(UsageError, match="Did you mean 'not_steerable'"):
        check_fail_on("collapsed,not_sterable")
    with pytest.raises(UsageError, match="cannot be combined"):
        parse_fail_on("never,collapsed")
    with pytest.raises(UsageError, match="at least one axis"):
        parse_fail_on(" , ")


def test_single_verdicts():
    assert verdict_fails("collapsed", "at_risk") and not verdict_fails("at_risk", "collapsed")
    assert not verdict_fails("not_steerable", "collapsed")  # another scale never fails
    assert verdict_fails("at_risk", "collapsed,at_risk") and verdict_fails("weak", "collapsed,weak")
    assert not verdict_fails(None, "collapsed") and not verdict_fails("collapsed", "never")


def test_an_old_gate_without_checks_still_loads():
    """schema 2.0 gates had no checks or failed fields: they read back with empty lists."""
    gate = Gate.from_dict({"fail_on": "collapsed", "passed": True})
    assert gate.checks == [] and gate.failed == [] and ScanResult.__dataclass_fields__["gate"]
