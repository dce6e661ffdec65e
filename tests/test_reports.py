"""Report renderers: the report folder (contact sheet, plots, Markdown, HTML), JUnit XML and GitHub Actions.

One real scan of a tiny model runs through the CLI with every output switched on; the other tests
read its files back, or render synthetic results (no torch work).
"""
import copy
import json
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner
from diffusers import DDIMScheduler
from PIL import Image

from collapsecheck import run as scanner
from collapsecheck.cli import cli
from collapsecheck.report.folder import FILES, report_files, write_files_atomically
from collapsecheck.report.github import annotations, escape_data, outputs
from collapsecheck.report.images import contact_sheet, panel_order, to_uint8
from collapsecheck.report.junit import to_junit
from collapsecheck.report.markdown import summary_markdown
from collapsecheck.report.plots import posterior_chart, trend_chart
from collapsecheck.report.style import LEVEL_COLOURS, hex_to_rgb
from collapsecheck.result import PosteriorPoint
from collapsecheck.thresholds import Thresholds
from helpers_models import tiny_class_unet

SCAN = ["--seeds", "3", "--steps", "2", "--guidance", "0,1", "--no-lpips", "-q"]
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One scan with --report-dir, --junit, --json and GitHub Actions outputs; the ScanResult is captured."""
    root = tmp_path_factory.mktemp("reports")
    model = root / "model"
    tiny_class_unet(num_classes=3).save_pretrained(model / "unet")
    DDIMScheduler().save_pretrained(model / "scheduler")
    report = root / "report"
    report.mkdir()
    (report / "keep.txt").write_text("not ours")  # the folder may exist; other files are left alone
    summary, output = root / "step_summary.md", root / "github_output.txt"
    captured = []

    def capturing(config, progress=None):
        captured.append(real(config, progress))
        return captured[-1]

    real = scanner.scan
    env = {"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary), "GITHUB_OUTPUT": str(output)}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(scanner, "scan", capturing)
        res = CliRunner().invoke(cli, ["scan", str(model), *SCAN, "--report-dir", str(report), "--junit",
                                       str(root / "junit.xml"), "--json", str(root / "scan.json"),
                                       "--fail-on", "not_steerable"], env=env)
    assert len(captured) == 1, res.output
    return SimpleNamespace(root=root, report=report, res=res, result=captured[0], summary=summary, output=output)


# ------------------------------------------------------------------------------------ report folder


def test_report_folder_holds_every_file_and_nothing_half_written(run):
    assert run.res.exit_code in (0, 1), run.res.output
    names = {p.name for p in run.report.iterdir()}
    expected = {FILES[k] for k in ("html", "markdown", "json", "contact_sheet", "guidance", "eps_profile")}
    assert expected <= names and "keep.txt" in names
    assert (FILES["posterior"] in names) == bool(run.result.posterior_profile)  # drawn when measured
    assert not [p for p in run.root.iterdir() if p.name.startswith(".report.")]  # no temporary folder left
    assert (run.report / "scan.json").read_text() == (run.root / "scan.json").read_text()


def test_contact_sheet_has_a_row_per_condition_a_column_per_seed_and_the_samples(run):
    result = run.result
    W, C, S = result.samples.shape[:3]
    sheet = Image.open(run.report / FILES["contact_sheet"]).convert("RGB")
    expected, layout = contact_sheet(result)
    assert sheet.size == expected.size
    assert len(layout.panels) == W == len(result.guidance.sweep[:W])
    assert layout.rows == list(range(C)) and layout.seeds == result.seeds and len(layout.seeds) == S
    assert layout.panels[0]["w"] == result.verdict_guidance_scale  # the verdict's panel comes first
    assert layout.scale == int(layout.scale) and layout.cell_height == 8 * layout.scale  # 8x8 enlarged, not blurred
    pixels = np.asarray(sheet)
    truth = to_uint8(result.samples)
    for p, panel in enumerate(layout.panels):
        for r in range(C):
            for s in range(S):
                left, top, right, bottom = layout.cell_box(p, r, s)
                cell = pixels[top:bottom, left:right]
                k = int(layout.scale)
                want = np.repeat(np.repeat(truth[panel["sweep_index"], r, s, 0], k, 0), k, 1)
                assert (cell == want[..., None]).all(), (p, r, s)
    # neighbouring seeds differ (a random model is diverse), so the cells are not one repeated tile
    a = pixels[slice(*layout.cell_box(0, 0, 0)[1::2]), slice(*layout.cell_box(0, 0, 0)[0::2])]
    b = pixels[slice(*layout.cell_box(0, 0, 1)[1::2]), slice(*layout.cell_box(0, 0, 1)[0::2])]
    assert not (a == b).all()


def test_plots_are_readable_pngs_with_content(run):
    for kind in ("guidance", "eps_profile"):
        img = Image.open(run.report / FILES[kind]).convert("RGB")
        assert 800 <= img.width <= 1400 and img.height < img.width * 1.2  # reads at screen size
        arr = np.asarray(img)
        assert (arr < 100).any() and (arr == 255).all(-1).mean() > 0.5  # ink on a white page
        colours = {tuple(c) for c in arr.reshape(-1, 3)[::7]}
        assert len(colours) > 10  # lines, text and grid, not a flat image


def test_markdown_leads_with_the_verdict_and_states_the_truth(run):
    text = (run.report / FILES["markdown"]).read_text()
    data = json.loads((run.root / "scan.json").read_text())
    assert text.startswith(f"# collapsecheck: {data['verdict'].replace('_', ' ')}")
    assert text.index("## Why") < text.index("## What to do") < text.index("## Numbers") < text.index("## Notes")
    assert "LPIPS unavailable: disabled with --no-lpips" in text
    assert "higher = more diverse" in text and "gate `--fail-on not_steerable`" in text
    for name in re.findall(r"\]\(([^)]+\.png)\)", text):
        assert (run.report / name).is_file()


def test_html_is_self_contained(run):
    page = (run.report / FILES["html"]).read_text()
    data = json.loads((run.root / "scan.json").read_text())
    assert f"collapsecheck: {data['verdict'].replace('_', ' ')}" in page
    assert data["guidance"]["verdict"].replace("_", " ") in page
    assert page.count("data:image/png;base64,") == 3 + bool(run.result.posterior_profile)
    assert not re.search(r"https?://", page) and "//" not in re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", page)
    assert not re.search(r"<(script|link|iframe)", page)
    assert all(src.startswith("data:") for src in re.findall(r'src="([^"]*)"', page))


def test_html_renders_in_a_headless_browser(run, tmp_path):
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing; .ci/run installs it (apt-get install chromium)")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    shot = tmp_path / "page.png"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1200,2000",
           (run.report / FILES["html"]).as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert shot.is_file(), proc.stderr[-2000:]
    img = np.asarray(Image.open(shot).convert("RGB"))
    assert img.shape[:2] == (2000, 1200)
    assert (img < 80).all(-1).mean() > 0.002  # text
    badges = [hex_to_rgb(c) for c in LEVEL_COLOURS.values()]  # the one verdict colour mapping, report/style.py
    assert sum((img == c).all(-1).sum() for c in badges) > 3 * 2000  # the three verdict badges are painted
    assert len({tuple(c) for c in img.reshape(-1, 3)[::13]}) > 50  # images and text, not a blank page
    keep = os.environ.get("COLLAPSECHECK_KEEP_SCREENSHOT")
    if keep:
        shutil.copy(shot, keep)


def test_failed_scan_writes_no_report_folder(tmp_path):
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    res = CliRunner().invoke(cli, ["scan", str(bad), *SCAN, "--report-dir", str(tmp_path / "r"), "--junit", str(tmp_path / "j.xml")])
    assert res.exit_code == 3, res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]


@pytest.mark.parametrize("args, message", [
    (["--report-dir", "{file}/r"], "is a file, not a folder"),
    (["--junit", "{file}/sub/j.xml"], "is a file, not a folder"),
])
def test_unwritable_outputs_fail_before_the_scan(tmp_path, args, message):
    (tmp_path / "file").write_text("x")  # missing folders are made, but not below a file
    res = CliRunner().invoke(cli, ["scan", str(tmp_path), *SCAN, *(a.format(file=tmp_path / "file") for a in args)])
    assert res.exit_code == 2 and message in res.output


def test_report_file_given_as_report_dir_is_a_usage_error(tmp_path):
    (tmp_path / "f").write_text("x")
    res = CliRunner().invoke(cli, ["scan", str(tmp_path), *SCAN, "--report-dir", str(tmp_path / "f")])
    assert res.exit_code == 2 and "give a folder" in res.output


def test_atomic_folder_write_leaves_nothing_when_a_file_fails(tmp_path):
    files = {"a.txt": "a", "b.png": b"b", "c/d.txt": "cannot: no such subfolder"}
    with pytest.raises(OSError):
        write_files_atomically(tmp_path / "out", files)
    assert list(tmp_path.iterdir()) == []


def test_posterior_profile_is_plotted_when_present(run):
    result = copy.copy(run.result)
    result.posterior_profile = [PosteriorPoint(timestep=t, alpha_bar=a, posterior_var=v, x0hat_var=v, variance_share=s)
                                for t, a, v, s in [(800, 0.1, 0.6, 0.9), (500, 0.4, 0.3, 0.7), (200, 0.8, 0.05, 0.5)]]
    files = report_files(result)
    assert FILES["posterior"] in files
    img = Image.open(__import__("io").BytesIO(files[FILES["posterior"]]))
    assert img.width >= 800 and len({tuple(c) for c in np.asarray(img.convert("RGB")).reshape(-1, 3)[::7]}) > 10
    assert files[FILES["html"]].count("data:image/png;base64,") == 4
    assert posterior_chart([]) is None and posterior_chart(None) is None


# ------------------------------------------------------------------------------ synthetic sheets


def _fake(samples, ws=(0.0, 1.0), verdicts=None, rms=None):
    W, C, S = samples.shape[:3]
    verdicts = verdicts or ["healthy"] * C
    rms = rms or [0.5] * C
    return SimpleNamespace(
        samples=samples, verdict="healthy", verdict_guidance_scale=1.0, seeds=list(range(S)),
        guidance=SimpleNamespace(verdict="steerable", null_branch=SimpleNamespace(verdict="learned"),
                                 sweep=[SimpleNamespace(w=w) for w in ws]),
        conditions=[SimpleNamespace(label=f"c{c}", verdict=verdicts[c], pixel_rms=rms[c]) for c in range(C)],
    )


def test_rgb_samples_are_shown_in_colour_and_enlarged_by_an_integer():
    rng = np.random.default_rng(0)
    samples = rng.uniform(-1, 1, (2, 2, 3, 3, 20, 20)).astype(np.float32)
    img, layout = contact_sheet(_fake(samples))
    assert layout.scale == int(layout.scale) > 1
    box = layout.cell_box(1, 1, 2)  # panel 1 is w = 0 (the verdict scale w = 1 is first)
    assert layout.panels[1]["w"] == 0.0
    cell = np.asarray(img.crop(box))
    want = to_uint8(samples[0, 1, 2]).transpose(1, 2, 0)
    k = int(layout.scale)
    assert (cell[::k, ::k] == want).all()


def test_large_samples_are_shrunk_and_many_conditions_capped_to_the_least_diverse():
    samples = np.zeros((1, 40, 2, 1, 300, 300), dtype=np.float32)
    rms = [float(c) for c in range(40)]
    img, layout = contact_sheet(_fake(samples, ws=(1.0,), rms=rms), max_rows=5)
    assert layout.rows == [0, 1, 2, 3, 4]
    assert layout.cell_height <= 128 and layout.scale < 1
    assert any("5 of 40 conditions" in n for n in layout.notes)


def test_latent_channels_are_noted():
    img, layout = contact_sheet(_fake(np.zeros((1, 2, 2, 4, 8, 8), dtype=np.float32), ws=(1.0,)))
    assert any("4 channels" in n for n in layout.notes)


def test_panel_order_puts_the_verdict_scale_first_then_the_sweep_sorted():
    fake = _fake(np.zeros((4, 1, 2, 1, 8, 8), dtype=np.float32), ws=(0.0, 1.0, 7.5, 3.0))
    assert panel_order(fake) == [1, 0, 3, 2]


def test_trend_chart_has_an_axis_per_measured_series_and_marks_the_onset():
    steps = [{"step": s, "verdict": v, "pixel_rms": r, "seed_share": None, "lpips": None, "eps_ratio": e}
             for s, v, r, e in [(100, "healthy", 0.4, 0.2), (200, "at_risk", 0.1, 0.9), (300, "collapsed", 0.01, 1.4)]]
    fig = trend_chart(steps, onset=200, drop_step=200)
    axes = fig.get_axes()
    assert [ax.get_title(loc="left") for ax in axes] == ["pixel RMS between seeds", "eps ratio"]  # no empty LPIPS axis
    assert all(ax.get_xlabel() == "step" and ax.get_ylabel() and ax.get_legend() for ax in axes)
    assert any("collapse onset (step 200)" in t.get_text() for t in axes[0].get_legend().get_texts())


# ------------------------------------------------------------------------------------------ JUnit


def test_junit_has_a_testcase_per_condition_and_per_check(run):
    data = json.loads((run.root / "scan.json").read_text())
    root = ET.parse(run.root / "junit.xml").getroot()
    cases = root.findall(".//testcase")
    assert len(cases) == len(data["conditions"]) + 4
    names = [c.get("name") for c in cases]
    assert names[-4:] == ["overall collapse", "guidance", "null branch", "gate"]
    guidance_failed = cases[-3].find("failure") is not None
    assert guidance_failed == (data["guidance"]["verdict"] == "not_steerable")  # --fail-on not_steerable
    assert all(c.find("failure") is None for c in cases[:-3])  # collapse cases answer to a collapse level
    assert (cases[-1].find("failure") is not None) == (not data["gate"]["passed"])
    suite = root.find("testsuite")
    assert int(suite.get("failures")) == sum(c.find("failure") is not None for c in cases)


def _synthetic(collapsed=7, at_risk=1, total=10, guidance="steerable", null="learned"):
    verdicts = ["collapsed"] * collapsed + ["at_risk"] * at_risk + ["healthy"] * (total - collapsed - at_risk)
    return {
        "schema_version": "1.1", "verdict": "collapsed" if collapsed * 2 >= total else "at_risk",
        "reasons": ["7/10 conditions collapsed"], "recommendations": ["do something"], "created": "now", "seconds": 1.0,
        "verdict_guidance_scale": 1.0, "seeds": [0, 1, 2], "config": {"steps": 3, "guidance": [0.0, 1.0]},
        "checkpoint": {"path": "ckpt", "notes": []}, "lpips": {"available": False, "reason": "disabled with --no-lpips"},
        "guidance": {"verdict": guidance, "reasons": ["moves"], "max_shift": 0.3, "sweep": [],
                     "null_branch": {"verdict": null, "reasons": ["gap small"], "centroid_gap": 0.1}},
        "conditions": [{"label": f"class {i}", "verdict": v, "reasons": [f"pixel RMS of {i}"],
                        "pixel_rms": 0.01 * (10 - i) if v != "healthy" else 0.5, "lpips": None}
                       for i, v in enumerate(verdicts)],
    }


@pytest.mark.parametrize("fail_on, failures", [("collapsed", 7 + 1), ("at_risk", 8 + 1), ("not_steerable", 1), ("never", 0)])
def test_junit_failures_follow_fail_on(fail_on, failures):
    data = _synthetic(guidance="not_steerable", null="not_learned")
    root = ET.fromstring(to_junit(data, fail_on))
    cases = root.findall(".//testcase")
    assert len(cases) == 14
    # not_steerable: the guidance case and the null branch (not learned = not steerable) fail;
    # and the gate's own testcase fails whenever the gate does
    expected = failures + (1 if fail_on == "not_steerable" else 0) + (1 if fail_on != "never" else 0)
    assert int(root.get("failures")) == expected == sum(c.find("failure") is not None for c in cases)


def test_junit_skips_an_absent_null_branch():
    root = ET.fromstring(to_junit(_synthetic(null="absent_by_design"), "not_steerable"))
    null = [c for c in root.iter("testcase") if c.get("name") == "null branch"][0]
    assert null.find("skipped") is not None and null.find("failure") is None


# ----------------------------------------------------------------------------------------- GitHub


def test_github_outputs_summary_and_annotations_from_the_cli(run):
    data = json.loads((run.root / "scan.json").read_text())
    out = dict(line.split("=", 1) for line in run.output.read_text().splitlines())
    assert out["verdict"] == data["verdict"] and out["guidance"] == data["guidance"]["verdict"]
    assert out["passed"] == ("true" if data["gate"]["passed"] else "false")
    assert (run.res.exit_code == 0) == data["gate"]["passed"]
    assert run.summary.read_text().startswith("# collapsecheck: ")
    lines = [ln for ln in run.res.stdout.splitlines() if ln.startswith("::")]
    if data["guidance"]["verdict"] != "steerable":
        assert any(ln.startswith("::error title=collapsecheck%3A guidance") for ln in lines)


def test_annotations_are_summarised_one_per_kind():
    lines = annotations(_synthetic(), "collapsed", passed=False)
    collapsed = [ln for ln in lines if "conditions collapsed" in ln]
    assert len(collapsed) == 1 and collapsed[0].startswith("::error ")
    assert "7/10 conditions collapsed: class 6, class 5, class 4, class 3, class 2, ... (worst 5" in collapsed[0]
    at_risk = [ln for ln in lines if "at risk" in ln.split("::")[-1]]
    assert len(at_risk) == 1 and "1/10 conditions at risk: class 7" in at_risk[0]
    gate = [ln for ln in lines if "gate failed" in ln]
    assert len(gate) == 1 and gate[0].startswith("::error ")
    assert "gate --fail-on collapsed failed on collapsed: collapsed: the collapse verdict is collapsed" in gate[0]
    assert len(lines) == 3  # guidance steers and the null branch is learned: nothing to say about them
    # a passing gate turns errors into warnings
    assert all(ln.startswith("::warning ") for ln in annotations(_synthetic(), "collapsed", passed=True))


def test_outputs_and_escaping():
    assert outputs(_synthetic(), False).splitlines() == ["verdict=collapsed", "guidance=steerable", "null_branch=learned",
                                                         "passed=false", "failed="]
    gated = {**_synthetic(), "gate": {"fail_on": "collapsed,weak", "passed": False, "failed": ["collapsed"]}}
    assert outputs(gated, False).splitlines()[-1] == "failed=collapsed"
    assert escape_data("a%b\nc") == "a%25b%0Ac"


def test_github_step_summary_is_appended_not_overwritten(tmp_path):
    from collapsecheck.report.github import github_actions

    summary, output = tmp_path / "s.md", tmp_path / "o.txt"
    summary.write_text("earlier step\n")
    env = {"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary), "GITHUB_OUTPUT": str(output)}
    github_actions(_synthetic(), "collapsed", False, env)
    text = summary.read_text()
    assert text.startswith("earlier step\n# collapsecheck: collapsed")
    assert "passed=false" in output.read_text()


def test_markdown_of_a_synthetic_result_lists_conditions_least_diverse_first():
    text = summary_markdown(_synthetic())
    rows = [ln for ln in text.splitlines() if ln.startswith("| class ")]
    assert rows[0].startswith("| class 7 | 🟠 at risk | 0.030 |") and rows[1].startswith("| class 6 | 🔴 collapsed |")


# ------------------------------------------------------------------ deciding numbers, terminal, plots


def _evidence(measure, value, op, threshold, limit):
    """An Evidence-like object, as the verdict stage records it in ``decided_by``."""
    return SimpleNamespace(measure=measure, value=value, op=op, threshold=threshold, limit=limit)


def test_decided_by_reads_objects_and_dicts_and_never_guesses():
    from collapsecheck.report.evidence import decided_by, deciding_measures, evidence_text

    obj = SimpleNamespace(decided_by=[_evidence("seed_share", 0.048, "<", "collapsed_seed_share", 0.1)])
    as_dict = {"decided_by": [{"measure": "pixel_rms", "value": 0.5, "op": ">=", "threshold": "at_risk_rms", "limit": 0.15}]}
    assert evidence_text(obj) == "seed share 0.048 < collapsed_seed_share 0.1"
    assert decided_by(obj)[0].short() == "seed share 0.048 < 0.1"
    assert evidence_text(as_dict) == "pixel RMS 0.5 >= at_risk_rms 0.15" and deciding_measures(as_dict) == {"pixel_rms"}
    for bare in (SimpleNamespace(verdict="collapsed"), {"verdict": "collapsed"}, SimpleNamespace(decided_by=None), None):
        assert decided_by(bare) == [] and evidence_text(bare) == ""


def _with_evidence(result):
    """A copy of the fixture's result with long labels, recovery probes, a posterior profile and decided_by."""
    from collapsecheck.result import RecoveryProbe

    result = copy.deepcopy(result)
    for i, c in enumerate(result.conditions):
        c.label = f"a photograph of condition number {i} in a long prompt"
        c.seed_share = 0.048
        c.decided_by = [_evidence("seed_share", 0.048, "<", "collapsed_seed_share", 0.1)]
    result.decided_by = [_evidence("collapsed_fraction", 1.0, ">=", "overall_collapsed_fraction", 0.5)]
    reason = "it draws on the null branch, which was not learned"
    result.guidance.recovery = [RecoveryProbe(name, name, True, 0.2, 0.3, None, 0.9, 0.1, "collapsed", "no", reason)
                                for name in ("w=0.5", "interval", "cads")]
    result.guidance.adherence_metric = "nearest-centroid: share of samples nearest to their own condition's mean"
    result.posterior_profile = [PosteriorPoint(timestep=t, alpha_bar=a, posterior_var=v, variance_share=s, x0hat_var=0.01)
                                for t, a, v, s in [(800, 0.1, 0.6, 0.9), (200, 0.8, 0.05, 0.5)]]
    return result


