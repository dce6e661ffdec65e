"""The CI examples run as written: each example's steps, in order, as one bash script in a copy of the repository.

Everything but the runner itself runs: the install commands, the training, the scan with its gate and report
files. What the runner would provide is stood in for: ``python`` is this interpreter; ``pip install`` resolves
and builds the install offline with ``--dry-run`` (the test's environment already holds the dependencies and
must not be changed) while ``collapsecheck`` is the copy's, on ``PYTHONPATH``; the runner's files
(``$GITHUB_OUTPUT``, ``$GITHUB_STEP_SUMMARY``, ...) are temporary files; steps that ``use`` an action
(checkout, setup-python, upload-artifact) are skipped, and what they would upload is checked to exist.
``TRAIN_STEPS`` is cut to a few steps so that a run takes seconds, and the two examples run at once; ``HF_HUB_OFFLINE`` and the LPIPS weights of
the test environment are not passed on, as a CI runner has neither.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
TRAIN_STEPS = "20"
#: the scan's gate on a model trained for TRAIN_STEPS steps: far from collapse (its samples still differ by
#: seed), so --fail-on collapsed passes
EXPECTED_SCAN_EXIT = 0
COPY_IGNORE = shutil.ignore_patterns(".git", ".venv", ".cache", "__pycache__", "*.pyc", "*.egg-info", "out",
                                     ".pytest_cache", ".import_linter_cache", "collapsecheck-report")

Step = Tuple[str, str, Dict[str, str]]  # name, shell text, step env


def _github_job(workflow: dict) -> Tuple[Dict[str, str], List[Step], List[dict]]:
    """The one job's env, its run steps in order and its action steps."""
    (job,) = workflow["jobs"].values()
    env = {**workflow.get("env", {}), **job.get("env", {})}
    steps = [(s.get("name", s["run"][:40]), s["run"], s.get("env", {})) for s in job["steps"] if "run" in s]
    actions = [s for s in job["steps"] if "uses" in s]
    return env, steps, actions


def _gitlab_job(pipeline: dict) -> Tuple[Dict[str, str], List[Step], dict]:
    """The one job's variables, its script as one step (GitLab runs the lines in one shell) and the job."""
    (name,) = [k for k, v in pipeline.items() if isinstance(v, dict) and "script" in v]
    job = pipeline[name]
    env = {**pipeline.get("variables", {}), **job.get("variables", {})}
    lines = [*job.get("before_script", []), *job["script"]]
    return env, [(name, "\n".join(lines), {})], job


def _shims(bin_dir: Path) -> None:
    """``python``, ``pip`` and ``collapsecheck`` as a runner with the project installed would have them."""
    bin_dir.mkdir()
    python = shlex.quote(sys.executable)
    shims = {
        "python": f'exec {python} "$@"',
        "pip": ('[ "$1" = install ] || { echo "pip $1: not stood in for by the test" >&2; exit 99; }\n'
                f'exec {python} -m pip "$@" --dry-run --no-index --no-build-isolation --disable-pip-version-check -q'),
        "collapsecheck": f'exec {python} -m collapsecheck "$@"',
    }
    for name, body in shims.items():
        path = bin_dir / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(0o755)


def _script(steps: List[Step], work: Path, log: Path) -> str:
    """One bash script: each step in its own ``bash -e`` (as the runners run them), stopping at the first that
    fails, each step's exit code appended to ``log``."""
    lines = ["#!/usr/bin/env bash", f"cd {shlex.quote(str(work))}"]
    for i, (name, text, env) in enumerate(steps):
        step_file = log.parent / f"step{i}.sh"
        exports = "".join(f"export {k}={shlex.quote(str(v))}\n" for k, v in env.items())
        step_file.write_text("set -o pipefail\n" + exports + text + "\n")
        lines.append(f"bash -e {shlex.quote(str(step_file))}; rc=$?; "
                     f"printf '%s\\t%s\\n' {shlex.quote(name)} $rc >> {shlex.quote(str(log))}; "
                     "[ $rc -eq 0 ] || exit $rc")
    return "\n".join(lines) + "\n"


def _run_example(tmp_path: Path, env_vars: Dict[str, str], steps: List[Step], runner_env: Dict[str, str]):
    """Run the steps in a copy of the repository; (exit code, [(step, exit code)], workspace, output)."""
    work = tmp_path / "repo"
    shutil.copytree(ROOT, work, ignore=COPY_IGNORE)
    _shims(tmp_path / "bin")
    log = tmp_path / "steps.log"
    env = {k: v for k, v in os.environ.items()
           if k not in ("HF_HUB_OFFLINE", "COLLAPSECHECK_LPIPS_WEIGHTS", "PYTHONPATH")}
    env.update({k: str(v) for k, v in env_vars.items()})
    # OMP_NUM_THREADS=1: the two examples run at once, one torch thread each
    env.update(TRAIN_STEPS=TRAIN_STEPS, CI="true", PYTHONPATH=str(work), OMP_NUM_THREADS="1",
               PATH=f"{tmp_path / 'bin'}{os.pathsep}{env['PATH']}", **runner_env)
    script = tmp_path / "job.sh"
    script.write_text(_script(steps, work, log))
    proc = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=300)
    ran = [tuple(line.split("\t")) for line in log.read_text().splitlines()] if log.exists() else []
    return proc.returncode, [(name, int(rc)) for name, rc in ran], work, proc.stdout + proc.stderr


