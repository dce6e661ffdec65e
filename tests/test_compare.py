"""The regression gate: compare two scans (pure functions on dicts, the compare command, scan --baseline)."""
import json

import pytest
from click.testing import CliRunner
from diffusers import DDIMScheduler

from collapsecheck.cli import cli
from collapsecheck.verdict.compare import compare, load_result, relative_change
from collapsecheck.verdict.gate import verdicts_pass as gate_passes
from collapsecheck.errors import UsageError
from helpers_models import tiny_class_unet


def scan_dict(rms=(0.4, 0.5, 0.6), lpips=None, verdict="healthy", guidance="steerable", labels=None):
    labels = labels or [f"class {i}" for i in range(len(rms))]
    return {
        "schema_version": "2.0",
        "verdict": verdict,
        "guidance": {"verdict": guidance, "reasons": [], "null_branch": {"verdict": "learned"}},
        "conditions": [
            {"label": label, "verdict": "healthy", "pixel_rms": r, "lpips": None if lpips is None else lpips[i]}
            for i, (label, r) in enumerate(zip(labels, rms))
        ],
        "config": {"seeds": 16, "steps": 25},
        "checkpoint": {"path": "ckpt", "content_hash": "abc"},
        "created": "2024-01-01T00:00:00+00:00",
    }


def test_a_diversity_drop_beyond_max_drop_is_a_regression():
    result = compare(scan_dict(), scan_dict(rms=(0.4, 0.2, 0.6)), max_drop=0.2)
    assert not result.passed
    assert result.regressions == ["class 1: pixel_rms fell 60% (0.5 -> 0.2), more than --max-regression 20%"]
    mean = [c for c in result.changes if c.measure == "pixel_rms" and c.condition is None][0]
    assert mean.before == pytest.approx(0.5) and mean.after == pytest.approx(0.4) and not mean.regressed


def test_a_uniform_fall_fails_every_condition_and_the_mean():
    result = compare(scan_dict(), scan_dict(rms=(0.2, 0.25, 0.3)), max_drop=0.2)
    assert [r.split(":")[0] for r in result.regressions] == ["mean over conditions", "class 0", "class 1", "class 2"]


def test_small_drops_and_gains_pass():
    result = compare(scan_dict(), scan_dict(rms=(0.36, 0.55, 0.9)), max_drop=0.2)
    assert result.passed and result.regressions == []


def test_a_worse_verdict_is_a_regression_even_without_a_drop():
    result = compare(scan_dict(), scan_dict(verdict="at_risk"))
    assert result.regressions == ["collapse verdict got worse: healthy -> at_risk"]
    result = compare(scan_dict(guidance="weak"), scan_dict(guidance="not_steerable"))
    assert result.regressions == ["guidance verdict got worse: weak -> not_steerable"]
    assert compare(scan_dict(verdict="collapsed"), scan_dict(verdict="at_risk")).passed  # better is fine


def test_lpips_is_compared_only_when_both_have_it():
    with_lpips = scan_dict(lpips=(0.3, 0.3, 0.3))
    fell = scan_dict(lpips=(0.3, 0.1, 0.3))
    assert any("lpips fell" in r for r in compare(with_lpips, fell).regressions)
    result = compare(with_lpips, scan_dict())
    assert result.passed and any("LPIPS is in only one" in n for n in result.notes)


def test_conditions_that_do_not_match_are_refused_and_named():
    with pytest.raises(UsageError) as err:
        compare(scan_dict(), scan_dict(labels=["class 0", "class 1", "class 7"]), base_name="a.json", new_name="b.json")
    message = str(err.value)
    assert "a.json and b.json scanned different conditions" in message
    assert "only in a.json: class 2" in message and "only in b.json: class 7" in message
    with pytest.raises(UsageError, match="3 vs 2"):
        compare(scan_dict(), scan_dict(rms=(0.4, 0.5)))


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.pop("schema_version"), "no schema_version"),
    (lambda d: d.update(schema_version="1.1"), "schema_version 1.1"),
    (lambda d: d.pop("conditions"), "lacks conditions"),
])
def test_bad_schemas_are_usage_errors(mutate, message):
    bad = scan_dict()
    mutate(bad)
    with pytest.raises(UsageError, match=message):
        compare(scan_dict(), bad)


def test_settings_differences_are_noted():
    new = scan_dict()
    new["config"]["steps"] = 3
    assert any("steps 25 vs 3" in n for n in compare(scan_dict(), new).notes)


def test_max_drop_must_be_a_fraction():
    with pytest.raises(UsageError, match="fraction"):
        compare(scan_dict(), scan_dict(), max_drop=20)


def test_helpers():
    assert relative_change(0.5, 0.25) == -0.5 and relative_change(0, 1) is None and relative_change(None, 1) is None
    assert not gate_passes("collapsed", "steerable", "collapsed") and gate_passes("at_risk", "steerable", "collapsed")
    assert not gate_passes("healthy", "not_steerable", "not_steerable") and gate_passes("collapsed", "weak", "never")


