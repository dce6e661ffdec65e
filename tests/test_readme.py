"""The README and docs/ tell the truth: the commands CI runs, every option, measure, JSON field and exit
code, links that resolve, module paths that exist, and a CLI reference generated from the code now."""
import importlib
import importlib.util
import re
from pathlib import Path

import pytest

from click.testing import CliRunner

from collapsecheck import errors
from collapsecheck.cli import cli
from collapsecheck.result import MEASURES

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = (ROOT / "README.md").read_text()
#: the hand-written reference (docs/cli.md is generated from --help, so it proves nothing about the prose)
REFERENCE = README + "".join((DOCS / name).read_text() for name in ("usage.md", "measures.md", "ci.md"))
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def test_ci_runs_the_readme_test_command_verbatim():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    command = [line for line in ci if "pytest" in line]
    assert len(command) == 1
    assert command[0].strip() in README


def test_ci_checks_the_import_layers():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert "lint-imports" in [line.strip() for line in ci]
    assert "[importlinter:contract:stages]" in (ROOT / "setup.cfg").read_text()


def test_readme_is_a_front_page_under_12_kb():
    assert len(README.encode("utf-8")) < 12_000


def test_exit_codes_are_documented():
    ci_page = (DOCS / "ci.md").read_text()
    for code in (errors.EXIT_PASS, errors.EXIT_GATE_FAILED, errors.EXIT_USAGE, errors.EXIT_LOAD,
                 errors.EXIT_OUT_OF_MEMORY, errors.EXIT_INTERNAL):
        assert f"| {code} |" in README
        assert f"| {code} |" in ci_page


def test_every_verdict_value_is_explained_in_the_readme():
    for value in ("healthy", "at_risk", "collapsed", "steerable", "weak", "not_steerable",
                  "learned", "not_learned", "unclear", "absent_by_design"):
        assert f"| `{value}` |" in README, value


def test_every_measure_is_documented():
    measures = (DOCS / "measures.md").read_text()
    for name in MEASURES:
        assert f"`{name}`" in measures


def test_every_scan_option_is_documented_in_help_and_the_reference_mentions_the_main_ones():
    help_text = CliRunner().invoke(cli, ["scan", "--help"]).output
    for option in ("--cond", "--classes", "--null-class", "--concat-order", "--weights", "--config", "--scheduler",
                   "--seeds", "--steps", "--guidance", "--batch-size", "--fail-on", "--json", "--threshold",
                   "--thresholds", "--lpips-weights", "--guidance-distilled", "--prediction-type", "--adherence",
                   "--recovery", "--mode", "--posterior"):
        assert option in help_text
        assert option in REFERENCE, option


@pytest.mark.parametrize("command", ["scan", "compare", "trend"])
def test_every_option_of_every_command_is_in_the_reference(command):
    help_text = CliRunner().invoke(cli, [command, "--help"]).output
    options = set(re.findall(r"(--[a-z][a-z0-9-]+)", help_text)) - {"--help", "--quiet"}
    missing = sorted(o for o in options if o not in REFERENCE and not (o.startswith("--no-") and "--" + o[5:] in REFERENCE))
    assert not missing


def test_every_json_field_is_documented():
    from dataclasses import fields

    from collapsecheck.result import (ConditionResult, Gate, GateCheck, NullBranchResult, RecoveryProbe, ScanResult,
                                      SweepPoint)

    ci_page = (DOCS / "ci.md").read_text()
    for cls in (ScanResult, ConditionResult, SweepPoint, RecoveryProbe, NullBranchResult, Gate, GateCheck):
        for f in fields(cls):
            if f.name in ("index", "samples"):  # samples are not written to JSON
                continue
            assert f"`{f.name}`" in ci_page, f"{cls.__name__}.{f.name}"


def _links(page: Path) -> list[str]:
    return [target for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text())
            if not re.match(r"[a-z]+:", target) and not target.startswith("#")]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_resolves(page):
    missing = [t for t in _links(page) if not (page.parent / t.split("#")[0]).exists()]
    assert not missing


def test_the_readme_links_every_reference_page():
    linked = {Path(t.split("#")[0]).name for t in _links(ROOT / "README.md") if t.startswith("docs/")}
    assert {"usage.md", "measures.md", "ci.md", "cli.md", "calibration.md", "lpips.md", "ARCHITECTURE.md"} <= linked


def _resolves(dotted: str) -> bool:
    """``collapsecheck.a.b.name``: the longest importable module prefix, then attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for name in parts[cut:]:
            if not hasattr(obj, name):
                return False
            obj = getattr(obj, name)
        return True
    return False


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_module_paths_named_in_the_docs_exist(page):
    text = page.read_text()
    files = set(re.findall(r"collapsecheck/[\w/]+\.py", text))
    assert not [f for f in files if not (ROOT / f).is_file()]
    dotted = set(re.findall(r"`(collapsecheck(?:\.\w+)+)", text))
    assert not [d for d in dotted if not _resolves(d)]


def test_docs_cli_md_is_what_the_generator_writes_now():
    spec = importlib.util.spec_from_file_location("gen_cli_docs", ROOT / "tools" / "gen_cli_docs.py")
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    assert generator.TARGET.read_text(encoding="utf-8") == generator.render(), (
        "docs/cli.md is out of date: run python tools/gen_cli_docs.py")


def test_architecture_names_every_module_and_only_real_ones():
    text = (DOCS / "ARCHITECTURE.md").read_text()
    named = set(re.findall(r"`(\w+\.py)`", text)) - {"__init__.py"}
    actual = {p.name for p in (ROOT / "collapsecheck").rglob("*.py")} - {"__init__.py"}
    assert not sorted(named - actual), "named in docs/ARCHITECTURE.md but not in collapsecheck/"
    assert not sorted(actual - named), "in collapsecheck/ but missing from docs/ARCHITECTURE.md"


def _readme_report() -> tuple[list[str], list[str]]:
    """The README's report command (its arguments) and the lines of the report it shows."""
    section = README.split("## What a report looks like", 1)[1]
    command = re.search(r"`collapsecheck (scan [^`]+)`", section).group(1).split()
    block = section.split("```", 2)[1].splitlines()[1:]
    return command, [line.rstrip() for line in block]


def test_the_readme_report_is_what_the_scan_prints(tmp_path):
    """Every line the README shows (but the cut marks, the timing and the report path) is in a real scan's output,
    in the same order, at the terminal width of 80 the README was taken at."""
    command, shown = _readme_report()
    command = [arg if arg != "report/" else str(tmp_path / "report") for arg in command] + ["--no-lpips"]
    res = CliRunner(env={"COLUMNS": "80"}).invoke(cli, command)
    assert res.exit_code == 1, res.output
    printed = [line.rstrip() for line in res.output.splitlines()]
    at = 0
    for line in shown:
        if "[..." in line or "network evaluations in" in line or line.startswith("report:"):
            continue
        assert line in printed[at:], f"README line not printed (in order): {line!r}"
        at = printed.index(line, at) + 1
