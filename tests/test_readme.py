"""The README tells the truth about the commands CI runs, the JSON fields and the exit codes."""
from pathlib import Path

import pytest

from click.testing import CliRunner

from collapsecheck import errors
from collapsecheck.cli import cli
from collapsecheck.result import MEASURES

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_ci_runs_the_readme_test_command_verbatim():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    command = [line for line in ci if "pytest" in line]
    assert len(command) == 1
    assert command[0].strip() in README


def test_exit_codes_are_documented():
    for code in (errors.EXIT_PASS, errors.EXIT_GATE_FAILED, errors.EXIT_USAGE, errors.EXIT_LOAD):
        assert f"| {code} |" in README


def test_every_measure_is_documented():
    for name in MEASURES:
        assert f"`{name}`" in README


def test_every_scan_option_is_documented_in_help_and_readme_mentions_the_main_ones():
    help_text = CliRunner().invoke(cli, ["scan", "--help"]).output
    for option in ("--cond", "--classes", "--null-class", "--concat-order", "--weights", "--config", "--scheduler",
                   "--seeds", "--steps", "--guidance", "--batch-size", "--fail-on", "--json", "--threshold",
                   "--thresholds", "--lpips-weights", "--guidance-distilled", "--prediction-type", "--adherence",
                   "--recovery", "--mode", "--posterior"):
        assert option in help_text
        assert option in README, option


@pytest.mark.parametrize("command", ["scan", "compare", "trend"])
def test_every_option_of_every_command_is_in_the_readme(command):
    import re

    help_text = CliRunner().invoke(cli, [command, "--help"]).output
    options = set(re.findall(r"(--[a-z][a-z0-9-]+)", help_text)) - {"--help", "--quiet"}
    missing = sorted(o for o in options if o not in README and not (o.startswith("--no-") and "--" + o[5:] in README))
    assert not missing


def test_every_json_field_is_documented():
    from dataclasses import fields

    from collapsecheck.result import ConditionResult, NullBranchResult, RecoveryProbe, ScanResult, SweepPoint

    for cls in (ScanResult, ConditionResult, SweepPoint, RecoveryProbe, NullBranchResult):
        for f in fields(cls):
            if f.name in ("index", "samples"):  # samples are not written to JSON
                continue
            assert f"`{f.name}`" in README, f"{cls.__name__}.{f.name}"