# ------------------------------------------------------------------------------------ compare command


def _write(path, data):
    path.write_text(json.dumps(data))
    return str(path)


def invoke(*args):
    return CliRunner().invoke(cli, ["compare", *map(str, args)])


def test_compare_command_passes_and_fails(tmp_path):
    base = _write(tmp_path / "base.json", scan_dict())
    same = _write(tmp_path / "same.json", scan_dict(rms=(0.39, 0.5, 0.61)))
    worse = _write(tmp_path / "worse.json", scan_dict(rms=(0.1, 0.5, 0.6)))
    ok = invoke(base, same)
    assert ok.exit_code == 0, ok.output
    assert "before" in ok.output and "after" in ok.output and "gate: pass" in " ".join(ok.output.split())
    bad = invoke(base, worse, "--json", tmp_path / "c.json")
    assert bad.exit_code == 1, bad.output
    assert "class 0: pixel_rms fell 75%" in " ".join(bad.output.split())
    record = json.loads((tmp_path / "c.json").read_text())
    assert record["passed"] is False and record["gate"]["passed"] is False and record["new"] == worse
    assert invoke(base, worse, "--max-drop", "0.8").exit_code == 0
    assert invoke(base, worse, "--max-regression", "80").exit_code == 0
    assert invoke(base, worse, "--max-regression", "50", "--json", tmp_path / "c.json").exit_code == 1
    record = json.loads((tmp_path / "c.json").read_text())
    assert record["gate"]["failed"] == ["regression"] and record["gate"]["max_regression"] == 50
    assert record["max_regression"] == 50 and record["max_drop"] == 0.5
    assert invoke(base, worse, "--fail-on", "never").exit_code == 0


def test_compare_command_applies_fail_on_to_the_new_scan(tmp_path):
    base = _write(tmp_path / "base.json", scan_dict(verdict="collapsed"))
    new = _write(tmp_path / "new.json", scan_dict(verdict="collapsed"))
    res = invoke(base, new)
    assert res.exit_code == 1 and "fails" in res.output  # no regression, but NEW is collapsed
    assert invoke(base, new, "--fail-on", "not_steerable").exit_code == 0


@pytest.mark.parametrize("content, message", [
    ("{not json", "cannot be read as JSON"),
    (json.dumps({"verdict": "healthy"}), "no schema_version"),
    (json.dumps({**scan_dict(), "schema_version": "0.9"}), "schema_version 0.9"),
    (json.dumps(scan_dict(labels=["a", "b", "c"])), "scanned different conditions"),
])
def test_compare_command_bad_input_exits_2_with_one_line(tmp_path, content, message):
    base = _write(tmp_path / "base.json", scan_dict())
    (tmp_path / "new.json").write_text(content)
    res = invoke(base, tmp_path / "new.json")
    assert res.exit_code == 2, res.output
    assert message in res.output and res.output.strip().count("\n") == 0


def test_compare_command_missing_file(tmp_path):
    res = invoke(tmp_path / "nope.json", tmp_path / "nope2.json")
    assert res.exit_code == 2 and "does not exist" in res.output


# ------------------------------------------------------------------------------------ scan --baseline


def test_scan_with_a_baseline_gates_on_the_comparison(tmp_path):
    tiny_class_unet(num_classes=2).save_pretrained(tmp_path / "m" / "unet")
    DDIMScheduler().save_pretrained(tmp_path / "m" / "scheduler")
    # a baseline far more diverse than any real scan: every condition "fell"
    base = _write(tmp_path / "base.json", scan_dict(rms=(50.0, 50.0)))
    out = tmp_path / "r.json"
    res = CliRunner().invoke(cli, ["scan", str(tmp_path / "m"), "--seeds", "2", "--steps", "1", "--guidance", "1",
                                   "--no-lpips", "--baseline", base, "--json", str(out)])
    assert res.exit_code == 1, res.output
    data = json.loads(out.read_text())
    assert data["baseline"]["passed"] is False and data["baseline"]["path"] == base
    assert len(data["baseline"]["regressions"]) >= 2
    assert data["gate"]["baseline_passed"] is False and data["gate"]["passed"] is False
    assert data["gate"]["verdict_passed"] == (data["verdict"] != "collapsed")
    assert "Compared with the baseline" in " ".join(res.output.split())
    # the scan's own JSON is a valid baseline for the next scan
    assert load_result(out)["baseline"]["max_drop"] == 0.2


def test_scan_baseline_problems_are_found_before_the_scan(tmp_path):
    (tmp_path / "b.json").write_text("[]")
    res = CliRunner().invoke(cli, ["scan", str(tmp_path), "--baseline", str(tmp_path / "b.json")])
    assert res.exit_code == 2 and "not a collapsecheck scan result" in res.output
    res = CliRunner().invoke(cli, ["scan", str(tmp_path), "--baseline", _write(tmp_path / "c.json", scan_dict()),
                                   "--max-drop", "1.5"])
    assert res.exit_code == 2 and "--max-drop" in res.output