def _without_evidence(result):
    """A copy of the fixture's result with no decided_by anywhere (as a result from before schema 2.0 would read)."""
    result = copy.deepcopy(result)
    for item in [result, result.guidance, result.guidance.null_branch, *result.conditions]:
        item.decided_by = []
    return result


def _terminal_text(result, width=80) -> str:
    from rich.console import Console

    from collapsecheck.report.terminal import render

    console = Console(width=width, record=True, force_terminal=False)
    render(result, console)
    return console.export_text()


def test_terminal_report_fits_80_columns_and_shows_the_deciding_numbers(run):
    text = _terminal_text(_with_evidence(run.result))
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "…" not in text  # no header (nor anything else) cut short
    for header in ("pixel", "RMS", "seed", "share", "near-", "adher-", "from w=1", "verdict", "condition", "probe", "works"):
        assert header in text
    assert sum("0.048*" in line for line in lines) == len(run.result.conditions)  # the deciding cell is marked
    flat = " ".join(text.split())
    assert flat.count("seed share 0.048 < collapsed_seed_share 0.1") == len(run.result.conditions)
    assert "collapsed fraction 1 >= overall_collapsed_fraction 0.5" in flat  # the scan's own evidence, in the headline
    # the recovery table stays narrow: each reason sits whole on a line of its own
    assert sum("it draws on the null branch, which was not learned" in line for line in lines) == 3
    assert "LPIPS:" in text and "not measured: disabled with --no-lpips" in flat


