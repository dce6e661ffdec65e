"""Collapse verdicts for a measured grid (:class:`collapsecheck.measure.diversity.GridStats`):
per (variant, condition) and per variant. Pure; the numbers come from measure, the rules from :mod:`.rules`."""
from __future__ import annotations

from ..thresholds import Thresholds
from .rules import Finding, condition_collapse, overall_collapse


def cell_finding(stats, v: int, c: int, th: Thresholds) -> Finding:
    """The collapse verdict of condition ``c`` under variant (guidance scale or probe) ``v``."""
    return condition_collapse(
        float(stats.pixel_rms[v, c]), float(stats.near_duplicates[v, c]),
        stats.value("seed_share", v, c), stats.value("lpips", v, c), th,
    )


def variant_finding(stats, v: int, th: Thresholds) -> Finding:
    """The overall collapse verdict of variant ``v``, from its conditions' verdicts."""
    return overall_collapse([cell_finding(stats, v, c, th).verdict for c in range(stats.pixel_rms.shape[1])], th)
