"""The one --fail-on gate (verdict/gate.py): the same answers for scan, compare, trend, JUnit and GitHub."""
import pytest

from collapsecheck.errors import UsageError
from collapsecheck.result import Gate
from collapsecheck.verdict.gate import (
    FAIL_ON,
    apply_gate,
    check_fail_on,
    failing_scale,
    gate_failed,
    gate_result,
    regressions_fail,
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
    ("collapsed", "not_steerable", "never", True),
])
def test_each_level_answers_to_its_own_scale(collapse, guidance, fail_on, passed):
    assert verdicts_pass(collapse, guidance, fail_on) is passed
    gate = apply_gate(collapse, guidance, fail_on)
    assert gate == Gate(fail_on, passed) and gate.to_dict() == {"fail_on": fail_on, "passed": passed}
    assert gate_result({"verdict": collapse, "guidance": {"verdict": guidance}}, fail_on) == gate
    assert failing_scale(fail_on, passed) == (None if passed else "guidance" if fail_on == "not_steerable" else "collapse")
    assert gate_failed(fail_on, passed) is (not passed)


@pytest.mark.parametrize("verdicts_ok, baseline_ok, fail_on, passed", [
    (True, True, "collapsed", True),
    (True, False, "collapsed", False),
    (False, True, "collapsed", False),
    (True, False, "never", True),
])
def test_a_baseline_regression_fails_the_gate_unless_never(verdicts_ok, baseline_ok, fail_on, passed):
    collapse = "healthy" if verdicts_ok else "collapsed"
    gate = apply_gate(collapse, "steerable", fail_on, baseline_passed=baseline_ok)
    assert gate.passed is passed
    assert gate.to_dict() == {"fail_on": fail_on, "passed": passed, "verdict_passed": verdicts_ok or fail_on == "never",
                              "baseline_passed": baseline_ok}
    assert regressions_fail(not baseline_ok, fail_on) is (not baseline_ok and fail_on != "never")


def test_single_verdicts_and_unknown_levels():
    assert verdict_fails("collapsed", "at_risk") and not verdict_fails("at_risk", "collapsed")
    assert not verdict_fails("not_steerable", "collapsed")  # another scale never fails
    assert not verdict_fails(None, "collapsed") and not verdict_fails("collapsed", "never")
    assert set(FAIL_ON) == {"collapsed", "at_risk", "not_steerable", "never"}
    check_fail_on("at_risk")
    with pytest.raises(UsageError, match="--fail-on"):
        check_fail_on("sometimes")