def test_terminal_report_without_decided_by_marks_nothing(run):
    text = _terminal_text(_without_evidence(run.result))
    assert "*" not in text and "decided by" not in text and "collapsed_seed_share" not in text


def test_terminal_report_names_the_lpips_weights(run):
    from collapsecheck.result import LpipsStatus

    result = copy.copy(run.result)
    result.lpips = LpipsStatus(True, net="alex", source="backbone /w/alexnet.safetensors; linear layers /w/alex.pth")
    text = _terminal_text(result)
    assert "LPIPS: alex net; weights: backbone /w/alexnet.safetensors; linear layers /w/alex.pth" in " ".join(text.split())


def _legend_texts(ax) -> list[str]:
    legend = ax.get_legend()
    return [t.get_text() for t in legend.get_texts()] if legend else []


def test_every_plot_has_a_title_axis_labels_and_a_legend(run):
    from collapsecheck.report.plots import eps_profile_chart, guidance_chart

    result = _with_evidence(run.result)
    for point in result.guidance.sweep:
        point.lpips = 0.03
    figures = [guidance_chart(result), eps_profile_chart(result),
               posterior_chart(result.posterior_profile, result.config["thresholds"]),
               trend_chart([{"step": 1, "verdict": "healthy", "pixel_rms": 0.3, "eps_ratio": 0.1}])]
    for fig in figures:
        assert fig._suptitle is not None and fig._suptitle.get_text()
        for ax in fig.get_axes():
            assert ax.get_title(loc="left") and ax.get_xlabel() and ax.get_ylabel(), ax
            assert _legend_texts(ax), ax.get_title(loc="left")


