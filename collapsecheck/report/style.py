"""The verdict colours, in one place: terminal, HTML, Markdown, the contact sheet and the plots read them here.

Each verdict has a level (good, warn, bad, info); each level has one colour (hex, dark enough for white
badge text and readable on a white page) and one mark for plain-text renderers that cannot colour.
"""
from __future__ import annotations

from typing import Optional

#: verdict -> level
LEVELS = {
    "healthy": "good", "steerable": "good", "learned": "good",
    "at_risk": "warn", "weak": "warn", "unclear": "warn",
    "collapsed": "bad", "not_steerable": "bad", "not_learned": "bad",
    "absent_by_design": "info",
}
#: level -> colour
LEVEL_COLOURS = {"good": "#0a7d46", "warn": "#b86e00", "bad": "#c41e1e", "info": "#00788f"}
#: level -> mark, for Markdown and other text without colour
LEVEL_MARKS = {"good": "🟢", "warn": "🟠", "bad": "🔴", "info": "🔵"}
#: colour of text and lines that carry no verdict
INK, MUTED = "#1e1e1e", "#666666"
#: recovery probes: works -> level
WORKS_LEVELS = {"yes": "good", "partly": "warn", "no": "bad"}


def level(verdict: Optional[str]) -> Optional[str]:
    return LEVELS.get(str(verdict)) if verdict is not None else None


def verdict_hex(verdict: Optional[str], default: str = MUTED) -> str:
    """The verdict's colour as ``#rrggbb`` (HTML, matplotlib)."""
    return LEVEL_COLOURS.get(level(verdict) or "", default)


def hex_to_rgb(colour: str) -> tuple[int, int, int]:
    colour = colour.lstrip("#")
    return int(colour[0:2], 16), int(colour[2:4], 16), int(colour[4:6], 16)


def verdict_rgb(verdict: Optional[str], default: str = INK) -> tuple[int, int, int]:
    """The verdict's colour as an RGB tuple (Pillow)."""
    return hex_to_rgb(verdict_hex(verdict, default))


def verdict_rich(verdict: Optional[str]) -> str:
    """The verdict's rich style: bold in its colour; no style for an unknown verdict."""
    return f"bold {verdict_hex(verdict)}" if level(verdict) else ""


def verdict_mark(verdict: Optional[str]) -> str:
    """A coloured mark for text renderers ('' for an unknown verdict)."""
    return LEVEL_MARKS.get(level(verdict) or "", "")


def w_meaning(guidance_kind: str) -> str:
    """What the sweep's w is, for captions: classifier-free guidance, or a guidance-distilled model's embedded
    guidance input (``guidance.kind``)."""
    if guidance_kind == "embedded":
        return ("w: the network's embedded guidance input (guidance-distilled, no classifier-free guidance and no "
                "null branch); every column samples the conditional prediction at that guidance.")
    return "w = 0: the null branch alone; w = 1: the conditional branch alone."