def _check_scan_outputs(work: Path, report_dir: str, junit: str, exit_code: int) -> dict:
    """The report folder, the JUnit file and the JSON agree with the scan's exit code."""
    report = work / report_dir
    for name in ("index.html", "summary.md", "scan.json", "contact_sheet.png"):
        assert (report / name).is_file(), name
    data = json.loads((report / "scan.json").read_text())
    assert data["gate"]["passed"] is (exit_code == 0)
    suites = ET.parse(work / junit).getroot()
    failures = sum(int(s.get("failures", 0)) for s in suites.iter("testsuite"))
    assert (failures > 0) is (exit_code == 1)
    return data


def _check_no_placeholders(env: Dict[str, str], steps: List[Step]) -> None:
    """Installs from the checked-out repository, trains with the env's step count, no offline switch."""
    text = "\n".join(t for _, t, _ in steps)
    assert re.search(r"pip install -e \"?\.", text) and "git+" not in text
    assert "$TRAIN_STEPS" in text and int(env["TRAIN_STEPS"]) >= 1000  # the example's default is a real run
    assert "HF_HUB_OFFLINE" not in env
    assert "${{" not in text  # nothing only the runner could evaluate
    for flag in ("--fail-on", "--json", "--junit", "--report-dir", "--classes"):
        assert flag in text, flag


def _github_run(tmp_path: Path) -> dict:
    workflow = yaml.safe_load((EXAMPLES / "github-actions.yml").read_text())
    env, steps, actions = _github_job(workflow)
    files = {name: tmp_path / name.lower() for name in ("GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY", "GITHUB_ENV")}
    for path in files.values():
        path.touch()
    runner = {"GITHUB_ACTIONS": "true", "GITHUB_WORKSPACE": str(tmp_path / "repo"), "RUNNER_TEMP": str(tmp_path),
              **{k: str(v) for k, v in files.items()}}
    rc, ran, work, output = _run_example(tmp_path, env, steps, runner)
    return dict(env=env, steps=steps, actions=actions, files=files, rc=rc, ran=ran, work=work, output=output)


def _gitlab_run(tmp_path: Path) -> dict:
    pipeline = yaml.safe_load((EXAMPLES / "gitlab-ci.yml").read_text())
    env, steps, job = _gitlab_job(pipeline)
    runner = {"GITLAB_CI": "true", "CI_PROJECT_DIR": str(tmp_path / "repo"), "CI_JOB_NAME": steps[0][0]}
    rc, ran, work, output = _run_example(tmp_path, env, steps, runner)
    return dict(env=env, steps=steps, job=job, rc=rc, ran=ran, work=work, output=output)


@pytest.fixture(scope="module")
def example_runs(tmp_path_factory):
    """Both examples, started at once (two independent jobs, each in its own copy of the repository)."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        yield {"github": pool.submit(_github_run, tmp_path_factory.mktemp("github")),
               "gitlab": pool.submit(_gitlab_run, tmp_path_factory.mktemp("gitlab"))}


def test_the_github_actions_example_runs_as_written(example_runs):
    run = example_runs["github"].result()
    env, steps, rc, work, output = run["env"], run["steps"], run["rc"], run["work"], run["output"]
    _check_no_placeholders(env, steps)
    assert [name for name, _ in run["ran"]] == [name for name, _, _ in steps], output
    assert [code for _, code in run["ran"]] == [0, 0, EXPECTED_SCAN_EXIT] and rc == EXPECTED_SCAN_EXIT, output
    assert (work / env["MODEL_DIR"] / "unet" / "config.json").is_file()
    _check_scan_outputs(work, env["REPORT_DIR"], f"{env['REPORT_DIR']}/junit.xml", rc)
    outputs = run["files"]["GITHUB_OUTPUT"].read_text()
    assert f"passed={'true' if rc == 0 else 'false'}" in outputs.split()
    assert run["files"]["GITHUB_STEP_SUMMARY"].read_text().strip()
    actions = run["actions"]
    uploads = [a for a in actions if a["uses"].startswith("actions/upload-artifact@")]
    assert len(uploads) == 1 and uploads[0].get("if") == "always()"
    assert (work / uploads[0]["with"]["path"]).is_dir()
    assert [a["uses"].split("@")[0] for a in actions] == ["actions/checkout", "actions/setup-python",
                                                          "actions/upload-artifact"]


def test_the_gitlab_ci_example_runs_as_written(example_runs):
    run = example_runs["gitlab"].result()
    env, steps, rc, work, output = run["env"], run["steps"], run["rc"], run["work"], run["output"]
    _check_no_placeholders(env, steps)
    assert run["ran"] == [(steps[0][0], EXPECTED_SCAN_EXIT)] and rc == EXPECTED_SCAN_EXIT, output
    assert (work / env["MODEL_DIR"] / "unet" / "config.json").is_file()
    artifacts = run["job"]["artifacts"]
    assert artifacts["when"] == "always"
    _check_scan_outputs(work, env["REPORT_DIR"], artifacts["reports"]["junit"], rc)
    for path in artifacts["paths"]:
        assert (work / path).is_dir(), path


def test_a_failing_step_stops_the_script_with_its_exit_code(tmp_path):
    """The script runner itself: a step that fails ends the job with its code, and later steps do not run."""
    log = tmp_path / "steps.log"
    script = _script([("ok", "true", {}), ("gate", "exit 1", {}), ("never", "touch ran", {})], tmp_path, log)
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True)
    assert proc.returncode == 1
    assert log.read_text().splitlines() == ["ok\t0", "gate\t1"]
    assert not (tmp_path / "ran").exists()


@pytest.mark.parametrize("text, code", [("false | true", 1), ("false\ntrue", 1)])
def test_the_steps_run_with_errexit_and_pipefail(tmp_path, text, code):
    script = _script([("step", text, {})], tmp_path, tmp_path / "log")
    assert subprocess.run(["bash", "-c", script], capture_output=True).returncode == code
