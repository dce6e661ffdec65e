"""One typed result: to_dict / from_dict round trips, the shipped JSON Schema, load_result, decided_by."""
import copy
import json

import pytest

from collapsecheck.config import make_config
from collapsecheck.errors import UsageError
from collapsecheck.result import (
    SCHEMA_PATH,
    SCHEMA_VERSION,
    Evidence,
    Gate,
    NullProbe,
    ScanResult,
    load_result,
    schema,
    schema_errors,
)
from collapsecheck.run import evaluate
from collapsecheck.thresholds import Thresholds
from collapsecheck.verdict import rules as V
from helpers_analytic import gaussian_setup


def _evaluate(sigma, null):
    denoiser, schedule, conds = gaussian_setup(sigma, classes=3, null=null)
    config = make_config(checkpoint="analytic", seeds=4, steps=8, lpips=False, posterior=False)
    return evaluate(denoiser, schedule, conds, config, {"source": "analytic", "model_class": "GaussianClasses",
                                                          "scheduler_source": "test"})


@pytest.fixture(scope="module")
def collapsed():
    return _evaluate(0.005, "arbitrary")


@pytest.fixture(scope="module")
def healthy():
    return _evaluate(0.4, "mixture")


def test_the_schema_is_shipped_with_the_package_and_names_its_version():
    assert SCHEMA_PATH.is_file() and SCHEMA_PATH.parent.name == "schema"
    assert SCHEMA_VERSION == "2.16"
    assert schema()["properties"]["schema_version"]["pattern"].startswith("^2")


def test_a_result_round_trips_and_validates(collapsed):
    data = json.loads(json.dumps(collapsed.to_dict()))
    assert schema_errors(data) == []
    back = ScanResult.from_dict(data)
    assert back == collapsed and back.samples is None
    assert isinstance(back.guidance.null_branch.probes[0], NullProbe)
    assert isinstance(back.conditions[0].decided_by[0], Evidence)


def test_the_round_trip_fails_when_a_field_is_altered(collapsed):
    data = collapsed.to_dict()
    data["conditions"][0]["decided_by"][0]["limit"] += 0.01
    assert ScanResult.from_dict(data) != collapsed
    data = collapsed.to_dict()
    data["guidance"]["null_branch"]["probes"][0]["hull_residual"] *= 2
    assert ScanResult.from_dict(data) != collapsed


@pytest.mark.parametrize("breaking, where", [
    (lambda d: d.pop("verdict"), "'verdict' is a required property"),
    (lambda d: d.update(verdict="great"), "verdict"),
    (lambda d: d["conditions"][0].update(colour="red"), "conditions.0"),
    (lambda d: d["conditions"][0]["decided_by"][0].update(op="<="), "conditions.0.decided_by.0.op"),
    (lambda d: d.update(gate={"fail_on": "sometimes", "passed": True}), "gate"),
    (lambda d: d["guidance"]["null_branch"]["probes"][0].pop("timestep"), "probes.0"),
    (lambda d: d.update(conditions=[]), "conditions"),
])
def test_the_schema_rejects_a_broken_document(collapsed, breaking, where):
    data = json.loads(json.dumps(collapsed.to_dict()))
    breaking(data)
    errors = schema_errors(data)
    assert errors and any(where in e for e in errors), errors


def test_from_dict_refuses_unknown_and_missing_fields(collapsed):
    data = collapsed.to_dict()
    with pytest.raises(ValueError, match="unknown field"):
        ScanResult.from_dict({**data, "extra": 1})
    del data["conditions"][0]["label"]
    with pytest.raises(ValueError, match="missing field"):
        ScanResult.from_dict(data)


def test_a_gate_writes_only_what_it_has():
    assert Gate("collapsed", True).to_dict() == {"fail_on": "collapsed", "passed": True, "checks": [], "failed": []}
    full = Gate("at_risk", False, verdict_passed=True, baseline_passed=False)
    assert Gate.from_dict(full.to_dict()) == full


def test_load_result_reads_what_scan_json_writes(tmp_path, collapsed, healthy):
    from collapsecheck.report.jsonfile import write_json

    for result in (collapsed, healthy):
        path = tmp_path / "scan.json"
        write_json(result, path)
        assert load_result(path) == result


