"""A model's seeds against its training data (``--data-images``, :mod:`collapsecheck.measure.datadiv`).

The collapse verdict judges each condition's seeds against the model's own grid, which cannot see a model that
draws every condition narrower than its data. With images of the training data, a model read ``healthy`` reads
``at_risk`` when its seeds keep less than ``data_relative_diversity`` of the data's within-class variance (the
mean over the conditions of rho, estimated without labels). It never makes a verdict better, nor worse than
``at_risk``.

The null branch is judged against the same images (:func:`null_against_data`): a learned null draws the model's
marginal, as varied as the data; one whose own w = 0 samples keep less than ``null_data_unclear`` of the data's
variance reads ``unclear``, less than ``null_data_not_learned`` ``not_learned``. Like the comparison with a base, it
only ever makes the null's verdict worse.
"""
from __future__ import annotations

from typing import Optional

from ..result import Evidence
from ..thresholds import Thresholds
from .rules import Finding


#: the advice that comes first when the data rule made the verdict
NARROWER_THAN_DATA = ("Every condition varies less than its training data, though each keeps its share of the "
                      "model's own spread: compare the samples with the data images; an undertrained or small model "
                      "draws smooth, averaged samples, and a coarse sampler does too (scan a later checkpoint, or "
                      "with more --steps).")


def narrower_than_data(verdict: str, mean_rho: Optional[float], th: Thresholds) -> Optional[Finding]:
    """The ``at_risk`` finding when a ``healthy`` model's mean rho is below ``data_relative_diversity``; else None."""
    x = th.data_relative_diversity
    if verdict != "healthy" or mean_rho is None or mean_rho >= x:
        return None
    return Finding("at_risk", (f"against the training data (--data-images): the seeds keep {mean_rho:.3g} of the "
                               f"data's within-class variance, mean over the conditions (estimated without labels) < "
                               f"data_relative_diversity {x:g}: every condition is narrower than its data",),
                   (Evidence("data_diversity", float(mean_rho), "<", "data_relative_diversity", float(x)),))


def null_against_data(share: Optional[float], th: Thresholds) -> Optional[Finding]:
    """The null branch from its w = 0 samples' variance over the data's (:func:`~collapsecheck.measure.datadiv.
    null_data_share`): ``not_learned`` below ``null_data_not_learned`` (it draws nearly one image, not the
    marginal), ``unclear`` below ``null_data_unclear`` (narrower than the data); None otherwise (the other tests'
    finding stands). Which verdict it replaces: :func:`~collapsecheck.verdict.relative.base_overrides_null`."""
    if share is None or share >= th.null_data_unclear:
        return None
    said = f"against the training data (--data-images): the null branch's own samples (w = 0) keep {share:.3g} of the data's variance"
    if share >= th.null_data_not_learned:
        return Finding("unclear", (f"{said} < null_data_unclear {th.null_data_unclear:g}: narrower than the "
                                   "data, where a learned null draws the marginal",),
                       (Evidence("null_data_share", float(share), "<", "null_data_unclear", float(th.null_data_unclear)),))
    return Finding("not_learned", (f"{said} < null_data_not_learned {th.null_data_not_learned:g}: it draws nearly "
                                   "one image whatever the seed, not the marginal",),
                   (Evidence("null_data_share", float(share), "<", "null_data_not_learned",
                             float(th.null_data_not_learned)),))