def test_guidance_plot_keeps_each_measure_on_its_own_axis_with_its_thresholds(run):
    from collapsecheck.report.figure import caption_of
    from collapsecheck.report.plots import guidance_chart

    result = _with_evidence(run.result)
    for point in result.guidance.sweep:
        point.lpips, point.pixel_rms = 0.03, 0.3  # LPIPS measured; every mean pixel RMS above at_risk_rms
    fig = guidance_chart(result)
    rms, share, lpips, shift = fig.get_axes()
    assert "RMS pixel distance" in rms.get_ylabel() and "LPIPS" in lpips.get_ylabel()
    assert not any("LPIPS" in t for t in _legend_texts(rms)) and any("LPIPS" in t for t in _legend_texts(lpips))
    assert {"collapsed_rms 0.05", "at_risk_rms 0.15"} <= set(_legend_texts(rms))
    th = Thresholds()
    assert {f"collapsed_seed_share {th.collapsed_seed_share:g}", "at_risk_seed_share 0.2"} <= set(_legend_texts(share))
    assert {"collapsed_lpips 0.02", "at_risk_lpips 0.05"} <= set(_legend_texts(lpips))
    # the titles say where the points are, as drawn: above the lines here, not "below collapsed_rms"
    assert rms.get_title(loc="left").endswith("every point above at_risk_rms")
    assert "below" not in rms.get_title(loc="left")
    assert "decided by: collapsed fraction 1 >= overall_collapsed_fraction 0.5" in " ".join(caption_of(fig).split())
    assert "decided by" not in caption_of(guidance_chart(_without_evidence(run.result)))  # nothing recorded, nothing claimed


