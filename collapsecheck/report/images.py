"""The contact sheet: a row per condition, a column per seed, a panel per guidance scale.

Pure: a ScanResult in, a PIL image and its layout out (the layout says where every cell sits, so
tests and other renderers can find a sample on the sheet). Samples are shown as the scan measured
them: clipped to [-1, 1] and mapped linearly to 0..255. Tiny images are enlarged with nearest
neighbour (an 8x8 digit stays 8x8 blocks, nothing is invented); large ones are shrunk with a box
filter to keep the sheet a reasonable size.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
from PIL import Image, ImageDraw

from .plots import GREY, INK, VERDICT_COLOURS, font, text_size

#: at most this many condition rows; beyond it the least diverse are shown (the JSON has them all)
MAX_ROWS = 32
#: target width of the sample area in pixels (cells are enlarged or shrunk towards it)
TARGET_WIDTH = 2400
MIN_CELL, MAX_CELL = 48, 128
GAP, PANEL_GAP = 2, 24
#: a row is at least this tall, to fit its three label lines
LABEL_HEIGHT = 52
BACKGROUND, CELL_GAP_COLOUR = (255, 255, 255), (210, 210, 210)


@dataclass
class SheetLayout:
    """Where things are on the sheet, in pixels."""

    cell_width: int
    cell_height: int
    scale: float  # displayed pixels per sample pixel (an integer when enlarged)
    gap: int
    top: int  # y of the first row of cells
    row_pitch: int  # y distance between the tops of two rows
    panels: list[dict]  # per panel, left to right: w, sweep_index, left (x of its first cell), title
    rows: list[int]  # condition indices, top to bottom
    seeds: list[int]
    notes: list[str] = field(default_factory=list)

    def cell_box(self, panel: int, row: int, column: int) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) of a sample cell, for ``Image.crop``."""
        left = self.panels[panel]["left"] + column * (self.cell_width + self.gap)
        top = self.top + row * self.row_pitch
        return left, top, left + self.cell_width, top + self.cell_height


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
    """Sweep indices, left to right: the verdict scale first, then the rest of the sweep in order."""
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


def _panel_title(w: float, verdict_scale: float) -> str:
    text = f"w = {w:g}"
    if w == 0:
        text += "  (null branch alone)"
    elif w == 1:
        text += "  (conditional branch alone)"
    if w == verdict_scale:
        text += "  · verdict read here"
    return text


def contact_sheet(result, max_rows: int = MAX_ROWS) -> tuple[Image.Image, SheetLayout]:
    """The sheet and its layout. Raises ValueError when the result carries no samples."""
    if result.samples is None:
        raise ValueError("this result carries no samples (results read back from JSON have none)")
    pixels = to_uint8(result.samples)  # (W, C, S, ch, H, Wd)
    W, C, S, ch, H, Wd = pixels.shape
    order = panel_order(result)
    rows, row_note = _rows(result, max_rows)
    cell_h, cell_w, scale = cell_geometry(H, Wd, len(order) * S)
    notes = [n for n in (row_note,) if n]
    if scale > 1:
        notes.append(f"samples are {H}x{Wd} px, enlarged {scale:g}x with nearest neighbour (each block is one pixel)")
    elif scale < 1:
        notes.append(f"samples are {H}x{Wd} px, shown shrunk to {cell_h}x{cell_w} (box filter)")

    f_title, f_head, f_label, f_small = font(20), font(15), font(14), font(12)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    labels = []
    for c in rows:
        cond = result.conditions[c]
        name = cond.label if len(cond.label) <= 28 else cond.label[:27] + "…"
        labels.append((name, cond.verdict, f"pixel RMS {cond.pixel_rms:.3f}"))
    label_w = max([text_size(probe, t, f_label)[0] for lab in labels for t in (lab[0], lab[1].replace("_", " "), lab[2])] + [80]) + 20
    panel_w = S * cell_w + (S - 1) * GAP
    width = label_w + len(order) * panel_w + (len(order) - 1) * PANEL_GAP + 20
    show_seed_numbers = cell_w >= 24
    header = 96
    top = header + 24 + (16 if show_seed_numbers else 0)
    row_pitch = max(cell_h, LABEL_HEIGHT) + GAP
    body = len(rows) * row_pitch
    foot = 10 + 18 * (len(notes) + 1)
    width = max(width, 760)
    img = Image.new("RGB", (width, top + body + foot), BACKGROUND)
    d = ImageDraw.Draw(img)

    # headline: the verdicts first
    g = result.guidance
    x = 12
    for head, verdict in (("collapse: ", result.verdict), ("   guidance: ", g.verdict), ("   null branch: ", g.null_branch.verdict)):
        d.text((x, 10), head, fill=INK, font=f_title)
        x += text_size(d, head, f_title)[0] + 4
        d.text((x, 10), verdict.replace("_", " "), fill=VERDICT_COLOURS.get(verdict, INK), font=f_title)
        x += text_size(d, verdict.replace("_", " "), f_title)[0] + 4
    seeds = list(result.seeds)
    seed_text = f"{seeds[0]}..{seeds[-1]}" if len(seeds) > 1 else str(seeds[0])
    d.text((12, 42), f"Contact sheet: a row per condition, a column per seed ({seed_text}), a panel per guidance scale w. "
                     f"The same seed gives the same initial noise in every row and panel.", fill=GREY, font=f_small)
    d.text((12, 60), "Rows that look alike across a panel: the seed no longer matters (collapse). "
                     "Panels that look alike: guidance does not steer.", fill=GREY, font=f_small)

    panels = []
    for p, wi in enumerate(order):
        left = label_w + p * (panel_w + PANEL_GAP)
        w = result.guidance.sweep[wi].w
        title = _panel_title(w, result.verdict_guidance_scale)
        panels.append({"w": w, "sweep_index": wi, "left": left, "title": title})
        d.text((left, header), title, fill=INK, font=f_head)
        if show_seed_numbers:
            for s in range(S):
                t = str(seeds[s])
                tw = text_size(d, t, f_small)[0]
                d.text((left + s * (cell_w + GAP) + cell_w / 2 - tw / 2, top - 16), t, fill=GREY, font=f_small)

    for r, c in enumerate(rows):
        y = top + r * row_pitch
        name, verdict, rms = labels[r]
        d.text((12, y), name, fill=INK, font=f_label)
        d.text((12, y + 17), verdict.replace("_", " "), fill=VERDICT_COLOURS.get(verdict, INK), font=f_label)
        d.text((12, y + 34), rms, fill=GREY, font=f_small)
        for p, wi in enumerate(order):
            left = panels[p]["left"]
            d.rectangle([left - 1, y - 1, left + panel_w, y + cell_h], fill=CELL_GAP_COLOUR)
            for s in range(S):
                tile, note = _tile(pixels[wi, c, s])
                if note and note not in notes:
                    notes.append(note)
                if (cell_h, cell_w) != (H, Wd):
                    tile = tile.resize((cell_w, cell_h), Image.NEAREST if scale >= 1 else Image.BOX)
                img.paste(tile, (panels[p]["left"] + s * (cell_w + GAP), y))

    y = top + body + 6
    for note in notes + ["pixel RMS: mean RMS distance between this condition's seeds at the verdict scale; higher = more diverse."]:
        d.text((12, y), note, fill=GREY, font=f_small)
        y += 18
    layout = SheetLayout(cell_width=cell_w, cell_height=cell_h, scale=scale, gap=GAP, top=top, row_pitch=row_pitch, panels=panels,
                         rows=rows, seeds=seeds, notes=notes)
    return img, layout