@pytest.mark.parametrize("content, message", [
    ("{broken", "cannot be read as JSON"),
    ("[1, 2]", "not a collapsecheck scan JSON"),
    (None, "schema_version 1.1"),
    ("missing-verdict", "not a valid scan result: (top): 'verdict' is a required property"),
])
def test_load_result_says_in_one_line_what_is_wrong(tmp_path, collapsed, content, message):
    data = collapsed.to_dict()
    if content is None:
        content = json.dumps({**data, "schema_version": "1.1"})
    elif content == "missing-verdict":
        content = json.dumps({k: v for k, v in data.items() if k != "verdict"})
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(UsageError) as err:
        load_result(path)
    assert message in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(UsageError, match="does not exist"):
        load_result(tmp_path / "nope.json")


# ------------------------------------------------------------------------------------ decided_by


def test_a_low_seed_share_is_the_evidence_of_a_collapse():
    th = Thresholds()
    f = V.condition_collapse(0.5, 0.0, 0.048, None, th)
    assert f.verdict == "collapsed"
    assert f.evidence == (Evidence("seed_share", 0.048, "<", "collapsed_seed_share", th.collapsed_seed_share),)
    assert f.reasons == (f"seed share 0.048 < collapsed_seed_share {th.collapsed_seed_share:g}",)  # the reason text


def test_at_risk_evidence_names_the_at_risk_thresholds():
    th = Thresholds()
    f = V.condition_collapse(th.at_risk_rms - 0.01, 0.0, None, None, th)
    assert f.verdict == "at_risk"
    assert f.evidence == (Evidence("pixel_rms", th.at_risk_rms - 0.01, "<", "at_risk_rms", th.at_risk_rms),)


def test_nothing_crossed_means_no_evidence():
    th = Thresholds()
    assert V.condition_collapse(0.5, 0.0, 0.9, 0.5, th).evidence == ()
    learned = V.null_branch(V.NullTest(0.1, 0.0, 0.2, 32, 4), th)
    assert learned.verdict == "learned" and learned.evidence == ()
    assert V.guidance_verdict(learned, V.Steering(3.0, 0.5, 0.9, 0.05, 1.0), 1.0, th).evidence == ()  # steerable


def test_null_and_guidance_evidence():
    th = Thresholds()
    null = V.null_branch(V.NullTest(1.5, 1.25, 1.75, 32, 4), th)
    assert null.evidence == (Evidence("null_ratio_low", 1.25, ">=", "null_ratio_boundary", th.null_ratio_boundary),)
    flat = V.guidance_verdict(null, V.Steering(3.0, 0.5, 0.5, 0.05, 1.0), 1.0, th)
    assert flat.verdict == "not_steerable"  # adherence does not rise (the null branch alone decides nothing)
    assert flat.evidence == (Evidence("adherence_gain", 0.0, "<", "steer_weak_gain", th.steer_weak_gain),)
    weak = V.guidance_verdict(V.null_branch(None, th), None, th.steer_min_shift, th)
    assert weak.verdict == "weak"
    assert weak.evidence == (Evidence("max_shift", th.steer_min_shift, "<", "steer_weak_shift", th.steer_weak_shift),)
    overall = V.overall_collapse(["collapsed"] * 9 + ["healthy"], th)  # 0.9 >= overall_collapsed_fraction
    assert overall.evidence[0].measure == "collapsed_fraction" and overall.evidence[0].op == ">="


def test_a_scan_fills_decided_by_with_crossings_only(collapsed, healthy):
    assert collapsed.verdict == "collapsed" and collapsed.decided_by
    assert all(c.decided_by for c in collapsed.conditions)
    # the tiny decoder's null draws one image (null_spread) and explains its samples worse than a wrong condition
    assert {e.threshold for e in collapsed.guidance.null_branch.decided_by} == {"collapsed_seed_share",
                                                                               "null_ratio_boundary"}
    th = Thresholds()
    for e in [e for c in collapsed.conditions for e in c.decided_by] + collapsed.decided_by:
        assert (e.value < e.limit) if e.op == "<" else (e.value >= e.limit)
        assert hasattr(th, e.threshold)
    assert healthy.verdict == "healthy" and healthy.decided_by == []
    assert all(c.decided_by == [] for c in healthy.conditions) and healthy.guidance.decided_by == []


def test_the_conftest_check_catches_a_result_that_breaks_the_schema(collapsed):
    broken = copy.copy(collapsed)
    broken.verdict = "great"
    with pytest.raises(AssertionError, match="breaks the schema"):
        broken.to_dict()
