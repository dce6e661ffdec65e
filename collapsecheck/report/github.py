"""GitHub Actions: a step summary, summarised annotations and step outputs.

Used when the environment says ``GITHUB_ACTIONS=true``:

* the Markdown report is appended to ``$GITHUB_STEP_SUMMARY``;
* one ``::error``/``::warning`` annotation per kind of finding (collapsed conditions, conditions at
  risk, guidance, null branch, baseline regressions), never one per condition: "7/10 conditions
  collapsed: class 3, class 0, ... (worst 5 by pixel RMS)". A finding is an error when a ``--fail-on``
  axis on its scale failed, a warning otherwise; when the gate fails, one more error names every failed
  axis ("gate --fail-on collapsed,not_steerable failed on not_steerable: the guidance verdict is ...");
* ``verdict=``, ``guidance=``, ``null_branch=``, ``passed=true|false`` and ``failed=`` (the failed axes,
  comma-separated; empty when the gate passed) are appended to ``$GITHUB_OUTPUT`` for later steps
  (``steps.<id>.outputs.passed``).
"""
from __future__ import annotations

import os
from typing import Mapping, Optional, Union

from ..errors import UsageError
from .markdown import as_data, summary_markdown, word
from ..result import ScanResult
from ..verdict.gate import AXES, failure_lines, result_gate

#: conditions named in one annotation
WORST = 5


def is_github_actions(env: Optional[Mapping[str, str]] = None) -> bool:
    env = os.environ if env is None else env
    return env.get("GITHUB_ACTIONS") == "true"


def escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def _conditions_finding(data: dict, verdict: str) -> Optional[str]:
    conds = data["conditions"]
    hit = sorted((c for c in conds if c["verdict"] == verdict), key=lambda c: c.get("pixel_rms") or 0.0)
    if not hit:
        return None
    names = ", ".join(c["label"] for c in hit[:WORST])
    more = f", ... (worst {WORST} by pixel RMS)" if len(hit) > WORST else ""
    return f"{len(hit)}/{len(conds)} conditions {word(verdict)}: {names}{more}; overall verdict {word(data['verdict'])}"


def _failed_scales(gate) -> set[str]:
    """The verdict scales (collapse, guidance, null, regression) on which an axis of the gate failed."""
    return {AXES[a][0] if a in AXES else a for a in gate.failed}


def _findings(data: dict, failed: set[str]) -> list[tuple[bool, str, str]]:
    """(is error, title, message) per kind of finding; an error when an axis on its scale failed."""
    g = data["guidance"]
    null = g.get("null_branch") or {}
    found: list[tuple[bool, str, str]] = []
    for verdict in ("collapsed", "at_risk"):
        message = _conditions_finding(data, verdict)
        if message:
            found.append(("collapse" in failed, f"collapsecheck: conditions {word(verdict)}", message))
    if g["verdict"] != "steerable" and null.get("verdict") != "absent_by_design":
        reasons = g.get("reasons") or [""]
        found.append(("guidance" in failed, f"collapsecheck: guidance {word(g['verdict'])}",
                      f"guidance {word(g['verdict'])}: {reasons[-1]}"))
    if null.get("verdict") == "not_learned":
        reasons = null.get("reasons") or [""]
        found.append((bool({"guidance", "null"} & failed), "collapsecheck: null branch not learned",
                      f"null branch not learned: {reasons[0]}; CFG cannot steer without it"))
    ref = data.get("reference") or {}
    if ref.get("verdict") in ("collapsed", "at_risk"):  # --reference: diversity lost against the base model
        found.append(("relative" in failed, f"collapsecheck: {word(ref['verdict'])} relative to the base model",
                      f"{word(ref['verdict'])} relative to {ref.get('path')}: " + "; ".join(ref.get("reasons") or [])))
    base = data.get("baseline")
    if base and base.get("regressions"):
        regs = base["regressions"]
        extra = f" (+{len(regs) - 3} more)" if len(regs) > 3 else ""
        found.append(("regression" in failed, "collapsecheck: regression against the baseline",
                      f"{len(regs)} regressions against the baseline: " + "; ".join(regs[:3]) + extra))
    return found


def annotations(result: Union[ScanResult, dict], fail_on: str, passed: Optional[bool] = None) -> list[str]:
    """Workflow-command lines, one per kind of finding, and one naming every failed axis when the gate failed.

    The gate is the result's under ``fail_on`` (its recorded baseline comparison included); ``passed=True``
    (the caller's gate passed) makes every finding a warning."""
    data = as_data(result)
    gate = result_gate(data, fail_on)
    found = _findings(data, set() if passed else _failed_scales(gate))
    lines = [] if passed else failure_lines(gate)
    if lines:
        found.append((True, "collapsecheck: gate failed",
                      f"gate --fail-on {gate.fail_on} failed on {', '.join(gate.failed)}: " + "; ".join(lines)))
    return [f"::{'error' if is_error else 'warning'} title={escape_property(title)}::{escape_data(message)}"
            for is_error, title, message in found]


def outputs(result: Union[ScanResult, dict], passed: bool) -> str:
    """The ``$GITHUB_OUTPUT`` lines."""
    data = as_data(result)
    g = data["guidance"]
    failed = ",".join((data.get("gate") or {}).get("failed") or [])
    return (f"verdict={data['verdict']}\nguidance={g['verdict']}\n"
            f"null_branch={(g.get('null_branch') or {}).get('verdict', 'unclear')}\npassed={'true' if passed else 'false'}\n"
            f"failed={failed}\n")


def _append(path: str, text: str, what: str) -> None:
    try:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as exc:
        raise UsageError(f"cannot write {what} {path}: {exc.strerror or exc}") from None


def github_actions(result: Union[ScanResult, dict], fail_on: str, passed: bool,
                   env: Optional[Mapping[str, str]] = None) -> list[str]:
    """Append the step summary and outputs (where the environment names them); return the annotations.

    The caller prints the annotations to stdout (the library never prints).
    """
    env = os.environ if env is None else env
    summary = env.get("GITHUB_STEP_SUMMARY")
    if summary:
        _append(summary, summary_markdown(result) + "\n", "$GITHUB_STEP_SUMMARY")
    out = env.get("GITHUB_OUTPUT")
    if out:
        _append(out, outputs(result, passed), "$GITHUB_OUTPUT")
    return annotations(result, fail_on, passed)
