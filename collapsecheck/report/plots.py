"""Line charts drawn with Pillow (no plotting library): eps ratio by timestep, diversity by guidance
scale, posterior variance by timestep, and a checkpoint trend. Pure: results in, PIL images out.

Every chart has a title, labelled axes with tick labels, a legend, and a footnote that states the
direction of each number ("higher = more diverse"), so a chart read alone still tells the truth.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, is_dataclass
from typing import Optional, Sequence

from PIL import Image, ImageDraw, ImageFont

#: colour-blind-safe palette (Okabe-Ito)
BLUE, ORANGE, GREEN, VERMILLION, PURPLE, SKY = (0, 114, 178), (230, 159, 0), (0, 158, 115), (213, 94, 0), (204, 121, 167), (86, 180, 233)
PALETTE = (BLUE, ORANGE, GREEN, VERMILLION, PURPLE, SKY)
RED, AMBER, GREY, INK, GRID = (200, 30, 30), (200, 140, 0), (120, 120, 120), (30, 30, 30), (228, 228, 228)
#: verdict colours shared by the image renderers
VERDICT_COLOURS = {
    "healthy": (0, 140, 70), "steerable": (0, 140, 70), "learned": (0, 140, 70),
    "at_risk": (200, 120, 0), "weak": (200, 120, 0), "unclear": (200, 120, 0),
    "collapsed": RED, "not_steerable": RED, "not_learned": RED, "absent_by_design": (0, 120, 160),
}


def font(size: int) -> ImageFont.ImageFont:
    """Pillow's bundled scalable font (no system font needed); the bitmap default on old Pillow."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def text_size(draw: ImageDraw.ImageDraw, text: str, fnt) -> tuple[int, int]:
    left, top, right, bottom = draw.textbbox((0, 0), text, font=fnt)
    return right - left, bottom - top


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values (1, 2, 2.5, 5 x 10^k steps) covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0, 1.0]
    lo, hi = min(lo, hi), max(lo, hi)
    if hi == lo:
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / max(1, count)
    mag = 10 ** math.floor(math.log10(raw))
    step = mag
    for m in (1, 2, 2.5, 5, 10):
        step = m * mag
        if (hi - lo) / step <= count:
            break
    start = math.floor(lo / step + 1e-9) * step
    end = math.ceil(hi / step - 1e-9) * step
    n = max(1, int(round((end - start) / step)))
    return [float(round(start + i * step, 12)) for i in range(n + 1)]


def tick_label(value: float) -> str:
    text = f"{value:.6g}"
    return "0" if text in ("-0", "0") else text


@dataclass
class _Line:
    label: str
    xs: list[float]
    ys: list[Optional[float]]
    colour: tuple
    dashed: bool = False


@dataclass
class _Rule:
    value: float
    label: str
    colour: tuple


