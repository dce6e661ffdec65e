"""The contact sheet: one panel per guidance scale w, stacked top to bottom; in each panel a row per
condition and a column per seed.

Pure and deterministic: a ScanResult in, a PIL image and its layout out (the layout says where every
cell and label sits, so tests and other renderers can find a sample on the sheet). Samples are shown
as the scan measured them: clipped to [-1, 1] and mapped linearly to 0..255. Tiny images are enlarged
with nearest neighbour (an 8x8 digit stays 8x8 blocks, nothing is invented); large ones are shrunk
with a box filter. Every row is labelled with its condition, its verdict and the number that decided
it (when the result records one); every column with its seed; every panel with its w.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .evidence import decided_by
from .style import INK, MUTED, hex_to_rgb, verdict_rgb

#: at most this many condition rows; beyond it the least diverse are shown (the JSON has them all)
MAX_ROWS = 32
#: target width of the sample area in pixels (cells are enlarged or shrunk towards it)
TARGET_WIDTH = 720
MIN_CELL, MAX_CELL = 40, 96
GAP, MARGIN = 2, 14
#: vertical space: above a panel's title, the title, the seed numbers, between text lines
PANEL_SPACE, TITLE_HEIGHT, SEED_HEIGHT, LINE = 22, 26, 18, 17
BACKGROUND, CELL_GAP_COLOUR = (255, 255, 255), (210, 210, 210)
INK_RGB, MUTED_RGB = hex_to_rgb(INK), hex_to_rgb(MUTED)


@dataclass
class SheetLayout:
    """Where things are on the sheet, in pixels."""

    cell_width: int
    cell_height: int
    scale: float  # displayed pixels per sample pixel (an integer when enlarged)
    gap: int
    left: int  # x of the first column of cells
    panels: list[dict]  # per panel, top to bottom: w, sweep_index, top (y of its first row of cells), title
    rows: list[int]  # condition indices, top to bottom within each panel
    row_tops: list[int]  # y offset of each row from its panel's top
    seeds: list[int]
    labels: list[dict] = field(default_factory=list)  # per labelled row: panel, row, condition, lines, y
    notes: list[str] = field(default_factory=list)

    def cell_box(self, panel: int, row: int, column: int) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) of a sample cell, for ``Image.crop``."""
        left = self.left + column * (self.cell_width + self.gap)
        top = self.panels[panel]["top"] + self.row_tops[row]
        return left, top, left + self.cell_width, top + self.cell_height


