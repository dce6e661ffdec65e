"""The report's sections for ``--reference`` (diversity relative to the base model, and the base and fine-tune
samples side by side), ``--train-images`` (training images reproduced), ``--data-images`` (the seeds against the
data's within-class variance) and ``--features`` (the Vendi score next to pixel and LPIPS diversity). Each section is one neutral :class:`Section` (title, bullets, table) that
the Markdown, HTML and terminal renderers draw alike. Pure."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Union

import numpy as np
from PIL import Image, ImageDraw

from ..result import ScanResult
from ..verdict.rules import PIXEL_ALIGNED
from .images import GAP, MARGIN, cell_geometry, font, text_width, to_uint8
from .style import INK, MUTED, hex_to_rgb, verdict_rgb

#: at most this many conditions in the side-by-side sheet and the tables
MAX_ROWS = 32


@dataclass
class Section:
    title: str
    bullets: list[str]
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)


def _f(value, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}g}"


def _pct(value) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def reference_section(data: dict) -> Optional[Section]:
    ref = data.get("reference")
    if not ref:
        return None
    bullets = [f"base model `{ref['path']}` (its own verdict: {ref['base_verdict']}); same conditions, seeds, "
               "steps and guidance; left = this model / the base, the smaller of the pixel RMS and LPIPS ratios"]
    bullets += list(ref.get("reasons") or []) + list(ref.get("notes") or [])
    if ref.get("own_verdict"):
        bullets.append(f"against its own spread alone this model reads {ref['own_verdict'].replace('_', ' ')}; the "
                       "scan's verdict takes each condition judged both ways (the worse of the two, but at risk where "
                       "the base is as narrow as a collapsed condition)")
    if ref.get("w0_ratio") is not None:
        bullets.append(f"w = 0 (null branch): seed diversity {ref['w0_ratio']:.0%} of the base model's")
    vendi = any(c.get("vendi_ratio") is not None for c in ref["conditions"])
    rows = [[c["label"], c["verdict"], _pct(c.get("ratio")), _pair(c["pixel_rms"], c["base_pixel_rms"], c.get("pixel_ratio")),
             _pair(c.get("lpips"), c.get("base_lpips"), c.get("lpips_ratio"))]
            + ([_pair(c.get("vendi"), c.get("base_vendi"), c.get("vendi_ratio"))] if vendi else [])
            for c in sorted(ref["conditions"], key=lambda c: (c.get("ratio") is None, c.get("ratio") or 0))[:MAX_ROWS]]
    return Section(f"Relative to the base model: {ref['verdict'].replace('_', ' ')}", bullets,
                   ["condition", "relative", "left", "pixel RMS: this/base", "LPIPS: this/base"]
                   + (["Vendi: this/base"] if vendi else []), rows)


def _pair(value, base, ratio) -> str:
    return "n/a" if value is None or base is None else f"{_f(value)}/{_f(base)} ({_pct(ratio)})"


def copies_section(data: dict) -> Optional[Section]:
    cp = data.get("copies")
    if not cp:
        return None
    yard = "; ".join(f"{m['metric']}: the training images' median nearest-neighbour distance {m['train_median_nn']:.3g}, "
                     f"threshold {m['threshold']:.3g}" for m in cp["metrics"])
    bullets = [f"{cp['images']} training images in `{cp['train_images']}`, resized to {cp['resized_to'][0]}x"
               f"{cp['resized_to'][1]}; a sample reproduces its nearest training image when closer than "
               f"copy_distance_fraction {cp['copy_distance_fraction']:g} x the median ({yard})"]
    bullets += list(cp.get("findings") or []) or ["no sample reproduces a training image"]
    rows = [[c["label"], f"{(c.get('copies') or c['pixel_rms'])['copies']} of {c['seeds']}",
             str(c["pixel_rms"]["copies"]), "n/a" if c.get("lpips") is None else str(c["lpips"]["copies"]),
             ", ".join(f"{i['name']} ({i['count']})" for i in (c.get("copies") or c["pixel_rms"])["images"][:3]) or "-"]
            for c in cp["conditions"][:MAX_ROWS]]
    return Section("Training images reproduced", bullets,
                   ["condition", "copies", "by pixel RMS", "by LPIPS", "images copied (seeds)"], rows)


#: beside a collapsed verdict: why its rho reads too high (tests/test_data_reference.py: 7 times on ten classes)
COLLAPSED_RHO = ("the model collapsed: its conditions' means are nearly single images, whose spread holds the "
                 "within-class variance too, so the between variance above is too large, the within estimate too "
                 "small and rho several times too high; it decides nothing here (the "
                 "data rule reads only a model otherwise healthy)")


#: what a hint's cell share is and how it is read (pixel-aligned conditions have no rho)
HINT_CELLS = ("cell share = the spread of a hint's seeds (the median over pairs of seeds of half their mean squared "
              "distance) over the robust spread of its own cell (the data images nearest its samples' mean; the median "
              "squared distance to the cell's pixel-wise median); a hint reads collapsed below "
              "hint_cell_collapsed_share, and one its seed share reads collapsed reads at risk from it up (lower = "
              "narrower)")


def hint_cells_section(data: dict) -> Optional[Section]:
    """Each pixel-aligned condition against its own cell of the data (no rho: a hint is no class); None for another
    kind of condition or without a cell share."""
    labels = data.get("labels") or []
    cells = data.get("cells") or []
    if data.get("kind") not in PIXEL_ALIGNED or not any(share is not None for share, _ in cells):
        return None
    rows = [[label, _f(share), "n/a" if size is None else str(size)]
            for label, (share, size) in sorted(zip(labels, cells), key=lambda p: p[1][0] if p[1][0] is not None
                                               else float("inf"))[:MAX_ROWS]]
    return Section("Against the training data: each hint against its own cell", [HINT_CELLS],
                   ["condition", "cell share", "cell images"], rows)


def data_section(data: dict) -> Optional[Section]:
    dr = data.get("data_reference")
    if not dr:
        return hint_cells_section(data)
    bullets = [f"{dr['images']} data images, no labels: per-pixel variance {dr['data_variance']:.3g}, less the "
               f"conditions' between variance {dr['between']:.3g}, estimates the data's within-class variance at "
               f"{dr['within']:.3g}; rho = a condition's seed variance over it (1: as varied as the data's class, "
               "lower = narrower); a healthy model whose mean rho is below data_relative_diversity reads at risk"]
    if data.get("verdict") == "collapsed":
        bullets.append(COLLAPSED_RHO)
    if dr.get("escalated"):
        bullets.append("fast mode: read from every condition re-drawn at full settings (16 seeds, 25 steps)")
    labels = data.get("labels") or [str(i) for i in range(len(dr["per_condition"]))]
    cells = data.get("cells") or [(None, None)] * len(labels)
    if any(share is not None for share, _ in cells):
        bullets.append("cell share = the spread of a condition's seeds (the median over pairs of seeds of half "
                       "their mean squared distance) over the robust spread of its own cell (the data images nearest "
                       "its samples' mean; the median squared distance to the cell's pixel-wise median); a condition "
                       "its seed share reads collapsed reads at risk from "
                       "cell_collapsed_share up (lower = narrower)")
    rows = [[label, _f(r), _f(share), "n/a" if size is None else str(size)]
            for label, r, (share, size) in sorted(zip(labels, dr["per_condition"], cells), key=lambda p: p[1])[:MAX_ROWS]]
    return Section(f"Against the training data: mean rho {dr['mean']:.3g}", bullets,
                   ["condition", "rho", "cell share", "cell images"], rows)


def vendi_section(data: dict) -> Optional[Section]:
    feats = data.get("features")
    if not feats:
        return None
    seeds = len(data.get("seeds") or [])
    bullets = [f"Vendi score over `{feats['path']}` ({feats['model_type']}) embeddings: the effective number of "
               f"distinct samples among the {seeds} seeds, in [1, {seeds}] (higher = more diverse content)"]
    rows = [[c["label"], _f(c["pixel_rms"]), _f(c.get("lpips")), _f(c.get("vendi"))]
            for c in data["conditions"][:MAX_ROWS]]
    return Section("Content diversity (Vendi score)", bullets, ["condition", "pixel RMS", "LPIPS", "Vendi"], rows)


def _data(result: Union[ScanResult, dict]) -> dict:
    """What the sections read, from a result or its JSON dict (without serialising the whole result)."""
    if isinstance(result, dict):
        conds = result.get("conditions") or []
        return dict(result, labels=[c["label"] for c in conds], kind=(result.get("condition_set") or {}).get("kind"),
                    cells=[(c.get("cell_share"), c.get("cell_images")) for c in conds])
    conds = [{"label": c.label, "pixel_rms": c.pixel_rms, "lpips": c.lpips, "vendi": getattr(c, "vendi", None)}
             for c in result.conditions] if getattr(result, "features", None) else []
    return {"reference": getattr(result, "reference", None), "copies": getattr(result, "copies", None),
            "features": getattr(result, "features", None), "seeds": list(result.seeds or []), "conditions": conds,
            "data_reference": getattr(result, "data_reference", None), "verdict": result.verdict,
            "labels": [c.label for c in result.conditions], "kind": (result.condition_set or {}).get("kind"),
            "cells": [(c.cell_share, c.cell_images) for c in result.conditions]}


def sections(result: Union[ScanResult, dict]) -> list[Section]:
    data = _data(result)
    return [s for s in (reference_section(data), copies_section(data), data_section(data), vendi_section(data))
            if s is not None]


def markdown_lines(result: Union[ScanResult, dict]) -> list[str]:
    out = []
    for s in sections(result):
        out += [f"## {s.title}", ""] + [f"- {b}" for b in s.bullets] + [""]
        if s.rows:
            out += ["| " + " | ".join(s.header) + " |", "|" + "---|" * len(s.header)]
            out += ["| " + " | ".join(r) + " |" for r in s.rows] + [""]
    return out


# ------------------------------------------------------------------------------- side-by-side sheet


def side_by_side(result: ScanResult) -> Optional[Image.Image]:
    """The base model's samples (left) and this model's (right) at the verdict scale, a row per condition
    (the same seed in the same column); None without --reference samples."""
    if getattr(result, "reference_samples", None) is None or result.samples is None or not result.reference:
        return None
    wi = [p.w for p in result.guidance.sweep].index(result.verdict_guidance_scale)
    base, mine = to_uint8(result.reference_samples), to_uint8(result.samples[wi])
    C, S, _, H, W = mine.shape
    rows = list(range(min(C, MAX_ROWS)))
    cell_h, cell_w, scale = cell_geometry(H, W, 2 * S)
    rel = {c["index"]: c for c in result.reference["conditions"]}
    labels = [[(result.conditions[c].label[:30], INK), (f"{rel[c]['verdict'].replace('_', ' ')}: "
                                                        f"{_pct(rel[c].get('ratio'))} of the base", rel[c]["verdict"])]
              for c in rows]
    left = MARGIN + max([text_width(t, font(14)) for lab in labels for t, _ in lab] + [110]) + 16
    block = S * (cell_w + GAP)
    row_h = max(cell_h, 2 * 17) + GAP
    img = Image.new("RGB", (left + 2 * block + 24 + MARGIN, 60 + len(rows) * row_h + 10), (255, 255, 255))
    d = ImageDraw.Draw(img)
    d.text((left, 10), f"base model: {result.reference['path']}"[:60], fill=hex_to_rgb(INK), font=font(14))
    d.text((left + block + 24, 10), "this model", fill=hex_to_rgb(INK), font=font(14))
    d.text((left, 30), f"w = {result.verdict_guidance_scale:g}; seeds {result.seeds[0]}..{result.seeds[-1]} in both blocks",
           fill=hex_to_rgb(MUTED), font=font(12))
    for r, c in enumerate(rows):
        y = 52 + r * row_h
        for i, (text, colour) in enumerate(labels[r]):
            d.text((MARGIN, y + i * 17), text, fill=hex_to_rgb(INK) if i == 0 else verdict_rgb(colour), font=font(13))
        for b, (x0, samples) in enumerate(((left, base[c]), (left + block + 24, mine[c]))):
            for s in range(S):
                img.paste(_tile(samples[s], cell_w, cell_h, scale), (x0 + s * (cell_w + GAP), y))
    return img


def _tile(sample: np.ndarray, cell_w: int, cell_h: int, scale: float) -> Image.Image:
    ch = sample.shape[0]
    array = sample[0] if ch != 3 else np.ascontiguousarray(sample.transpose(1, 2, 0))
    tile = Image.fromarray(array, mode="L" if ch != 3 else "RGB").convert("RGB")
    return tile.resize((cell_w, cell_h), Image.NEAREST if scale >= 1 else Image.BOX)


# ------------------------------------------------------------------------------- renderer hooks

#: the side-by-side sheet's title, in Markdown and HTML
SHEET_TITLE = "Base model (left) and this model (right) at the verdict scale: a row per condition, the same seeds"


def markdown_with_sheet(result: Union[ScanResult, dict], sheet: Optional[str]) -> list[str]:
    """:func:`markdown_lines`, with the side-by-side sheet ``sheet`` (a file name) after the reference table."""
    lines = markdown_lines(result)
    if sheet and lines:
        lines += [f"![{SHEET_TITLE}]({sheet})", ""]
    return lines


def html_parts(result: Union[ScanResult, dict], sheet_png: Optional[bytes]) -> list[str]:
    """The sections as HTML, with the side-by-side sheet (PNG bytes) inlined."""
    import base64
    from html import escape

    parts = []
    for s in sections(result):
        parts.append(f"<h2>{escape(s.title)}</h2><ul>" + "".join(f"<li>{escape(b.replace('`', ''))}</li>"
                                                                for b in s.bullets) + "</ul>")
        if s.rows:
            head = "".join(f"<th>{escape(h)}</th>" for h in s.header)
            body = "".join("<tr>" + "".join(f"<td>{escape(v)}</td>" for v in r) + "</tr>" for r in s.rows)
            parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
    if sheet_png and parts:
        data = base64.b64encode(sheet_png).decode("ascii")
        parts.append(f'<figure><img class="sheet" alt="{escape(SHEET_TITLE)}" src="data:image/png;base64,{data}">'
                     f"<figcaption>{escape(SHEET_TITLE)}</figcaption></figure>")
    return parts


def print_sections(result: ScanResult, console) -> None:
    """The sections on a rich console."""
    from rich.table import Table
    from rich.text import Text

    for s in sections(result):
        console.print()
        console.print(Text(s.title, style="bold"))
        for b in s.bullets:
            console.print(f"  • {b.replace('`', '')}")
        if s.rows:
            table = Table(*s.header, show_edge=False, pad_edge=False)
            for r in s.rows:
                table.add_row(*r)
            console.print(table)
