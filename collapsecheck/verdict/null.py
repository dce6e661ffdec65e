"""The null-branch verdict's inputs: the null ratio's test, and the null judged by its own samples. Pure.

The null ratio (:func:`collapsecheck.verdict.rules.null_branch`) asks whether the null explains the model's w = 1
samples better than a wrong condition does. Two cases escape it (docs/calibration.md, round 19):

- a null never trained behind a hint that draws one image (a copy of a training image) whatever the seed; it
  can still explain the samples better than a wrong hint, so the ratio reads it `learned`;
- a condition that barely moves the denoiser: a wrong condition explains the samples as well as their own (in
  some bootstrap resamples at least: the interval has no upper bound), and the ratio has no contrast to measure
  the null against.

The null spread, the w = 0 samples' seed variance over the variance of the whole w = 1 grid
(:func:`collapsecheck.measure.pixel.spread_share`), is read on the seed share's scale, as if the null were one
more condition: below ``collapsed_seed_share`` it draws nearly one image (not the marginal); at or above
``at_risk_seed_share`` it draws samples as varied as a condition does.

The null coverage (:mod:`collapsecheck.measure.coverage`), the normalized entropy of the conditions the implicit
classifier assigns the null's own w = 0 samples to, catches a third case: varied, data-like w = 0 samples drawn
from a few conditions only (a null never trained, behind a text encoder). A learned null draws the marginal and
covers the conditions about evenly; below ``null_coverage_entropy`` the null reads ``unclear`` where the tests
above read it ``learned``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..measure.coverage import NullCoverage
from ..measures import RATIO_CLAMP
from ..result import Evidence
from ..thresholds import Thresholds

#: the null-branch test needs at least this many reference (w = 1) samples
NULL_MIN_SAMPLES = 8
#: the null ratio's reason when a wrong condition explains the samples as well as their own
NO_CONTRAST = "a wrong condition explains the samples as well as their own: no contrast to measure the null branch against"


@dataclass(frozen=True)
class NullTest:
    """The null ratio r = (err_null - err_own) / (err_wrong - err_own) on the w = 1 samples, its 95% interval
    (:func:`collapsecheck.measure.implicit.null_ratio`; None: no contrast), how many samples it rests on and over
    how many conditions."""

    ratio: Optional[float]
    low: Optional[float]
    high: Optional[float]
    samples: int
    conditions: int


def without_contrast(test: Optional[NullTest]) -> bool:
    """Has the null ratio nothing to measure against? No contrast at all (a wrong condition explains the samples as
    well as their own), or an interval without an upper bound (it does in some bootstrap resamples)."""
    return test is not None and (test.ratio is None or (test.high is not None and test.high >= RATIO_CLAMP))


@dataclass(frozen=True)
class SpreadReading:
    """What the null spread says on its own: learned, unclear or not_learned, why, and the crossing behind it."""

    verdict: str
    reason: str
    evidence: tuple[Evidence, ...] = ()


def read_spread(spread: Optional[float], th: Thresholds) -> Optional[SpreadReading]:
    """The null spread against the seed-share thresholds; None when it was not measured."""
    if spread is None:
        return None
    said = (f"the null branch's own samples (w = 0) keep null_spread = {spread:.3g} of the seed variance of the "
            "model's w = 1 samples (every condition and seed together)")
    low, high = th.collapsed_seed_share, th.at_risk_seed_share
    if spread < low:
        return SpreadReading("not_learned", f"{said} < collapsed_seed_share {low:g}: it draws nearly one image whatever "
                             "the seed, where a learned null draws the model's marginal",
                             (Evidence("null_spread", float(spread), "<", "collapsed_seed_share", float(low)),))
    if spread >= high:
        return SpreadReading("learned", f"{said} >= at_risk_seed_share {high:g}: as varied as a condition's samples")
    return SpreadReading("unclear", f"{said}, between collapsed_seed_share {low:g} and at_risk_seed_share {high:g}")


def coverage_text(c: NullCoverage) -> str:
    return (f"coverage entropy {c.entropy:.3g}, 95% interval [{c.low:.3g}, {c.high:.3g}] over {c.samples} w = 0 "
            f"samples and {c.conditions} conditions (largest share {c.largest_share:.0%})")


def uneven_coverage(coverage: Optional[NullCoverage], th: Thresholds) -> Optional[SpreadReading]:
    """``unclear`` with its reason when the null's own samples cover the conditions unevenly (entropy below
    ``null_coverage_entropy``); None when they cover them evenly enough or coverage was not measured."""
    if coverage is None or coverage.entropy >= th.null_coverage_entropy:
        return None
    x = th.null_coverage_entropy
    return SpreadReading("unclear", f"the null branch's own samples (w = 0) cover the conditions unevenly, as the "
                                    f"model's implicit classifier assigns them: {coverage_text(coverage)} < "
                                    f"null_coverage_entropy {x:g}; a learned null draws the marginal, every "
                                    "condition about as often as the data does",
                         (Evidence("null_coverage", float(coverage.entropy), "<", "null_coverage_entropy", float(x)),))
