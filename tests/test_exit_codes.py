"""Exit codes end to end: the gate's axes (0/1), usage (2), a model that raises anywhere (3), out of memory (4),
a bug of collapsecheck (5); one line on stderr for every code but 5, which shows its traceback."""
import json
import xml.etree.ElementTree as ET

import pytest
import torch
from click.testing import CliRunner

import helpers_gate
from collapsecheck import errors, stages, units
from collapsecheck.cli import cli
from collapsecheck.measure import posterior
from collapsecheck.result import load_result
from collapsecheck.verdict import rules

FAST = ["--seeds", "8", "--steps", "20", "--no-lpips", "--no-posterior", "-q"]
HEALTHY_UNSTEERABLE = "helpers_gate:healthy_unsteerable"


@pytest.fixture
def ckpt(tmp_path):
    path = tmp_path / "weights.bin"  # the entry points ignore it; its name is the CHECKPOINT argument
    path.write_bytes(b"0")
    return path


@pytest.fixture(autouse=True)
def working_network():
    helpers_gate.FAULT["exc"] = None
    yield
    helpers_gate.FAULT["exc"] = None


def scan(ckpt, model, *args):
    return CliRunner().invoke(cli, ["scan", str(ckpt), "--model", model, *FAST, *map(str, args)])


def one_line(res) -> str:
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.output, res.output
    return lines[0]


# ------------------------------------------------------------------------------------------- the gate


def test_a_healthy_model_whose_guidance_does_not_steer_fails_only_the_axes_that_ask(ckpt, tmp_path):
    out, junit = tmp_path / "r.json", tmp_path / "j.xml"
    res = scan(ckpt, HEALTHY_UNSTEERABLE, "--fail-on", "collapsed,not_steerable", "--json", out, "--junit", junit)
    assert res.exit_code == 1, res.output
    data = json.loads(out.read_text())
    assert (data["verdict"], data["guidance"]["verdict"]) == ("healthy", "not_steerable")
    assert data["gate"]["failed"] == ["not_steerable"]
    assert [(c["axis"], c["failed"]) for c in data["gate"]["checks"]] == [("collapsed", False), ("not_steerable", True)]
    root = ET.parse(junit).getroot()
    gate_case = [c for c in root.iter("testcase") if c.get("name") == "gate"][0]
    assert "not_steerable: the guidance verdict is not_steerable" in gate_case.find("failure").get("message")
    props = {p.get("name"): p.get("value") for p in root.iter("property")}
    assert props["failed_axes"] == "not_steerable" and props["fail_on"] == "collapsed,not_steerable"

    assert scan(ckpt, HEALTHY_UNSTEERABLE, "--fail-on", "collapsed").exit_code == 0
    res = scan(ckpt, HEALTHY_UNSTEERABLE, "--fail-on", "null_not_learned,at_risk", "--json", out)
    assert res.exit_code == 1 and json.loads(out.read_text())["gate"]["failed"] == ["null_not_learned"]


def test_github_annotations_name_every_failed_axis(ckpt, tmp_path, monkeypatch):
    summary, outputs = tmp_path / "summary.md", tmp_path / "out.txt"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    monkeypatch.setenv("GITHUB_OUTPUT", str(outputs))
    res = scan(ckpt, HEALTHY_UNSTEERABLE, "--fail-on", "weak,null_not_learned")
    assert res.exit_code == 1, res.output
    gate = [ln for ln in res.stdout.splitlines() if "gate failed" in ln]
    assert len(gate) == 1 and gate[0].startswith("::error ")
    assert "failed on weak, null_not_learned" in gate[0]
    assert "`weak` (the guidance verdict is not_steerable)" in summary.read_text()
    assert "failed=weak,null_not_learned" in outputs.read_text().splitlines()


def test_max_regression_against_a_baseline(ckpt, tmp_path):
    base = tmp_path / "base.json"
    assert scan(ckpt, HEALTHY_UNSTEERABLE, "--json", base).exit_code == 0
    data = json.loads(base.read_text())
    for c in data["conditions"]:
        c["pixel_rms"] *= 1.5  # this scan's diversity is a third below the baseline's
    base.write_text(json.dumps(data))
    out = tmp_path / "r.json"
    res = scan(ckpt, HEALTHY_UNSTEERABLE, "--baseline", base, "--max-regression", 20, "--json", out)
    assert res.exit_code == 1, res.output
    gate = json.loads(out.read_text())["gate"]
    assert load_result(out).gate.failed == ["regression"]  # valid against the shipped schema (2.2)
    assert gate["failed"] == ["regression"] and gate["max_regression"] == 20 and gate["verdict_passed"] is True
    assert any("more than --max-regression 20%" in r for r in json.loads(out.read_text())["baseline"]["regressions"])
    assert scan(ckpt, HEALTHY_UNSTEERABLE, "--baseline", base, "--max-regression", 40).exit_code == 0
    assert scan(ckpt, HEALTHY_UNSTEERABLE, "--baseline", base, "--max-drop", 0.4).exit_code == 0  # the alias
    both = scan(ckpt, HEALTHY_UNSTEERABLE, "--baseline", base, "--max-drop", 0.4, "--max-regression", 40)
    assert both.exit_code == 2 and "not both" in one_line(both)
    assert "percentage" in one_line(scan(ckpt, HEALTHY_UNSTEERABLE, "--baseline", base, "--max-regression", 150))


