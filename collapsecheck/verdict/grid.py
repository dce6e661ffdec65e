"""Collapse verdicts for a measured grid (:class:`collapsecheck.measure.diversity.GridStats`):
per (variant, condition) and per variant. Pure; the numbers come from measure, the rules from :mod:`.rules`."""
from __future__ import annotations

from ..config import ESCALATION_BAND, ESCALATION_BAND_ABOVE
from ..result import ConditionResult
from ..thresholds import Thresholds, near
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


def borderline(c: ConditionResult, th: Thresholds, band: float = ESCALATION_BAND,
               above: float = ESCALATION_BAND_ABOVE) -> list[str]:
    """Why condition ``c``'s verdict could change at a full scan's settings: the measures that decide it
    (:func:`collapsecheck.verdict.rules.condition_collapse`) within a factor ``band`` of their thresholds; empty
    when none is. The seed share decides (borderline in [collapsed_seed_share / band, at_risk_seed_share x above]);
    the absolute measures decide when there is no seed share or the whole grid is (near) as tight as a collapsed
    condition, and otherwise only inside the at-risk seed-share range, already borderline."""
    why = []
    share, low, high = c.seed_share, th.collapsed_seed_share / band, th.at_risk_seed_share * above
    if share is not None and low <= share <= high:
        why.append(f"seed share {share:.3g} in [{low:.3g}, {high:.3g}]")
    grid_rms = None if share is None else (c.pixel_rms / share ** 0.5 if share > 0 else float("inf"))
    if grid_rms is not None and near(grid_rms, th.collapsed_rms, band):
        why.append(f"grid spread {grid_rms:.3g} near collapsed_rms {th.collapsed_rms:g}")
    if share is None or grid_rms < th.collapsed_rms * band:  # the absolute thresholds (may) decide
        checks = [("pixel RMS", c.pixel_rms, "collapsed_rms"), ("pixel RMS", c.pixel_rms, "at_risk_rms"),
                  ("near-duplicate pairs", c.near_duplicates, "collapsed_near_duplicates"),
                  ("near-duplicate pairs", c.near_duplicates, "at_risk_near_duplicates"),
                  ("LPIPS", c.lpips, "collapsed_lpips"), ("LPIPS", c.lpips, "at_risk_lpips")]
        why += [f"{what} {value:.3g} near {name} {getattr(th, name):g}" for what, value, name in checks
                if near(value, getattr(th, name), band)]
    return why
