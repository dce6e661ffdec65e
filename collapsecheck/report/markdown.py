"""The Markdown renderer (report folder, GitHub step summary), and the facts every text renderer shares.

Order, as in the terminal report: the verdicts first, then why, what to do, the numbers with their
direction, the guidance sweep, the baseline comparison, and the notes and assumptions. Reads the
result as its JSON dict, so results read back from a file render the same.
"""
from __future__ import annotations

from typing import Mapping, Optional, Union

from ..result import ScanResult
from ..verdict.gate import failure_lines
from .evidence import evidence_text
from .style import verdict_mark
from .witnesses import markdown_with_sheet

#: at most this many conditions are listed; the rest are summarised
MAX_ROWS = 24

IMAGE_TITLES = {
    "contact_sheet": "Contact sheet: a panel per guidance scale w, top to bottom; in each a row per condition and a column per seed",
    "guidance": "Seed diversity by guidance scale",
    "eps_profile": "Condition strength (eps ratio) by timestep",
    "posterior": "Posterior variance by timestep",
}


def as_data(result: Union[ScanResult, dict]) -> dict:
    return result.to_dict() if isinstance(result, ScanResult) else result


def fmt(value, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if abs(value) >= 10 ** -digits or value == 0 else f"{value:.2e}"
    return str(value)


def pct(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def word(verdict: Optional[str]) -> str:
    return "n/a" if verdict is None else str(verdict).replace("_", " ")


def marked(verdict: Optional[str]) -> str:
    """The verdict's colour mark and a space ('' for an unknown verdict)."""
    mark = verdict_mark(verdict)
    return f"{mark} " if mark else ""


def null_number(null: Mapping) -> tuple[str, Optional[float]]:
    """The number the null-branch verdict used, by whichever name this schema gives it (the null ratio since it
    decides; the hull residual or centroid gap in older results)."""
    for key in ("null_ratio", "residual", "centroid_gap"):
        if null.get(key) is not None or (key != "null_ratio" and key in null):
            return key, null.get(key)
    return "centroid_gap", None


def mean(values) -> Optional[float]:
    values = [v for v in values]
    if not values or any(v is None for v in values):
        return None
    return sum(values) / len(values)


def key_numbers(data: dict) -> list[tuple[str, str, str]]:
    """(number, value, direction) rows for the headline table."""
    conds = data["conditions"]
    g = data["guidance"]
    w = data.get("verdict_guidance_scale", 1.0)
    name, value = null_number(g.get("null_branch") or {})
    n_coll = sum(c["verdict"] == "collapsed" for c in conds)
    n_risk = sum(c["verdict"] == "at_risk" for c in conds)
    lp = data.get("lpips") or {}
    rows = [
        ("conditions collapsed / at risk", f"{n_coll}/{len(conds)} / {n_risk}/{len(conds)}", "lower = better"),
        (f"mean `pixel_rms` at w = {w:g}", fmt(mean(c.get("pixel_rms") for c in conds)), "higher = more diverse"),
        (f"mean `seed_share` at w = {w:g}", fmt(mean(c.get("seed_share") for c in conds)), "higher = more diverse"),
        (f"mean `lpips` at w = {w:g}",
         fmt(mean(c.get("lpips") for c in conds)) if lp.get("available") else f"n/a ({lp.get('reason') or 'unavailable'})",
         "higher = more diverse"),
        ("mean `near_duplicates`", pct(mean(c.get("near_duplicates") for c in conds)), "higher = less diverse"),
        ("mean `eps_ratio`", fmt(mean(c.get("eps_ratio") for c in conds)), "higher = the condition pulls harder"),
        ("guidance `max_shift` (pixel RMS from w = 1)", fmt(g.get("max_shift")), "higher = guidance moves samples more"),
        (f"null branch `{name}`", fmt(value), "lower = a learned unconditional branch"
         + (" (< 1: learned)" if name == "null_ratio" else "")),
        ("null branch `null_spread` (w = 0 seed variance / w = 1 grid's)",
         fmt((g.get("null_branch") or {}).get("null_spread")), "higher = more varied (about 1: the marginal)"),
        ("null branch `null_coverage` (entropy of the w = 0 samples' conditions)",
         fmt((g.get("null_branch") or {}).get("null_coverage")), "higher = more even (1: every condition alike)"),
        ("null branch `null_data_share` (w = 0 seed variance / the data images')",
         fmt((g.get("null_branch") or {}).get("null_data_share")), "higher = more varied (about 1: as the data)"),
    ]
    return rows


def notes(data: dict) -> list[str]:
    """Every assumption and limitation the reader should know, in plain words."""
    ck = data.get("checkpoint") or {}
    out = list(ck.get("notes") or [])
    lp = data.get("lpips") or {}
    if not lp.get("available"):
        out.append(f"LPIPS unavailable: {lp.get('reason') or 'no reason recorded'}; the verdict is judged from the pixel measures")
    elif lp.get("note"):
        out.append(f"LPIPS ({lp.get('net')}): {lp['note']}")
    if ck.get("scheduler_source"):
        out.append(f"schedule: {ck['scheduler_source']}")
    out.append(
        f"{len(data.get('seeds') or [])} seeds per condition: diversity numbers are estimates from "
        f"{len(data.get('seeds') or [])} samples; use more --seeds for tighter numbers"
    )
    base = data.get("baseline")
    if base:
        out.extend(f"baseline: {n}" for n in base.get("notes") or [])
    return out


def headline(data: dict) -> list[tuple[str, str]]:
    g = data["guidance"]
    return [
        (f"collapse (at w = {data.get('verdict_guidance_scale', 1.0):g})", data["verdict"]),
        ("guidance", g["verdict"]),
        ("null branch", (g.get("null_branch") or {}).get("verdict", "n/a")),
    ]


def gate_text(data: dict) -> Optional[str]:
    gate = data.get("gate") or {}
    if not gate:
        return None
    text = f"gate `--fail-on {gate['fail_on']}`: **{'pass' if gate['passed'] else 'FAIL'}**"
    if "baseline_passed" in gate:
        text += f" (verdict {'passes' if gate.get('verdict_passed') else 'fails'}, " \
                f"baseline comparison {'passes' if gate['baseline_passed'] else 'fails'})"
    lines = failure_lines(gate)
    if lines:
        text += "; failed: " + "; ".join(f"`{line.split(':', 1)[0]}` ({line.split(': ', 1)[1]})" for line in lines)
    return text


def checkpoint_line(data: dict) -> str:
    ck = data.get("checkpoint") or {}
    cfg = data.get("config") or {}
    parts = [
        f"`{ck.get('source') or ck.get('path')}`",
        f"{ck.get('model_class', '?')}, {ck.get('condition_kind', '?')} conditions, {ck.get('prediction_type', '?')}",
        f"{len(data['conditions'])} conditions x {len(data.get('seeds') or [])} seeds, {cfg.get('steps', '?')} DDIM steps",
    ]
    if ck.get("content_hash"):
        parts.append(f"content hash `{ck['content_hash']}`")
    return " · ".join(parts)


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    out += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return out


def condition_rows(data: dict, max_rows: int = MAX_ROWS) -> tuple[list[list[str]], int]:
    """Per-condition rows, least diverse first; and how many were left out."""
    conds = sorted(data["conditions"], key=lambda c: c.get("pixel_rms") or 0.0)
    rows = [
        [c["label"], word(c["verdict"]), fmt(c.get("pixel_rms")), fmt(c.get("pixel_std")),
         pct(c.get("near_duplicates")) + ("" if c.get("near_duplicates_stderr") is None
                                          else f" ± {pct(c['near_duplicates_stderr'])}"),
         fmt(c.get("seed_share")), fmt(c.get("lpips")), fmt(c.get("eps_ratio")), evidence_text(c)]
        for c in conds[:max_rows]
    ]
    return rows, max(0, len(conds) - max_rows)


CONDITION_HEADER = ["condition", "verdict", "pixel_rms ↑", "pixel_std ↑", "near-dup ↓", "seed_share ↑", "lpips ↑", "eps_ratio",
                    "decided by"]


def condition_header(rows: list[list[str]]) -> tuple[list[str], list[list[str]]]:
    """The header and rows, without the 'decided by' column when no row records its evidence."""
    if any(row[-1] for row in rows):
        return CONDITION_HEADER, rows
    return CONDITION_HEADER[:-1], [row[:-1] for row in rows]
SWEEP_HEADER = ["w", "pixel_rms ↑", "near-dup ↓", "lpips ↑", "shift from w = 1", "implicit adherence ↑",
                "break ratio ↓"]


def sweep_rows(data: dict) -> list[list[str]]:
    return [[f"{p['w']:g}", fmt(p.get("pixel_rms")), pct(p.get("near_duplicates")), fmt(p.get("lpips")),
             fmt(p.get("shift_from_w1")), _with_stderr(p.get("implicit_adherence"), p.get("implicit_adherence_stderr")),
             fmt(p.get("break_ratio"))] for p in sorted(data["guidance"].get("sweep") or [], key=lambda p: p["w"])]


def _with_stderr(value: Optional[float], stderr: Optional[float]) -> str:
    return fmt(value) if value is None or stderr is None else f"{fmt(value)} ± {fmt(stderr)}"


RECOVERY_HEADER = ["probe", "pixel_rms ↑", "verdict", "works", "why"]


def recovery_rows(data: dict) -> list[list[str]]:
    """Sampling-side recovery probes, when the scan tried them (``guidance.recovery``)."""
    return [[p.get("description") or p.get("name", "?"), fmt(p.get("pixel_rms")), word(p.get("verdict")),
             word(p.get("works")), p.get("reason", "")] for p in data["guidance"].get("recovery") or []]


def baseline_rows(base: dict, max_rows: int = MAX_ROWS) -> list[list[str]]:
    """The comparison's changes, regressions and verdicts first."""
    changes = sorted(base.get("changes") or [], key=lambda c: (not c["regressed"], c["condition"] is not None,
                                                                c["change"] if c["change"] is not None else 0.0))
    rows = []
    for c in changes[:max_rows]:
        change = "" if c["change"] is None else f"{c['change']:+.0%}"
        before = fmt(c["before"]) if not isinstance(c["before"], str) else word(c["before"])
        after = fmt(c["after"]) if not isinstance(c["after"], str) else word(c["after"])
        rows.append([c["condition"] or "whole scan", c["measure"], before, after, change, "REGRESSION" if c["regressed"] else "ok"])
    return rows


BASELINE_HEADER = ["condition", "measure", "before", "after", "change", ""]


def _range_warning(data: dict) -> list[str]:
    """A visible warning when the verdicts rest on samples outside the data range."""
    r = data.get("sample_range")
    if not r or r.get("reliable", True):
        return []
    return [f"> **WARNING: the verdicts are unreliable**: the {r['sampler']} samples leave the data range [-1, 1] "
            f"({r['outside_share']:.1%} of values far outside, variance {r['variance']:.3g}, largest |x| {r['max_abs']:.3g}).", ""]


def summary_markdown(result: Union[ScanResult, dict], images: Optional[Mapping[str, str]] = None,
                     max_rows: int = MAX_ROWS) -> str:
    """The report as Markdown. ``images``: kind -> relative file name of the PNGs to link."""
    data = as_data(result)
    g = data["guidance"]
    out = [f"# collapsecheck: {word(data['verdict'])}", ""]
    out += _table(["verdict", ""], [[k, f"{marked(v)}**{word(v)}**"] for k, v in headline(data)])
    out.append("")
    gate = gate_text(data)
    if gate:
        out += [gate, ""]
    out += _range_warning(data)
    out += [checkpoint_line(data), ""]
    out += ["## Why", ""] + [f"- {_cell(r)}" for r in list(data.get("reasons") or []) + list(g.get("reasons") or [])] + [""]
    out += ["## What to do", ""] + [f"- {_cell(r)}" for r in data.get("recommendations") or []] + [""]
    out += ["## Numbers", ""] + _table(["number", "value", "direction"], [list(r) for r in key_numbers(data)]) + [""]
    if images and images.get("contact_sheet"):
        out += [f"![{IMAGE_TITLES['contact_sheet']}]({images['contact_sheet']})", ""]
    rows, left = condition_rows(data, max_rows)
    rows = [[row[0], marked(row[1].replace(" ", "_")) + row[1], *row[2:]] for row in rows]
    out += ["## Conditions (least diverse first)", ""] + _table(*condition_header(rows))
    if left:
        out.append(f"\n{left} more conditions are in the JSON.")
    out += ["", "↑ higher = more diverse, ↓ higher = less diverse; eps_ratio: higher = the condition pulls harder.", ""]
    out += [f"## Guidance sweep (guidance: {word(g['verdict'])})", ""] + _table(SWEEP_HEADER, sweep_rows(data)) + [""]
    recovery = recovery_rows(data)
    if recovery:
        out += ["## Can sampling bring diversity back?", ""] + _table(RECOVERY_HEADER, recovery) + [""]
    for kind in ("guidance", "eps_profile", "posterior"):
        if images and images.get(kind):
            out += [f"![{IMAGE_TITLES[kind]}]({images[kind]})", ""]
    base = data.get("baseline")
    if base:
        verdict = "passes" if base.get("passed") else "FAILS"
        out += [f"## Compared with the baseline: {verdict}", "",
                f"Baseline `{base.get('path') or base.get('checkpoint')}` (scanned {base.get('created') or '?'}); "
                f"a diversity drop of more than {base.get('max_drop', 0):.0%} or a worse verdict fails.", ""]
        out += [f"- {_cell(r)}" for r in base.get("regressions") or []]
        out += [""] + _table(BASELINE_HEADER, baseline_rows(base, max_rows)) + [""]
    out += markdown_with_sheet(data, (images or {}).get("reference_sheet"))  # --reference, --train-images, --features
    out += ["## Notes and assumptions", ""] + [f"- {_cell(n)}" for n in notes(data)] + [""]
    cfg = data.get("config") or {}
    out += [
        "## Settings", "",
        f"seeds {fmt(data.get('seeds'))}; guidance sweep {cfg.get('guidance')}; verdict at w = {data.get('verdict_guidance_scale', 1.0):g}; "
        f"{data.get('nfe', 0):,} network evaluations in {data.get('seconds', 0):.1f} s on {data.get('device')}; "
        f"created {data.get('created')}; versions "
        + ", ".join(f"{k} {v}" for k, v in (data.get("versions") or {}).items()),
        "",
    ]
    return "\n".join(out)