def font(size: int) -> ImageFont.ImageFont:
    """Pillow's bundled scalable font (no system font needed); the bitmap default on old Pillow."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def text_width(text: str, fnt) -> int:
    left, _, right, _ = ImageDraw.Draw(Image.new("RGB", (1, 1))).textbbox((0, 0), text, font=fnt)
    return right - left


def to_uint8(samples) -> np.ndarray:
    """[-1, 1] -> 0..255, as the measures saw them (clipped)."""
    array = samples.detach().cpu().float().numpy() if hasattr(samples, "detach") else np.asarray(samples, dtype=np.float32)
    return np.clip(np.rint((array + 1.0) * 127.5), 0, 255).astype(np.uint8)


def _tile(sample: np.ndarray) -> tuple[Image.Image, Optional[str]]:
    """One (channels, H, W) uint8 sample as an RGB image, and a note when channels were dropped."""
    ch = sample.shape[0]
    if ch == 1:
        return Image.fromarray(sample[0], mode="L").convert("RGB"), None
    if ch == 3:
        return Image.fromarray(np.ascontiguousarray(sample.transpose(1, 2, 0)), mode="RGB"), None
    if ch > 3:
        return (Image.fromarray(np.ascontiguousarray(sample[:3].transpose(1, 2, 0)), mode="RGB"),
                f"samples have {ch} channels (latents?): channels 0-2 are shown as RGB")
    return Image.fromarray(sample[0], mode="L").convert("RGB"), f"samples have {ch} channels: channel 0 is shown"


def cell_geometry(height: int, width: int, columns: int) -> tuple[int, int, float]:
    """(cell height, cell width, scale): integer nearest-neighbour enlargement, or a box-filter shrink."""
    target = max(MIN_CELL, min(MAX_CELL, TARGET_WIDTH // max(1, columns)))
    side = max(height, width)
    if side <= target:
        k = max(1, target // side)
        return height * k, width * k, float(k)
    s = target / side
    return max(1, round(height * s)), max(1, round(width * s)), s


def panel_order(result) -> list[int]:
    """Sweep indices, top to bottom: the verdict scale first, then the rest of the sweep in order."""
    ws = [p.w for p in result.guidance.sweep]
    if result.samples is not None:
        ws = ws[: result.samples.shape[0]]
    first = [i for i, w in enumerate(ws) if w == result.verdict_guidance_scale][:1]
    return first + sorted((i for i in range(len(ws)) if i not in first), key=lambda i: ws[i])


def _rows(result, max_rows: int) -> tuple[list[int], Optional[str]]:
    C = len(result.conditions)
    if C <= max_rows:
        return list(range(C)), None
    worst = sorted(range(C), key=lambda c: result.conditions[c].pixel_rms)[:max_rows]
    return sorted(worst), f"{max_rows} of {C} conditions shown (the least diverse at w = {result.verdict_guidance_scale:g}); all are in the JSON"


def panel_title(w: float, verdict_scale: float, kind: str = "cfg") -> str:
    text = f"w = {w:g}"
    if kind == "embedded":
        text += "  (embedded guidance)"
    elif w == 0:
        text += "  (null branch alone)"
    elif w == 1:
        text += "  (conditional branch alone)"
    text += "  ·  the row verdicts are read here" if w == verdict_scale else f"  ·  row verdicts: at w = {verdict_scale:g}"
    return text


def row_label(cond) -> list[tuple[str, tuple]]:
    """(text, colour) lines of a row label: the condition, its verdict, the evidence that decided it."""
    name = cond.label if len(cond.label) <= 30 else cond.label[:29] + "…"
    lines = [(name, INK_RGB), (cond.verdict.replace("_", " "), verdict_rgb(cond.verdict))]
    lines += [(e.short(), MUTED_RGB) for e in decided_by(cond)]
    return lines


def _wrap(text: str, width_px: int, char_px: float = 6.0) -> list[str]:
    import textwrap

    return textwrap.wrap(text, max(30, int(width_px / char_px)))


def _header_lines(result, width: int) -> list[str]:
    """How to read the sheet, wrapped to its width."""
    seeds = list(result.seeds)
    seed_text = f"{seeds[0]}..{seeds[-1]}" if len(seeds) > 1 else str(seeds[0])
    text = (f"Contact sheet: a panel per guidance scale w, in each a row per condition and a column per seed "
            f"({seed_text}). The same seed is the same initial noise in every row and panel. Rows whose images "
            f"look alike: the seed no longer matters (collapse). Panels that look alike: guidance does not steer.")
    return _wrap(text, width - 2 * MARGIN)


def _draw_header(d: ImageDraw.ImageDraw, result, width: int) -> int:
    """The verdicts, then how to read the sheet; returns the y below it."""
    g, f_title, f_small = result.guidance, font(20), font(12)
    x = MARGIN
    for head, verdict in (("collapse: ", result.verdict), ("   guidance: ", g.verdict), ("   null branch: ", g.null_branch.verdict)):
        d.text((x, 10), head, fill=INK_RGB, font=f_title)
        x += text_width(head, f_title) + 4
        d.text((x, 10), verdict.replace("_", " "), fill=verdict_rgb(verdict), font=f_title)
        x += text_width(verdict.replace("_", " "), f_title) + 4
    y = 42
    for line in _header_lines(result, width):
        d.text((MARGIN, y), line, fill=MUTED_RGB, font=f_small)
        y += 16
    return y + 4


def _draw_seed_numbers(d: ImageDraw.ImageDraw, seeds: list[int], left: int, y: int, cell_w: int) -> None:
    f_small = font(12)
    widest = max(text_width(str(s), f_small) for s in seeds)
    every = max(1, -(-(widest + 6) // (cell_w + GAP)))  # label every n-th column when the cells are narrow
    d.text((left - 8 - text_width("seed", f_small), y), "seed", fill=MUTED_RGB, font=f_small)
    for s, seed in enumerate(seeds):
        if s % every == 0:
            t = str(seed)
            d.text((left + s * (cell_w + GAP) + cell_w / 2 - text_width(t, f_small) / 2, y), t, fill=MUTED_RGB, font=f_small)


def _draw_panel_title(d: ImageDraw.ImageDraw, point, verdict_scale: float, y: int, kind: str = "cfg") -> str:
    title = panel_title(point.w, verdict_scale, kind)
    f_head = font(16)
    d.text((MARGIN, y), title, fill=INK_RGB, font=f_head)
    verdict = getattr(point, "verdict", None)
    if verdict:
        x = MARGIN + text_width(title, f_head)
        lead = "  ·  these samples would be judged: "
        d.text((x, y + 2), lead, fill=MUTED_RGB, font=font(13))
        d.text((x + text_width(lead, font(13)), y), verdict.replace("_", " "), fill=verdict_rgb(verdict), font=f_head)
        title += f"{lead}{verdict.replace('_', ' ')}"
    return title


def _draw_row(img: Image.Image, d: ImageDraw.ImageDraw, tiles: list[Image.Image], label: list, left: int, y: int,
              cell_w: int, cell_h: int) -> None:
    """A row's label on the left and its samples, on a grey line that shows the gaps between cells."""
    f_label, f_small = font(14), font(12)
    for i, (text, colour) in enumerate(label):
        d.text((MARGIN, y + i * LINE), text, fill=colour, font=f_small if i >= 2 else f_label)
    width = len(tiles) * (cell_w + GAP) - GAP
    d.rectangle([left - 1, y - 1, left + width, y + cell_h], fill=CELL_GAP_COLOUR)
    for s, tile in enumerate(tiles):
        img.paste(tile, (left + s * (cell_w + GAP), y))