def test_an_unknown_axis_is_a_usage_error_with_a_did_you_mean(ckpt):
    res = scan(ckpt, HEALTHY_UNSTEERABLE, "--fail-on", "collapsed,not_sterable")
    assert res.exit_code == 2 and "Did you mean 'not_steerable'" in one_line(res)
    res = scan(ckpt, HEALTHY_UNSTEERABLE, "--fail-on", "never,collapsed")
    assert res.exit_code == 2 and "cannot be combined" in one_line(res)


# ------------------------------------------------------------------------------ the model raising: 3


def test_a_latent_decoder_that_raises_exits_3_with_one_line(ckpt):
    res = scan(ckpt, "helpers_gate:decode_raises")
    assert res.exit_code == 3
    assert one_line(res) == ("error: the latent decoder failed while decoding the samples: "
                             "KeyError: 'decoder.up_blocks.0.resnets.0.conv1.weight'")


def _fail_inside(monkeypatch, owner, name, exc, call=1):
    """Make the network raise ``exc`` from the ``call``-th call of ``owner.name`` on."""
    original, calls = getattr(owner, name), []

    def wrapper(*args, **kwargs):
        calls.append(1)
        if len(calls) >= call:
            helpers_gate.FAULT["exc"] = exc
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, wrapper)


@pytest.mark.parametrize("owner, name, call, model, extra, stage", [
    (units, "sample_grid", 1, HEALTHY_UNSTEERABLE, [], "sampling"),  # the main grid, in units of conditions
    (stages, "probe_null_branch", 1, HEALTHY_UNSTEERABLE, [], "probing the null branch"),
    (posterior, "posterior_profile", 1, HEALTHY_UNSTEERABLE, ["--posterior"], "measuring the posterior variance"),
    (stages, "sample_grid", 1, "helpers_gate:collapsed", [], "sampling the recovery probes"),
])
def test_a_forward_that_raises_at_any_point_of_the_scan_exits_3(ckpt, monkeypatch, owner, name, call, model, extra,
                                                                 stage):
    _fail_inside(monkeypatch, owner, name, ZeroDivisionError("float division by zero"), call)
    res = scan(ckpt, model, *extra)
    assert res.exit_code == 3
    assert one_line(res) == f"error: the model failed while {stage}: ZeroDivisionError: float division by zero"


# ------------------------------------------------------------------------------- out of memory: 4


@pytest.mark.parametrize("exc", [
    torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    RuntimeError("CUDA out of memory. Tried to allocate 20.00 MiB (GPU 0; 79.15 GiB total capacity)"),
])
def test_out_of_memory_exits_4_naming_the_batch_size(ckpt, monkeypatch, exc):
    _fail_inside(monkeypatch, units, "sample_grid", exc)
    res = scan(ckpt, HEALTHY_UNSTEERABLE, "--batch-size", 64)
    assert res.exit_code == errors.EXIT_OUT_OF_MEMORY == 4
    line = one_line(res)  # every batch runs out: halved from 64 down to 1, which runs out too
    assert line.startswith("error: out of memory while sampling even at batch size 1 (halved from --batch-size 64)")
    assert "Tried to allocate" in line


def test_a_decoder_out_of_memory_exits_4(ckpt):
    res = scan(ckpt, "helpers_gate:decode_out_of_memory", "--batch-size", 16)
    assert res.exit_code == 4
    assert one_line(res).startswith("error: out of memory while decoding the samples even at batch size 1 "
                                    "(halved from --batch-size 16): try fewer --seeds")


def test_out_of_memory_outside_the_stages_still_exits_4(ckpt, monkeypatch):
    import collapsecheck.run as run

    def oom(*args, **kwargs):
        raise MemoryError()

    monkeypatch.setattr(run, "schedule_from_config", oom)
    res = scan(ckpt, HEALTHY_UNSTEERABLE)
    assert res.exit_code == 4 and "with --batch-size 256: try --batch-size 128" in one_line(res)


# ------------------------------------------------------------------------------- a bug of ours: 5


def test_an_internal_error_exits_5_with_its_traceback_and_where_to_report_it(ckpt, monkeypatch):
    def broken(*args, **kwargs):
        raise KeyError("eps_ratio")

    monkeypatch.setattr(rules, "guidance_verdict", broken)
    res = scan(ckpt, HEALTHY_UNSTEERABLE)
    assert res.exit_code == errors.EXIT_INTERNAL == 5
    assert "Traceback (most recent call last)" in res.output and "guidance_verdict" in res.output
    last = res.output.strip().splitlines()[-1]
    assert last.startswith("error: internal error: KeyError: 'eps_ratio'") and "please report it" in last


def test_the_library_raises_typed_errors_and_never_exits():
    assert issubclass(errors.ModelError, errors.LoadError) and errors.ModelError.exit_code == 3
    assert errors.OutOfMemory.exit_code == 4 and errors.InternalError.exit_code == 5
    assert errors.is_out_of_memory(RuntimeError("MPS backend out of memory"))
    assert not errors.is_out_of_memory(RuntimeError("shape mismatch"))
    assert errors.out_of_memory(MemoryError(), 1).batch_size == 1
