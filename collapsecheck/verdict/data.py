"""A model's seeds against its training data (``--data-images``, :mod:`collapsecheck.measure.datadiv`).

The collapse verdict judges each condition's seeds against the model's own grid, which cannot see a model that
draws every condition narrower than its data. With images of the training data, a model read ``healthy`` reads
``at_risk`` when its seeds keep less than ``data_relative_diversity`` of the data's within-class variance (the
mean over the conditions of rho, estimated without labels). It never makes a verdict better, nor worse than
``at_risk``.

Each condition is judged against its own cell of the data as well (:mod:`collapsecheck.measure.cells`): a class or
prompt condition its seed share reads collapsed reads ``at_risk`` when its cell share reaches
``cell_collapsed_share`` (:func:`narrow_by_nature`, relief only), and a pixel-aligned one (a hint) is judged by its
cell share both ways against ``hint_cell_collapsed_share`` (:func:`hint_against_cell`).

The null branch is judged against the same images (:func:`null_against_data`), as the zoos' brute force judges it:
a learned null draws the model's marginal, as varied as the data. Its own w = 0 samples keeping less than
``null_data_not_learned`` of the data's variance read ``not_learned``; keeping at least that, a null the other tests
read ``not_learned`` reads ``unclear``, unless its null ratio rules out any blend of the conditions
(:func:`beyond_any_blend`); a ``learned`` null keeping less than ``null_data_unclear`` reads ``unclear``.
"""
from __future__ import annotations

from typing import Optional, Sequence

from ..result import Evidence
from ..thresholds import Thresholds
from .rules import COLLAPSE_ORDER, Finding, overall_collapse


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


def beyond_any_blend(ratio_low: Optional[float], conditions: int) -> bool:
    """Does the null ratio's 95% lower bound reach ``conditions - 1``, the most that a null drawing any blend of the
    model's conditions can reach? A blend's denoising error is at most its worst member's (the squared error is
    convex), so its excess over the own condition's is at most the largest wrong condition's, which is at most
    ``conditions - 1`` times their mean (``err_wrong``, when no wrong condition explains a sample better than its
    own). A learned null, the posterior blend of the conditions, stays below it; a null beyond it is no blend of the
    conditions, and its samples' variety is not the data's. A bound from the ratio's definition, not fitted."""
    return ratio_low is not None and conditions >= 2 and ratio_low >= conditions - 1


def null_against_data(own: str, share: Optional[float], th: Thresholds, ratio_low: Optional[float] = None,
                      conditions: int = 0) -> Optional[Finding]:
    """The null branch judged against the training data (:func:`~collapsecheck.measure.datadiv.null_data_share`, the
    w = 0 samples' variance over the data's), the finding that replaces the other tests' verdict ``own``, or None
    where that stands. Below ``null_data_not_learned`` the null draws nearly one image whatever the seed:
    ``not_learned``. At or above it the null's samples vary, so a ``not_learned`` read by the other tests (the null
    ratio, the spread, the base) is ``unclear``: the brute force reads a null not learned only when its samples are
    not data-like or not diverse; it stays ``not_learned`` where the null ratio's lower bound ``ratio_low``, over
    ``conditions`` conditions, is beyond any blend of them (:func:`beyond_any_blend`: its samples are not
    data-like). Below ``null_data_unclear`` a ``learned`` null is narrower than the data:
    ``unclear``. A guidance-distilled model's ``absent_by_design`` never changes."""
    if share is None or own == "absent_by_design":
        return None
    said = (f"against the training data (--data-images): the null branch's own samples (w = 0) keep {share:.3g} of "
            "the data's variance")
    n, u = th.null_data_not_learned, th.null_data_unclear
    if share < n:
        return None if own == "not_learned" else Finding(
            "not_learned", (f"{said} < null_data_not_learned {n:g}: it draws nearly one image whatever the seed, not "
                            "the marginal",), (Evidence("null_data_share", float(share), "<", "null_data_not_learned", float(n)),))
    if own == "not_learned" and beyond_any_blend(ratio_low, conditions):
        return Finding("not_learned", (f"{said} >= null_data_not_learned {n:g}, but its null ratio's 95% lower bound "
                                       f"{ratio_low:.3g} >= {conditions - 1}, the most a blend of the {conditions} "
                                       "conditions can reach: it draws no blend of them, so its varying samples are "
                                       "not the data's",),
                       (Evidence("null_ratio_low", float(ratio_low), ">=", "null_ratio_boundary",
                                 float(th.null_ratio_boundary)),))
    if own == "not_learned":
        return Finding("unclear", (f"{said} >= null_data_not_learned {n:g}: its samples vary, so the tests that read "
                                   "it not learned (below) leave it unclear",),
                       (Evidence("null_data_share", float(share), ">=", "null_data_not_learned", float(n)),))
    if own == "learned" and share < u:
        return Finding("unclear", (f"{said} < null_data_unclear {u:g}: narrower than the data, where a learned null "
                                   "draws the marginal",),
                       (Evidence("null_data_share", float(share), "<", "null_data_unclear", float(u)),))
    return None


