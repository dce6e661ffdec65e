"""The verdict functions are pure: numbers in, a finding with its reasons out."""
import pytest

from collapsecheck.verdict import rules as V
from collapsecheck.thresholds import Thresholds, thresholds_with

TH = Thresholds()


def test_condition_verdict_boundaries():
    healthy = V.condition_collapse(0.5, 0.0, 0.6, 0.2, TH)
    assert healthy.verdict == "healthy" and "at_risk_rms" in healthy.reasons[0]
    assert V.condition_collapse(0.5, 0.0, TH.collapsed_seed_share * 0.99, None, TH).verdict == "collapsed"
    assert V.condition_collapse(0.5, 0.0, TH.at_risk_seed_share * 0.99, None, TH).verdict == "at_risk"
    # one condition (no seed share): the absolute thresholds decide, and say that they do
    assert V.condition_collapse(TH.at_risk_rms * 0.99, 0.0, None, None, TH).verdict == "at_risk"
    alone = V.condition_collapse(TH.collapsed_rms * 0.99, 0.0, None, None, TH)
    assert alone.verdict == "collapsed" and V.NO_RELATIVE in alone.reasons
    assert V.condition_collapse(0.5, TH.collapsed_near_duplicates, None, None, TH).verdict == "collapsed"
    assert V.condition_collapse(0.5, TH.at_risk_near_duplicates, None, None, TH).verdict == "at_risk"
    assert V.condition_collapse(0.5, 0.0, None, TH.collapsed_lpips * 0.99, TH).verdict == "collapsed"


def test_a_grid_without_spread_is_judged_by_the_absolute_thresholds():
    """Every condition and seed gives the same image: the seed share is relative to nothing (here ~1), so the
    absolute numbers decide, and the reasons say why."""
    f = V.condition_collapse(1e-4, 1.0, 0.98, None, TH)
    assert f.verdict == "collapsed" and "whole grid" in f.reasons[-1]
    assert V.condition_collapse(0.04, 0.0, 0.6, None, TH).verdict == "healthy"  # grid spread 0.052: relative decides


@pytest.mark.parametrize("absolute", [dict(pixel_rms=TH.collapsed_rms * 0.99), dict(near_duplicates=0.9),
                                      dict(lpips=TH.collapsed_lpips * 0.99)])
def test_no_absolute_threshold_decides_alone(absolute):
    """Scale-free: a healthy seed share keeps the verdict healthy whatever the pixel or LPIPS numbers (they are
    named as corroborating only); an at-risk seed share with a collapsed absolute number is collapsed."""
    numbers = {"pixel_rms": 0.5, "near_duplicates": 0.0, "lpips": None, **absolute}
    # pixel RMS 0.0495 with a seed share of 0.6: the grid's own spread (~0.064) is above collapsed_rms
    healthy = V.condition_collapse(numbers["pixel_rms"], numbers["near_duplicates"], 0.6, numbers["lpips"], TH)
    assert healthy.verdict == "healthy" and healthy.evidence == ()
    assert "corroborate only" in healthy.reasons[-1]
    both = V.condition_collapse(numbers["pixel_rms"], numbers["near_duplicates"], TH.at_risk_seed_share * 0.99,
                                numbers["lpips"], TH)
    assert both.verdict == "collapsed"
    assert {e.threshold for e in both.evidence} >= {"at_risk_seed_share"} and len(both.evidence) == 2


def test_missing_measures_do_not_decide():
    assert V.condition_collapse(0.5, 0.0, None, None, TH).verdict == "healthy"


def test_reasons_name_the_numbers_and_thresholds():
    f = V.condition_collapse(0.01, 0.9, 0.001, 0.001, TH)
    text = " ".join(f.reasons)
    for name in ("collapsed_rms", "collapsed_near_duplicates", "collapsed_seed_share", "collapsed_lpips", "0.01"):
        assert name in text