def test_guidance_plot_without_lpips_says_why(run):
    from collapsecheck.report.plots import guidance_chart

    lpips_ax = guidance_chart(run.result).get_axes()[2]
    assert not lpips_ax.get_lines() and "disabled with --no-lpips" in " ".join(t.get_text() for t in lpips_ax.texts)


def test_plot_pngs_are_deterministic(run):
    from collapsecheck.report.figure import figure_png
    from collapsecheck.report.plots import guidance_chart

    assert figure_png(guidance_chart(run.result)) == figure_png(guidance_chart(run.result))


def test_contact_sheet_stacks_one_panel_per_w_and_labels_every_row_and_seed():
    rng = np.random.default_rng(1)
    fake = _fake(rng.uniform(-1, 1, (4, 3, 8, 1, 8, 8)).astype(np.float32), ws=(0.0, 1.0, 3.0, 7.5),
                 verdicts=["collapsed", "at_risk", "healthy"])
    fake.conditions[0].decided_by = [_evidence("seed_share", 0.048, "<", "collapsed_seed_share", 0.1)]
    img, layout = contact_sheet(fake)
    assert img.height > img.width and img.width <= 1280  # reads at screen size
    assert [p["w"] for p in layout.panels] == [1.0, 0.0, 3.0, 7.5]
    assert all(a["top"] < b["top"] for a, b in zip(layout.panels, layout.panels[1:]))  # stacked top to bottom
    assert all(p["title"].startswith(f"w = {p['w']:g}") for p in layout.panels)
    assert len(layout.labels) == 4 * 3
    assert [lab["lines"] for lab in layout.labels[:3]] == [["c0", "collapsed", "seed share 0.048 < 0.1"],
                                                           ["c1", "at risk"], ["c2", "healthy"]]
    pixels = np.asarray(img)
    for lab in layout.labels:  # the label is painted left of its row, the verdict in its colour
        label_area = pixels[lab["y"]:lab["y"] + 34, :layout.left - 4]
        assert (label_area < 100).all(-1).any()
    collapsed_rgb = hex_to_rgb(LEVEL_COLOURS["bad"])
    first = layout.labels[0]
    assert (pixels[first["y"] + 17:first["y"] + 34, :layout.left] == collapsed_rgb).all(-1).any()
    again, _ = contact_sheet(fake)
    assert (np.asarray(again) == pixels).all()  # deterministic


