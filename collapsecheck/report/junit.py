"""The JUnit XML renderer (``scan --junit PATH``), for CI systems that show test results.

One testcase per condition (its collapse verdict) and one per check: overall collapse, guidance,
null branch, the baseline comparison when there is one, and the gate itself. A testcase fails under the
same rule as the ``--fail-on`` gate (:mod:`collapsecheck.verdict.gate`): when its verdict fails an axis
of ``--fail-on`` on its own scale. Collapse testcases answer to ``collapsed`` and ``at_risk``, the
guidance testcase to ``weak`` and ``not_steerable``, the null-branch testcase to ``null_not_learned``
and, on the guidance scale (not learned = not steerable, unclear = weak), to the guidance axes;
``never`` fails nothing. A guidance-distilled model's absent null branch is skipped, not failed.
The ``gate`` testcase fails when the gate does, and its failure names every failed axis; the
``failed_axes`` property lists them too.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Optional, Union

from .markdown import as_data, word
from ..result import ScanResult
from ..verdict.gate import failure_lines, result_gate, verdict_fails

SUITE = "collapsecheck"
#: the null-branch verdicts placed on the guidance scale, for the gate
NULL_AS_GUIDANCE = {"learned": "steerable", "unclear": "weak", "not_learned": "not_steerable"}


def fails(verdict: Optional[str], fail_on: str) -> bool:
    """Does a testcase with this verdict fail under ``--fail-on fail_on``?"""
    return verdict_fails(verdict, fail_on)


def null_fails(null_verdict: Optional[str], fail_on: str) -> bool:
    """Does the null-branch testcase fail: ``null_not_learned``, or a guidance axis on the guidance scale?"""
    return fails(null_verdict, fail_on) or fails(NULL_AS_GUIDANCE.get(null_verdict or ""), fail_on)


def _case(suite: ET.Element, classname: str, name: str, verdict: str, reasons: list[str], failed: bool,
          skipped: Optional[str] = None) -> None:
    case = ET.SubElement(suite, "testcase", classname=classname, name=name, time="0")
    text = "\n".join(reasons)
    if skipped:
        ET.SubElement(case, "skipped", message=skipped)
    elif failed:
        node = ET.SubElement(case, "failure", message=f"{word(verdict)}: {reasons[0] if reasons else ''}"[:500], type=verdict)
        node.text = text
    out = ET.SubElement(case, "system-out")
    out.text = f"verdict: {verdict}\n{text}"


def to_junit(result: Union[ScanResult, dict], fail_on: str) -> str:
    """The result as a JUnit XML document (a string)."""
    data = as_data(result)
    g = data["guidance"]
    null = g.get("null_branch") or {}
    root = ET.Element("testsuites", name=SUITE)
    suite = ET.SubElement(root, "testsuite", name=SUITE, timestamp=str(data.get("created", "")),
                          time=f"{float(data.get('seconds') or 0):.3f}")
    props = ET.SubElement(suite, "properties")
    ck = data.get("checkpoint") or {}
    gate = result_gate(data, fail_on)
    for key, value in (("checkpoint", ck.get("path")), ("content_hash", ck.get("content_hash")), ("fail_on", gate.fail_on),
                       ("failed_axes", ",".join(gate.failed)), ("verdict_guidance_scale", data.get("verdict_guidance_scale"))):
        ET.SubElement(props, "property", name=key, value=str(value))

    for c in data["conditions"]:
        _case(suite, f"{SUITE}.conditions", f"{c['label']}: collapse", c["verdict"], list(c.get("reasons") or []),
              fails(c["verdict"], fail_on))
    _case(suite, f"{SUITE}.checks", "overall collapse", data["verdict"], list(data.get("reasons") or []),
          fails(data["verdict"], fail_on))
    _case(suite, f"{SUITE}.checks", "guidance", g["verdict"], list(g.get("reasons") or []), fails(g["verdict"], fail_on))
    nv = null.get("verdict", "unclear")
    _case(suite, f"{SUITE}.checks", "null branch", nv, list(null.get("reasons") or []),
          null_fails(nv, fail_on),
          skipped="guidance-distilled model: no null branch by design" if nv == "absent_by_design" else None)
    base = data.get("baseline")
    if base:
        regressions = list(base.get("regressions") or [])
        verdict = "passed" if base.get("passed") else "regressed"
        _case(suite, f"{SUITE}.checks", "baseline comparison", verdict,
              regressions or [f"no diversity drop above {base.get('max_drop', 0):.0%} and no worse verdict"],
              "regression" in gate.failed)
    lines = failure_lines(gate)
    _case(suite, f"{SUITE}.checks", "gate", "failed" if lines else "passed",
          [f"--fail-on {gate.fail_on} failed on {len(lines)} axis(es): " + "; ".join(lines)] if lines
          else [f"--fail-on {gate.fail_on}: every axis passes"], bool(lines))

    cases = suite.findall("testcase")
    suite.set("tests", str(len(cases)))
    suite.set("failures", str(sum(c.find("failure") is not None for c in cases)))
    suite.set("errors", "0")
    suite.set("skipped", str(sum(c.find("skipped") is not None for c in cases)))
    for key in ("tests", "failures", "errors"):
        root.set(key, suite.get(key))
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