def _cell_tiles(pixels: np.ndarray, cell_h: int, cell_w: int, scale: float) -> list[Image.Image]:
    """One condition's samples at one w, as cell-sized tiles."""
    out = []
    for sample in pixels:
        tile, _ = _tile(sample)
        if tile.size != (cell_w, cell_h):
            tile = tile.resize((cell_w, cell_h), Image.NEAREST if scale >= 1 else Image.BOX)
        out.append(tile)
    return out


def _size_notes(H: int, Wd: int, cell_h: int, cell_w: int, scale: float) -> list[str]:
    if scale > 1:
        return [f"samples are {H}x{Wd} px, enlarged {scale:g}x with nearest neighbour (each block is one pixel)"]
    if scale < 1:
        return [f"samples are {H}x{Wd} px, shown shrunk to {cell_h}x{cell_w} (box filter)"]
    return []


def contact_sheet(result, max_rows: int = MAX_ROWS) -> tuple[Image.Image, SheetLayout]:
    """The sheet and its layout. Raises ValueError when the result carries no samples."""
    if result.samples is None:
        raise ValueError("this result carries no samples (results read back from JSON have none)")
    pixels = to_uint8(result.samples)  # (W, C, S, ch, H, Wd)
    _, _, S, _, H, Wd = pixels.shape
    order, (rows, row_note) = panel_order(result), _rows(result, max_rows)
    cell_h, cell_w, scale = cell_geometry(H, Wd, S)
    notes = [n for n in [row_note, _tile(pixels[0, 0, 0])[1]] if n] + _size_notes(H, Wd, cell_h, cell_w, scale)
    labels = [row_label(result.conditions[c]) for c in rows]
    left = MARGIN + max([text_width(t, font(14)) for lab in labels for t, _ in lab] + [110]) + 16
    heights = [max(cell_h, len(lab) * LINE + 2) + GAP for lab in labels]
    row_tops = [sum(heights[:r]) for r in range(len(rows))]
    panel_h = PANEL_SPACE + TITLE_HEIGHT + SEED_HEIGHT + sum(heights)
    width = max(left + S * (cell_w + GAP) - GAP + MARGIN, 640)
    foot = 10 + 16 * len(notes)
    header = 42 + 16 * len(_header_lines(result, width)) + 4
    img = Image.new("RGB", (width, header + len(order) * panel_h + foot), BACKGROUND)
    d = ImageDraw.Draw(img)
    y = _draw_header(d, result, width)
    panels, placed = [], []
    for p, wi in enumerate(order):
        point = result.guidance.sweep[wi]
        title = _draw_panel_title(d, point, result.verdict_guidance_scale, y + PANEL_SPACE,
                                   getattr(result.guidance, "kind", "cfg"))
        top = y + PANEL_SPACE + TITLE_HEIGHT + SEED_HEIGHT
        _draw_seed_numbers(d, list(result.seeds), left, top - SEED_HEIGHT, cell_w)
        for r, c in enumerate(rows):
            tiles = _cell_tiles(pixels[wi, c], cell_h, cell_w, scale)
            _draw_row(img, d, tiles, labels[r], left, top + row_tops[r], cell_w, cell_h)
            placed.append({"panel": p, "row": r, "condition": c, "lines": [t for t, _ in labels[r]], "y": top + row_tops[r]})
        panels.append({"w": point.w, "sweep_index": wi, "top": top, "title": title})
        y += panel_h
    for i, note in enumerate(notes):
        d.text((MARGIN, y + 6 + 16 * i), note, fill=MUTED_RGB, font=font(12))
    layout = SheetLayout(cell_width=cell_w, cell_height=cell_h, scale=scale, gap=GAP, left=left, panels=panels, rows=rows,
                         row_tops=row_tops, seeds=list(result.seeds), labels=placed, notes=notes)
    return img, layout
