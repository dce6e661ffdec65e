"""The HTML renderer: one self-contained page (inline CSS, images as base64 data URIs, no scripts,
no fonts or anything else fetched), so it opens offline and can be attached to a CI run as is.
"""
from __future__ import annotations

import base64
import html
import json
from typing import Mapping, Optional, Union

from .markdown import (
    BASELINE_HEADER,
    condition_header,
    IMAGE_TITLES,
    MAX_ROWS,
    SWEEP_HEADER,
    as_data,
    baseline_rows,
    checkpoint_line,
    condition_rows,
    headline,
    key_numbers,
    notes,
    recovery_rows,
    RECOVERY_HEADER,
    sweep_rows,
    word,
)
from ..result import ScanResult
from .style import LEVEL_COLOURS, level, verdict_hex
from .witnesses import html_parts

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2rem auto; max-width: 1200px;
       padding: 0 1rem; color: #1e1e1e; line-height: 1.45; }
h1 { font-size: 1.6rem; margin-bottom: .3rem; } h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
.badges { display: flex; gap: .8rem; flex-wrap: wrap; margin: .8rem 0; }
.badge { border-radius: 6px; padding: .45rem .8rem; color: white; font-weight: 600; }
.badge small { display: block; font-weight: 400; opacity: .9; }
.gate { font-size: 1.05rem; } .gate.fail { color: BAD; } .gate.pass { color: GOOD; }
.muted { color: #666; font-size: .9rem; }
table { border-collapse: collapse; margin: .6rem 0; font-size: .92rem; }
th, td { border: 1px solid #ddd; padding: .25rem .6rem; text-align: left; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f4f4f4; }
img { max-width: 100%; height: auto; border: 1px solid #eee; } img.sheet { image-rendering: pixelated; }
figure { margin: 1rem 0; } figcaption { color: #555; font-size: .9rem; }
pre { background: #f6f6f6; padding: .6rem; overflow-x: auto; font-size: .8rem; }
.regression { color: BAD; font-weight: 600; }
""".replace("BAD", LEVEL_COLOURS["bad"]).replace("GOOD", LEVEL_COLOURS["good"])


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _badge(name: str, verdict: str) -> str:
    colour = verdict_hex(verdict)
    return f'<div class="badge" style="background:{colour}"><small>{_e(name)}</small>{_e(word(verdict))}</div>'


def _table(header: list[str], rows: list[list], numeric_from: int = 1) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for i, v in enumerate(row):
            cls = ' class="num"' if i >= numeric_from and _looks_numeric(v) else ""
            cls = ' class="regression"' if v == "REGRESSION" else cls
            cells.append(f"<td{cls}{_verdict_style(v)}>{_e(v)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _verdict_style(text) -> str:
    """A verdict word's colour, as a style attribute ('' for anything else)."""
    verdict = str(text).replace(" ", "_")
    return f' style="color:{verdict_hex(verdict)};font-weight:600"' if level(verdict) else ""


def _looks_numeric(value) -> bool:
    text = str(value).rstrip("%").lstrip("+-")
    try:
        float(text)
        return True
    except ValueError:
        return False


def _md_inline(text: str) -> str:
    """The little Markdown our text fragments use (`code`, **bold**), escaped otherwise."""
    out, bold = [], False
    parts = _e(text).replace("**", "\0").split("`")
    for i, part in enumerate(parts):
        if i % 2 == 1:
            out.append(f"<code>{part.replace(chr(0), '**')}</code>")
            continue
        pieces = part.split("\0")
        for j, piece in enumerate(pieces):
            if j:
                bold = not bold
                out.append("<b>" if bold else "</b>")
            out.append(piece)
    if bold:
        out.append("</b>")
    return "".join(out)


def image_tag(png: bytes, alt: str, cls: str = "") -> str:
    data = base64.b64encode(png).decode("ascii")
    klass = f' class="{cls}"' if cls else ""
    return f'<img{klass} alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def to_html(result: Union[ScanResult, dict], images: Optional[Mapping[str, bytes]] = None,
            max_rows: int = MAX_ROWS) -> str:
    """The whole report as one HTML page. ``images``: kind -> PNG bytes (see IMAGE_TITLES)."""
    data = as_data(result)
    images = images or {}
    g = data["guidance"]
    gate = data.get("gate") or {}
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>collapsecheck: {_e(word(data['verdict']))}</title><style>{CSS}</style></head><body>",
        f"<h1>collapsecheck: {_e(word(data['verdict']))}</h1>",
        '<div class="badges">' + "".join(_badge(k, v) for k, v in headline(data)) + "</div>",
    ]
    if gate:
        passed = gate.get("passed")
        text = f"Gate --fail-on {gate.get('fail_on')}: {'pass' if passed else 'FAIL'}"
        if "baseline_passed" in gate:
            text += f" (verdict {'passes' if gate.get('verdict_passed') else 'fails'}, " \
                    f"baseline comparison {'passes' if gate.get('baseline_passed') else 'fails'})"
        if gate.get("failed"):
            text += f"; failed: {', '.join(gate['failed'])}"
        parts.append(f'<p class="gate {"pass" if passed else "fail"}">{_e(text)}</p>')
    parts.append(f'<p class="muted">{_md_inline(checkpoint_line(data))}</p>')
    parts.append("<h2>Why</h2><ul>" + "".join(f"<li>{_e(r)}</li>" for r in list(data.get("reasons") or []) + list(g.get("reasons") or [])) + "</ul>")
    parts.append("<h2>What to do</h2><ul>" + "".join(f"<li>{_e(r)}</li>" for r in data.get("recommendations") or []) + "</ul>")
    parts.append("<h2>Numbers</h2>" + _table(["number", "value", "direction"], [list(r) for r in key_numbers(data)]).replace("`", ""))
    if images.get("contact_sheet"):
        parts.append(f"<h2>Samples</h2><figure>{image_tag(images['contact_sheet'], IMAGE_TITLES['contact_sheet'], 'sheet')}"
                     f"<figcaption>{_e(IMAGE_TITLES['contact_sheet'])}; the same seed is the same initial noise "
                     f"in every row and panel.</figcaption></figure>")
    rows, left = condition_rows(data, max_rows)
    parts.append("<h2>Conditions (least diverse first)</h2>" + _table(*condition_header(rows), numeric_from=2))
    if left:
        parts.append(f'<p class="muted">{left} more conditions are in the JSON.</p>')
    parts.append('<p class="muted">↑ higher = more diverse, ↓ higher = less diverse; eps_ratio: higher = the condition pulls harder.</p>')
    parts.append(f"<h2>Guidance sweep (guidance: {_e(word(g['verdict']))})</h2>" + _table(SWEEP_HEADER, sweep_rows(data), numeric_from=0))
    recovery = recovery_rows(data)
    if recovery:
        parts.append("<h2>Can sampling bring diversity back?</h2>" + _table(RECOVERY_HEADER, recovery))
    for kind in ("guidance", "eps_profile", "posterior"):
        if images.get(kind):
            parts.append(f"<figure>{image_tag(images[kind], IMAGE_TITLES[kind])}<figcaption>{_e(IMAGE_TITLES[kind])}</figcaption></figure>")
    base = data.get("baseline")
    if base:
        verdict = "passes" if base.get("passed") else "FAILS"
        parts.append(f"<h2>Compared with the baseline: {verdict}</h2>")
        parts.append(f'<p class="muted">Baseline {_e(base.get("path") or base.get("checkpoint"))} (scanned {_e(base.get("created") or "?")}); '
                     f"a diversity drop of more than {base.get('max_drop', 0):.0%} or a worse verdict fails.</p>")
        if base.get("regressions"):
            parts.append("<ul>" + "".join(f'<li class="regression">{_e(r)}</li>' for r in base["regressions"]) + "</ul>")
        parts.append(_table(BASELINE_HEADER, baseline_rows(base, max_rows), numeric_from=2))
    parts += html_parts(data, images.get("reference_sheet"))  # --reference, --train-images, --features
    parts.append("<h2>Notes and assumptions</h2><ul>" + "".join(f"<li>{_e(n)}</li>" for n in notes(data)) + "</ul>")
    cfg = json.dumps({k: data.get(k) for k in ("config", "versions", "seeds", "nfe", "seconds", "device", "created")}, indent=2, default=str)
    parts.append(f"<h2>Settings</h2><details><summary>resolved configuration and versions</summary><pre>{_e(cfg)}</pre></details>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