def narrow_by_nature(verdict: str, share: Optional[float], th: Thresholds) -> Optional[Finding]:
    """The ``at_risk`` finding for a condition its seed share reads ``collapsed`` whose seeds keep at least
    ``cell_collapsed_share`` of the robust spread of its own cell of the training data
    (:mod:`collapsecheck.measure.cells`); else None. A class narrow by nature is narrow in the model's grid too, and
    its own part of the data says how narrow; a condition that draws one image keeps almost none of it. Relief
    only: it never makes a verdict worse, nor better than ``at_risk``."""
    x = th.cell_collapsed_share
    if verdict != "collapsed" or share is None or share < x:
        return None
    return Finding("at_risk", (f"against its own cell of the training data (--data-images: the data images nearest "
                               f"its samples' mean): the seeds keep {share:.3g} of the cell's spread >= "
                               f"cell_collapsed_share {x:g}: narrow like that part of the data, not one image",),
                   (Evidence("cell_share", float(share), ">=", "cell_collapsed_share", float(x)),))


def hint_against_cell(verdict: str, share: Optional[float], th: Thresholds) -> Optional[Finding]:
    """A pixel-aligned condition (a concatenated image, a ControlNet hint) judged by its cell share, both ways: under
    ``hint_cell_collapsed_share`` it reads ``collapsed``, at or above it a ``collapsed`` seed share reads
    ``at_risk``; else None (the seed share's verdict stands). A hint is no class: the seed share divides by the
    spread of the hints the scan was given, which says nothing about the data a hint stands for, while its cell (the
    data images nearest its samples) is that part of the data, as the zoos' brute force judges a hint against its
    class. On the zoos a hint's cell reads 0.6-0.9 of its class's spread on handwriting (cells of blurred strokes
    take in neighbouring classes), more on photographs: the bound is fitted, not the brute force's 0.15."""
    x = th.hint_cell_collapsed_share
    if share is None or (share < x) == (verdict == "collapsed"):
        return None
    said = (f"against its own cell of the training data (--data-images: the data images nearest its samples' mean): "
            f"the seeds keep {share:.3g} of the cell's spread")
    if share < x:
        return Finding("collapsed", (f"{said} < hint_cell_collapsed_share {x:g}: the hint fixes the sample (a "
                                     "decoder), where that part of the data varies",),
                       (Evidence("cell_share", float(share), "<", "hint_cell_collapsed_share", float(x)),))
    return Finding("at_risk", (f"{said} >= hint_cell_collapsed_share {x:g}: narrow like that part of the data, not "
                               "one image",),
                   (Evidence("cell_share", float(share), ">=", "hint_cell_collapsed_share", float(x)),))


def hints_against_cells(verdicts: Sequence[str], shares: Sequence[Optional[float]], th: Thresholds
                        ) -> tuple[list[Optional[Finding]], Optional[Finding]]:
    """Each pixel-aligned condition judged by its cell share (:func:`hint_against_cell`; None where its verdict
    stands), and the overall finding from them where some condition moved, else None. What the scan and the
    calibration's re-judging both apply."""
    found = [hint_against_cell(v, s, th) for v, s in zip(verdicts, shares)]
    if not any(found):
        return found, None
    return found, overall_collapse([f.verdict if f else v for f, v in zip(found, verdicts)], th)


def relieved_by_cells(own: str, verdicts: Sequence[str], shares: Sequence[Optional[float]], lost: Sequence[bool],
                      th: Thresholds) -> tuple[list[Optional[Finding]], Optional[Finding]]:
    """Each condition judged against its own cell of the data (:func:`narrow_by_nature`; None where it is not
    relieved, or where its seeds ``lost`` diversity against the base, which is no narrowness by nature), and the
    overall finding from the relieved conditions where that is better than the model's ``own`` verdict, else None.
    What the scan and the calibration's re-judging both apply."""
    found = [None if gone else narrow_by_nature(v, s, th) for v, s, gone in zip(verdicts, shares, lost)]
    if not any(found):
        return found, None
    overall = overall_collapse([f.verdict if f else v for f, v in zip(found, verdicts)], th)
    better = COLLAPSE_ORDER.index(overall.verdict) < COLLAPSE_ORDER.index(own)
    return found, overall if better else None