def test_one_verdict_colour_mapping_is_used_everywhere():
    from collapsecheck.report.html import _badge
    from collapsecheck.report.style import verdict_hex, verdict_mark, verdict_rich
    from collapsecheck.report.tables import _v

    for verdict, lvl in (("collapsed", "bad"), ("weak", "warn"), ("learned", "good"), ("absent_by_design", "info")):
        colour = LEVEL_COLOURS[lvl]
        assert verdict_hex(verdict) == colour and colour in verdict_rich(verdict) and colour in _badge("x", verdict)
        assert colour in str(_v(verdict).style) and verdict_mark(verdict)
    assert verdict_rich("something else") == "" and verdict_mark(None) == ""


def test_plots_leave_rcparams_alone_and_import_matplotlib_only_when_drawing(run):
    import sys

    import matplotlib

    from collapsecheck.report.plots import eps_profile_chart, guidance_chart

    before = dict(matplotlib.rcParams)
    guidance_chart(run.result), eps_profile_chart(run.result)
    assert dict(matplotlib.rcParams) == before
    code = ("import sys, collapsecheck.cli, collapsecheck.report.plots, collapsecheck.report.terminal; "
            "assert 'matplotlib' not in sys.modules, 'matplotlib imported at module level'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_markdown_and_html_show_the_deciding_number_only_when_recorded():
    from collapsecheck.report.html import to_html

    data = _synthetic()
    assert "decided by" not in summary_markdown(data) and "decided by" not in to_html(data)
    for c in data["conditions"]:
        c["decided_by"] = [{"measure": "pixel_rms", "value": c["pixel_rms"], "op": "<", "threshold": "collapsed_rms",
                            "limit": 0.05}]
    text = summary_markdown(data)
    assert "| decided by |" in text
    row = [ln for ln in text.splitlines() if ln.startswith("| class 6 |")][0]
    assert row.endswith("| pixel RMS 0.04 < collapsed_rms 0.05 |")
    assert "pixel RMS 0.04 &lt; collapsed_rms 0.05" in to_html(data)
