"""--profile: the stage timer (closed-form nesting with a fake clock), and a real scan's profile: present when
asked, absent otherwise, stages that add up to at most the total, NFE per stage adding up to the scan's NFE,
and the same numbers and verdicts as the scan without it. No timing assertions beyond sums."""
from __future__ import annotations

import json

import pytest

from collapsecheck import profile as P
from collapsecheck.result import ScanResult, TimeProfile, schema_errors


class FakeClock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_nested_stages_are_counted_apart_and_add_up_to_the_total(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(P.time, "perf_counter", clock)
    prof = P.Profiler()
    with P.profiling(prof):
        with P.stage("sampling") as rec:
            clock.t += 2.0
            with P.stage("eps statistics"):
                clock.t += 0.5
            with P.stage("null-branch probe") as inner:
                clock.t += 1.0
                inner.nfe += 30
            clock.t += 0.25
            rec.nfe += 400
        clock.t += 0.125  # in no stage
        with P.stage("sampling"):  # a stage run twice adds up
            clock.t += 1.0
    result = prof.result()
    got = {s.name: (s.seconds, s.nfe) for s in result.stages}
    assert got == {"sampling": (3.25, 400), "eps statistics": (0.5, 0), "null-branch probe": (1.0, 30)}
    assert [s.name for s in result.stages] == ["sampling", "eps statistics", "null-branch probe"]
    assert result.total_seconds == pytest.approx(4.875)
    assert result.other_seconds == pytest.approx(0.125)
    assert not result.synchronized
    assert TimeProfile.from_dict(result.to_dict()) == result


def test_a_stage_outside_profiling_records_nothing():
    with P.stage("load") as rec:
        rec.nfe += 5  # harmless
    assert P.active() is None
    prof = P.Profiler()
    with P.profiling(prof):
        assert P.active() is prof
    assert P.active() is None and prof.seconds == {}


def test_an_exception_still_closes_the_stage(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(P.time, "perf_counter", clock)
    prof = P.Profiler()
    with P.profiling(prof), pytest.raises(RuntimeError):
        with P.stage("outer"):
            with P.stage("inner"):
                clock.t += 1.0
                raise RuntimeError("model failed")
    assert prof.seconds == {"outer": 0.0, "inner": 1.0}
    assert prof._inner == []


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    """A small scan of examples/digits-healthy without and with --profile (CLI, JSON)."""
    from click.testing import CliRunner

    from collapsecheck.cli import cli

    out = tmp_path_factory.mktemp("profile")
    results = {}
    for name, extra in (("plain", []), ("profiled", ["--profile"])):
        path = out / f"{name}.json"
        res = CliRunner().invoke(cli, ["scan", "examples/digits-healthy", "--classes", "0,1", "--guidance", "0,1,3",
                                       "--no-lpips", "--no-recovery", "--no-posterior", "--seeds", "3", "--steps", "3",
                                       "--device", "cpu", "--json", str(path), *extra])
        assert res.exit_code == 0, res.output
        results[name] = (json.loads(path.read_text()), res.output)
    return results


def test_profile_is_recorded_only_when_asked_for(scans):
    plain, plain_out = scans["plain"]
    data, out = scans["profiled"]
    assert plain["profile"] is None and "Where the scan's time went" not in plain_out
    assert "Where the scan's time went" in out and "reports (written and printed)" in out
    assert not schema_errors(data)
    prof = ScanResult.from_dict(data).profile
    names = [s.name for s in prof.stages]
    for name in ("load", "sampling", "eps statistics", "null-branch probe", "measures", "verdicts"):
        assert name in names
    assert sum(s.seconds for s in prof.stages) <= prof.total_seconds + 1e-6
    assert prof.other_seconds >= 0 and prof.total_seconds == pytest.approx(data["seconds"], abs=1e-5)
    assert sum(s.nfe for s in prof.stages) == data["nfe"]  # every network evaluation in a stage that ran it


def test_profile_changes_no_number(scans):
    plain, profiled = scans["plain"][0], dict(scans["profiled"][0])
    for d in (plain, profiled):
        for key in ("seconds", "created", "profile", "config"):
            d.pop(key)
    assert plain == profiled