@dataclass
class Chart:
    """A line chart: ``line()``, ``hline()``, ``vline()``, then ``render()``."""

    title: str
    x_label: str
    y_label: str
    width: int = 820
    height: int = 460
    subtitle: str = ""
    x_reversed: bool = False
    y_from_zero: bool = True
    x_ticks_at_data: bool = False
    notes: list[str] = field(default_factory=list)
    lines: list[_Line] = field(default_factory=list)
    hlines: list[_Rule] = field(default_factory=list)
    vlines: list[_Rule] = field(default_factory=list)

    def line(self, label: str, xs: Sequence[float], ys: Sequence[Optional[float]], colour=None, dashed=False) -> "Chart":
        colour = colour or PALETTE[len(self.lines) % len(PALETTE)]
        clean = [None if y is None or not math.isfinite(y) else float(y) for y in ys]
        self.lines.append(_Line(label, [float(x) for x in xs], clean, colour, dashed))
        return self

    def hline(self, value: float, label: str, colour=GREY) -> "Chart":
        self.hlines.append(_Rule(float(value), label, colour))
        return self

    def vline(self, value: float, label: str, colour=GREY) -> "Chart":
        self.vlines.append(_Rule(float(value), label, colour))
        return self

    # ------------------------------------------------------------------------------- drawing

    def _ranges(self):
        xs = [x for ln in self.lines for x in ln.xs] + [r.value for r in self.vlines]
        ys = [y for ln in self.lines for y in ln.ys if y is not None]
        ys_all = ys + [r.value for r in self.hlines]
        if not xs:
            xs = [0.0, 1.0]
        if not ys_all:
            ys_all = [0.0, 1.0]
        y_lo, y_hi = min(ys_all), max(ys_all)
        if self.y_from_zero:
            y_lo, y_hi = min(0.0, y_lo), max(0.0, y_hi)
        y_ticks = nice_ticks(y_lo, y_hi)
        data_x = sorted({x for ln in self.lines for x in ln.xs})
        if self.x_ticks_at_data and 1 < len(data_x) <= 12:
            x_ticks = data_x
            pad = (max(data_x) - min(data_x)) * 0.04
            x_lo, x_hi = min(xs) - pad, max(xs) + pad
        else:
            x_ticks = nice_ticks(min(xs), max(xs))
            x_lo, x_hi = x_ticks[0], x_ticks[-1]
        return (x_lo, x_hi, x_ticks), (y_ticks[0], y_ticks[-1], y_ticks), bool(ys)

    def render(self) -> Image.Image:
        img = Image.new("RGB", (self.width, self.height), "white")
        d = ImageDraw.Draw(img)
        f_title, f_sub, f_tick, f_label = font(18), font(13), font(12), font(13)
        (x_lo, x_hi, x_ticks), (y_lo, y_hi, y_ticks), has_data = self._ranges()

        tick_w = max(text_size(d, tick_label(t), f_tick)[0] for t in y_ticks)
        left = 30 + tick_w + 12
        right = self.width - 24
        top = 58 if self.subtitle else 40
        legend_rows = 1 if self.lines else 0
        bottom = self.height - 56 - 18 * (legend_rows + len(self.notes))

        d.text((left, 10), self.title, fill=INK, font=f_title)
        if self.subtitle:
            d.text((left, 34), self.subtitle, fill=GREY, font=f_sub)

        def px(x: float) -> float:
            frac = (x - x_lo) / ((x_hi - x_lo) or 1.0)
            return right - frac * (right - left) if self.x_reversed else left + frac * (right - left)

        def py(y: float) -> float:
            return bottom - (y - y_lo) / ((y_hi - y_lo) or 1.0) * (bottom - top)

        # grid, ticks and tick labels
        for t in y_ticks:
            y = py(t)
            d.line([(left, y), (right, y)], fill=GRID)
            d.line([(left - 5, y), (left, y)], fill=INK)
            w, h = text_size(d, tick_label(t), f_tick)
            d.text((left - 8 - w, y - h / 2 - 2), tick_label(t), fill=INK, font=f_tick)
        for t in x_ticks:
            x = px(t)
            d.line([(x, top), (x, bottom)], fill=GRID)
            d.line([(x, bottom), (x, bottom + 5)], fill=INK)
            w, _ = text_size(d, tick_label(t), f_tick)
            d.text((x - w / 2, bottom + 8), tick_label(t), fill=INK, font=f_tick)
        d.line([(left, top), (left, bottom)], fill=INK, width=1)
        d.line([(left, bottom), (right, bottom)], fill=INK, width=1)

        # axis labels
        w, _ = text_size(d, self.x_label, f_label)
        d.text(((left + right) / 2 - w / 2, bottom + 28), self.x_label, fill=INK, font=f_label)
        w, h = text_size(d, self.y_label, f_label)
        label = Image.new("RGB", (w + 4, h + 8), "white")
        ImageDraw.Draw(label).text((2, 0), self.y_label, fill=INK, font=f_label)
        label = label.rotate(90, expand=True)
        img.paste(label, (6, int((top + bottom) / 2 - label.height / 2)))

        # reference lines
        for rule in self.hlines:
            y = py(rule.value)
            _dashed(d, [(left, y), (right, y)], rule.colour)
            w, h = text_size(d, rule.label, f_tick)
            d.text((right - w - 4, y - h - 5), rule.label, fill=rule.colour, font=f_tick)
        for rule in self.vlines:
            x = px(rule.value)
            _dashed(d, [(x, top), (x, bottom)], rule.colour)
            w, _ = text_size(d, rule.label, f_tick)
            tx = x + 4 if x + 4 + w < right else x - 4 - w
            d.text((tx, top + 2), rule.label, fill=rule.colour, font=f_tick)

        # data
        for ln in self.lines:
            points = [(px(x), py(y)) if y is not None else None for x, y in zip(ln.xs, ln.ys)]
            run: list = []
            for p in points + [None]:
                if p is None:
                    if len(run) > 1:
                        (_dashed if ln.dashed else _solid)(d, run, ln.colour, width=2)
                    run = []
                else:
                    run.append(p)
            for p in points:
                if p is not None:
                    d.ellipse([p[0] - 3.5, p[1] - 3.5, p[0] + 3.5, p[1] + 3.5], fill=ln.colour)
        if not has_data:
            msg = "no data"
            w, h = text_size(d, msg, f_title)
            d.text(((left + right) / 2 - w / 2, (top + bottom) / 2 - h / 2), msg, fill=GREY, font=f_title)

        # legend and notes
        y = bottom + 50
        x = left
        for ln in self.lines:
            (_dashed if ln.dashed else _solid)(d, [(x, y + 8), (x + 22, y + 8)], ln.colour)
            d.ellipse([x + 7.5, y + 4.5, x + 14.5, y + 11.5], fill=ln.colour)
            d.text((x + 28, y), ln.label, fill=INK, font=f_label)
            x += 28 + text_size(d, ln.label, f_label)[0] + 24
        y += 18 * legend_rows
        for note in self.notes:
            d.text((left, y), note, fill=GREY, font=f_tick)
            y += 18
        return img