def test_overall_verdict():
    assert V.overall_collapse(["healthy"] * 10, TH).verdict == "healthy"
    assert V.overall_collapse(["healthy"] * 9 + ["at_risk"], TH).verdict == "healthy"
    assert V.overall_collapse(["healthy"] * 9 + ["collapsed"], TH).verdict == "at_risk"
    assert V.overall_collapse(["healthy"] * 7 + ["at_risk"] * 3, TH).verdict == "at_risk"
    assert V.overall_collapse(["healthy"] * 5 + ["collapsed"] * 5, TH).verdict == "collapsed"
    assert "5/10 conditions collapsed" in V.overall_collapse(["healthy"] * 5 + ["collapsed"] * 5, TH).reasons[0]


def test_null_branch_and_guidance():
    learned = V.null_branch(TH.null_learned_residual * 0.5, TH)
    not_learned = V.null_branch(TH.null_not_learned_residual * 1.5, TH)
    unclear = V.null_branch((TH.null_learned_residual + TH.null_not_learned_residual) / 2, TH)
    assert (learned.verdict, not_learned.verdict, unclear.verdict) == ("learned", "not_learned", "unclear")
    assert V.null_branch(None, TH).verdict == "unclear"
    assert V.guidance_verdict(learned, 0.5, TH).verdict == "steerable"
    assert V.guidance_verdict(learned, TH.steer_min_shift * 0.5, TH).verdict == "not_steerable"
    assert V.guidance_verdict(learned, (TH.steer_min_shift + TH.steer_weak_shift) / 2, TH).verdict == "weak"
    assert V.guidance_verdict(not_learned, 0.5, TH).verdict == "not_steerable"
    assert V.guidance_verdict(unclear, 0.5, TH).verdict == "weak"
    assert V.guidance_verdict(learned, 0.5, TH, adherence_change=-0.2).verdict == "weak"
    assert V.guidance_verdict(learned, 0.5, TH, eps_ratio=TH.weak_eps_ratio).verdict == "weak"
    assert V.guidance_verdict(learned, 0.5, TH, eps_ratio=TH.weak_eps_ratio * 0.9).verdict == "steerable"
    assert V.guidance_verdict(learned, 0.5, TH, adherence_change=0.1).verdict == "steerable"
    distilled = V.null_branch(None, TH, distilled=True)
    assert V.guidance_verdict(distilled, 0.5, TH).verdict == "not_steerable"
    assert "not a training bug" in V.guidance_verdict(distilled, 0.5, TH).reasons[0]


def test_a_base_model_null_is_judged_by_the_movement_alone():
    """A ControlNet's null is its trained base model: an outlying null says the hint overrides the base,
    not that guidance extrapolates from an untrained prediction."""
    far = V.null_branch(TH.null_not_learned_residual * 1.5, TH, base_model=True)
    middle = V.null_branch((TH.null_learned_residual + TH.null_not_learned_residual) / 2, TH, base_model=True)
    assert far.verdict == "not_learned" and "overrides the base" in far.reasons[0]
    assert V.guidance_verdict(far, 0.5, TH, base_model=True).verdict == "steerable"
    assert V.guidance_verdict(middle, 0.5, TH, base_model=True).verdict == "steerable"
    assert V.guidance_verdict(far, TH.steer_min_shift * 0.5, TH, base_model=True).verdict == "not_steerable"
    assert V.guidance_verdict(far, 0.5, TH).verdict == "not_steerable"  # an ordinary null: unchanged


@pytest.mark.parametrize(
    "verdict, limit, expected",
    [("collapsed", "collapsed", True), ("at_risk", "collapsed", False), ("collapsed", "at_risk", True),
     ("healthy", "at_risk", False), ("not_steerable", "not_steerable", True), ("weak", "not_steerable", False)],
)
def test_worse_or_equal(verdict, limit, expected):
    assert V.worse_or_equal(verdict, limit) is expected


def test_thresholds_with_overrides():
    t = thresholds_with(TH, {"collapsed_rms": 0.01})
    assert t.collapsed_rms == 0.01 and t.at_risk_rms == TH.at_risk_rms
