"""Shared matplotlib plumbing for the report's plots: headless figures, threshold lines, captions, PNGs.

Figures are ``matplotlib.figure.Figure`` objects with their own Agg canvas: no pyplot, no global
figure registry, and the caller's rcParams are read, never changed. matplotlib is imported inside
the functions, so importing the report package (and ``collapsecheck --help``) stays fast.
"""
from __future__ import annotations

import io
import math
import textwrap
from typing import Optional, Sequence

from .style import INK, LEVEL_COLOURS, MUTED, verdict_hex

#: pixels per inch of the PNGs
DPI = 100
#: caption: font size and the height of one line, in inches
CAPTION_SIZE, CAPTION_LINE = 9, 0.175


def wrap_caption(lines: Sequence[str], width_in: float) -> list[str]:
    """Caption lines wrapped to the figure's width (about 13 characters per inch at 9 pt)."""
    chars = max(40, int(width_in * 13))
    out = []
    for line in lines:
        out.extend(textwrap.wrap(line, chars, subsequent_indent="  ") or [""])
    return out


def new_figure(width_in: float, plot_height_in: float, caption: Sequence[str], rows: int = 1, cols: int = 1,
               sharex: bool = True):
    """A Figure with an Agg canvas, a grid of axes (flattened, row by row) and the caption below them."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    lines = wrap_caption(caption, width_in)
    caption_in = CAPTION_LINE * len(lines) + (0.15 if lines else 0.0)
    height = plot_height_in + caption_in
    fig = Figure(figsize=(width_in, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    bottom = caption_in / height
    fig.get_layout_engine().set(rect=(0.0, bottom, 1.0, 1.0 - bottom))
    if lines:
        fig.text(0.012, bottom - 0.05 / height, "\n".join(lines), ha="left", va="top", fontsize=CAPTION_SIZE,
                 color=MUTED, gid="caption", linespacing=1.35)
    axes = fig.subplots(rows, cols, sharex=sharex, squeeze=False).ravel().tolist()
    return fig, axes


def caption_of(fig) -> str:
    """The caption text of a figure made by :func:`new_figure` ('' when it has none)."""
    return "\n".join(t.get_text() for t in fig.texts if t.get_gid() == "caption")


def figure_png(fig) -> bytes:
    """The figure as PNG bytes (no timestamp in the file, so equal figures give equal bytes)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def finite(values: Sequence[Optional[float]]) -> list[float]:
    """None and non-finite values as NaN (a gap in the line)."""
    return [float("nan") if v is None or not math.isfinite(v) else float(v) for v in values]


def has_data(values: Sequence[Optional[float]]) -> bool:
    return any(not math.isnan(v) for v in finite(values))


def threshold_band(ax, low: Optional[float], high: Optional[float], low_name: str, high_name: str) -> None:
    """Dashed threshold lines and shading: below ``low`` the bad colour, between the two the warning colour."""
    if low is not None:
        ax.axhline(low, color=LEVEL_COLOURS["bad"], linestyle="--", linewidth=1.2, label=f"{low_name} {low:g}")
        ax.axhspan(min(0.0, low), low, color=LEVEL_COLOURS["bad"], alpha=0.07, linewidth=0)
    if high is not None:
        ax.axhline(high, color=LEVEL_COLOURS["warn"], linestyle="--", linewidth=1.2, label=f"{high_name} {high:g}")
        if low is not None:
            ax.axhspan(low, high, color=LEVEL_COLOURS["warn"], alpha=0.07, linewidth=0)


def verdict_points(ax, xs: Sequence[float], ys: Sequence[Optional[float]], verdicts: Sequence[Optional[str]],
                   label: str, linestyle: str = "-") -> None:
    """A line in ink with one marker per point in the colour of that point's verdict."""
    ys = finite(ys)
    ax.plot(xs, ys, color=INK, linewidth=1.6, linestyle=linestyle, label=label, zorder=3)
    colours = [verdict_hex(v, INK) for v in verdicts]
    ax.scatter(xs, ys, c=colours, s=46, zorder=4, edgecolors="white", linewidths=0.8)


def relation(values: Sequence[Optional[float]], low: Optional[float], high: Optional[float],
             low_name: str, high_name: str) -> str:
    """Where the points lie against two lower bounds, in words that match the picture."""
    points = [v for v in finite(values) if not math.isnan(v)]
    if not points:
        return "no data"
    n = len(points)
    below_low = sum(v < low for v in points) if low is not None else 0
    below_high = sum(v < high for v in points) if high is not None else 0
    if below_low:
        return f"{below_low} of {n} points below {low_name}" if below_low < n else f"every point below {low_name}"
    if below_high:
        return (f"{below_high} of {n} points below {high_name}" if below_high < n else
                f"every point between {low_name} and {high_name}" if low is not None else f"every point below {high_name}")
    name = high_name if high is not None else low_name
    return f"every point above {name}" if (high is not None or low is not None) else f"{n} points"


def no_data(ax, message: str) -> None:
    """An empty panel that says why it is empty."""
    ax.text(0.5, 0.5, textwrap.fill(message, 48), ha="center", va="center", transform=ax.transAxes,
            color=MUTED, fontsize=10)
    ax.set_yticks([])


def verdict_legend_handles(verdicts: Sequence[Optional[str]]) -> list:
    """Legend entries for the verdict colours of the markers, in order of first appearance."""
    from matplotlib.lines import Line2D

    seen = []
    for v in verdicts:
        if v and v not in seen:
            seen.append(v)
    return [Line2D([], [], linestyle="none", marker="o", markersize=7, markerfacecolor=verdict_hex(v, INK),
                   markeredgecolor="white", label=f"point: {v.replace('_', ' ')}") for v in seen]