def _solid(d: ImageDraw.ImageDraw, points, colour, width: int = 2) -> None:
    d.line(points, fill=colour, width=width, joint="curve")


def _dashed(d: ImageDraw.ImageDraw, points, colour=GREY, dash: float = 6.0, width: int = 1) -> None:
    """A dashed line along a list of points."""
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        length = math.hypot(x1 - x0, y1 - y0)
        n = max(1, int(length // dash))
        for i in range(0, n, 2):
            s, e = i / n, min(1.0, (i + 1) / n)
            d.line([(x0 + (x1 - x0) * s, y0 + (y1 - y0) * s), (x0 + (x1 - x0) * e, y0 + (y1 - y0) * e)], fill=colour, width=width)


def stack(images: Sequence[Image.Image], gap: int = 8) -> Image.Image:
    """Images one above the other on white."""
    width = max(im.width for im in images)
    out = Image.new("RGB", (width, sum(im.height for im in images) + gap * (len(images) - 1)), "white")
    y = 0
    for im in images:
        out.paste(im, (0, y))
        y += im.height + gap
    return out


# ------------------------------------------------------------------------------ scan charts


def _thresholds(result) -> dict:
    return dict((result.config or {}).get("thresholds") or {})


def eps_profile_chart(result) -> Image.Image:
    """The eps ratio ||eps_c - eps_null|| / ||eps_null|| by timestep, in sampling order (t high to low)."""
    prof = list(result.eps_profile)
    chart = Chart(
        title="Condition strength along the sampling trajectory",
        subtitle=f"eps ratio at w = {result.verdict_guidance_scale:g}, mean over conditions and seeds; "
                 f"sampling runs left (pure noise) to right (image)",
        x_label="timestep t  (high noise -> low noise)",
        y_label="||eps_c - eps_null|| / ||eps_null||",
        x_reversed=True,
        notes=["eps ratio: higher = the condition pulls harder on the prediction (Wen et al., ICLR 2024)."],
    )
    chart.line("eps ratio", [p.timestep for p in prof], [p.eps_ratio for p in prof], BLUE)
    return chart.render()


def guidance_chart(result) -> Image.Image:
    """Seed diversity and movement by guidance scale, with the collapse thresholds drawn in."""
    sweep = sorted(result.guidance.sweep, key=lambda p: p.w)
    th = _thresholds(result)
    ws = [p.w for p in sweep]
    chart = Chart(
        title="Seed diversity by guidance scale",
        subtitle=f"guidance: {result.guidance.verdict.replace('_', ' ')}  ·  means over conditions; "
                 f"w = 0: null branch alone, w = 1: conditional branch alone",
        x_label="guidance scale w",
        y_label="RMS pixel distance (images in [-1, 1])",
        x_ticks_at_data=True,
        notes=["pixel RMS between seeds: higher = more diverse.  shift from w = 1: higher = guidance moves the samples more.",
               "Dashed lines: collapse thresholds (below collapsed_rms: collapsed)."],
    )
    chart.line("pixel RMS between seeds", ws, [p.pixel_rms for p in sweep], BLUE)
    if any(p.lpips is not None for p in sweep):
        chart.line("LPIPS between seeds", ws, [p.lpips for p in sweep], GREEN)
        chart.notes[0] += "  LPIPS: higher = more diverse."
    chart.line("shift from w = 1", ws, [p.shift_from_w1 for p in sweep], ORANGE, dashed=True)
    if "collapsed_rms" in th:
        chart.hline(th["collapsed_rms"], f"collapsed_rms {th['collapsed_rms']:g}", RED)
    if "at_risk_rms" in th:
        chart.hline(th["at_risk_rms"], f"at_risk_rms {th['at_risk_rms']:g}", AMBER)
    if ws:
        chart.vline(result.verdict_guidance_scale, f"verdict read at w = {result.verdict_guidance_scale:g}", GREY)
    return chart.render()


def _as_dict(item) -> dict:
    if is_dataclass(item):
        return asdict(item)
    if isinstance(item, dict):
        return dict(item)
    return dict(vars(item))


#: keys of a posterior-profile point that are coordinates, not series
_AXIS_KEYS = ("timestep", "step", "alpha_bar", "t")


def posterior_chart(profile: Sequence) -> Optional[Image.Image]:
    """Posterior variance by timestep, from a list of points (dataclasses or dicts).

    The x axis is ``timestep`` (or ``step``, or the index); every other numeric field is a series.
    None when there is nothing to plot.
    """
    points = [_as_dict(p) for p in profile or []]
    if not points:
        return None
    x_key = next((k for k in ("timestep", "step", "t") if all(k in p for p in points)), None)
    xs = [float(p[x_key]) if x_key else float(i) for i, p in enumerate(points)]
    numeric = [k for k, v in points[0].items()
               if k not in _AXIS_KEYS and isinstance(v, (int, float)) and not isinstance(v, bool)]
    # variances share the axis; ratios such as a variance share would not be in its units
    keys = [k for k in numeric if "var" in k and "share" not in k and "ratio" not in k] or numeric
    if not keys:
        return None
    chart = Chart(
        title="Posterior variance along the sampling trajectory",
        subtitle="spread of the model's x0 posterior at each step (near zero: x0 is already decided)",
        x_label="timestep t  (high noise -> low noise)" if x_key in ("timestep", "t") else (x_key or "point"),
        y_label="variance",
        x_reversed=x_key in ("timestep", "t"),
        notes=["higher = the model still leaves the image open at that step (more diverse); "
               "a collapsed model's variance falls to ~0 early."],
    )
    for k in keys:
        chart.line(k.replace("_", " "), xs, [p.get(k) for p in points])
    return chart.render()


def trend_chart(steps: Sequence[dict], onset: Optional[int] = None, drop_step: Optional[int] = None,
                unit: str = "step") -> Image.Image:
    """Diversity (top) and eps ratio (bottom) by checkpoint, with the collapse onset marked."""
    xs = [s["step"] for s in steps]
    top = Chart(
        title="Seed diversity by checkpoint",
        subtitle="means over conditions at the verdict scale; verdicts: " +
                 ", ".join(f"{s['step']}: {s['verdict'].replace('_', ' ')}" for s in steps[:8]) +
                 (" ..." if len(steps) > 8 else ""),
        x_label=unit, y_label="diversity", x_ticks_at_data=True, height=420,
        notes=["pixel RMS, seed share, LPIPS: higher = more diverse."],
    )
    top.line("pixel RMS between seeds", xs, [s.get("pixel_rms") for s in steps], BLUE)
    if any(s.get("seed_share") is not None for s in steps):
        top.line("seed share", xs, [s.get("seed_share") for s in steps], GREEN)
    if any(s.get("lpips") is not None for s in steps):
        top.line("LPIPS", xs, [s.get("lpips") for s in steps], PURPLE)
    bottom = Chart(
        title="Condition strength by checkpoint",
        x_label=unit, y_label="||eps_c - eps_null|| / ||eps_null||", x_ticks_at_data=True, height=360,
        notes=["eps ratio: higher = the condition pulls harder; a rise with falling diversity points at collapse."],
    )
    bottom.line("eps ratio", xs, [s.get("eps_ratio") for s in steps], ORANGE)
    for chart in (top, bottom):
        if onset is not None:
            chart.vline(onset, f"collapse onset ({unit} {onset})", RED)
        if drop_step is not None and drop_step != onset:
            chart.vline(drop_step, f"largest drop ({unit} {drop_step})", AMBER)
    return stack([top.render(), bottom.render()])
