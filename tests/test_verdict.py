"""The verdict functions are pure: numbers in, a finding with its reasons out."""
import dataclasses
import math
import pytest

from collapsecheck.measure.coverage import NullCoverage
from collapsecheck.measures import RATIO_CLAMP
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
    # overall_collapsed_fraction (fitted, 0.806): eight in ten prompts collapsed is at risk, nine in ten collapsed
    k = math.ceil(10 * TH.overall_collapsed_fraction)
    assert k == 9
    assert V.overall_collapse(["healthy"] * (11 - k) + ["collapsed"] * (k - 1), TH).verdict == "at_risk"
    assert V.overall_collapse(["healthy"] * (10 - k) + ["collapsed"] * k, TH).verdict == "collapsed"
    assert f"{k}/10 conditions collapsed" in V.overall_collapse(["healthy"] * (10 - k) + ["collapsed"] * k,
                                                                TH).reasons[0]


def nt(ratio, low, high, samples=32, conditions=4):
    return V.NullTest(ratio, low, high, samples, conditions)


def test_null_branch_reads_the_null_ratio_interval_around_one():
    learned, not_learned = V.null_branch(nt(0.2, 0.1, 0.3), TH), V.null_branch(nt(1.5, 1.2, 1.8), TH)
    assert (learned.verdict, not_learned.verdict) == ("learned", "not_learned")
    assert V.null_branch(nt(0.9, 0.6, 1.2), TH).verdict == "unclear"  # straddles 1
    assert V.null_branch(nt(0.2, 0.1, 0.3, samples=V.NULL_MIN_SAMPLES - 1), TH).verdict == "unclear"  # thin
    assert V.null_branch(nt(0.2, 0.1, 0.3, conditions=1), TH).verdict == "unclear"
    assert V.null_branch(nt(None, None, None), TH).verdict == "unclear"  # no contrast
    assert V.null_branch(None, TH).verdict == "unclear"
    assert "null_ratio_boundary 1" in learned.reasons[0] and not learned.evidence
    assert not_learned.evidence[0].measure == "null_ratio_low" and not_learned.evidence[0].limit == 1.0
    assert V.null_branch(None, TH, distilled=True).verdict == "absent_by_design"


@pytest.mark.parametrize("spread,ratio,expected", [
    # a null that draws one image is not the marginal, whatever the ratio reads (gtsrb/hint_nodrop, round 19)
    (0.01, (0.2, 0.1, 0.3), "not_learned"),
    (0.01, (0.9, 0.6, 1.2), "not_learned"),
    (0.01, (None, None, None), "not_learned"),
    # no contrast: the null judged by its samples alone, on the seed share's scale
    (1.04, (None, None, None), "learned"),
    (0.19, (None, None, None), "unclear"),
    # an unbounded interval (the simpsons text models: [-6.19, inf]) is no reliable contrast either
    (1.04, (-0.015, -6.19, RATIO_CLAMP), "learned"),
    (0.19, (-0.015, -6.19, RATIO_CLAMP), "unclear"),
    (1.04, (1.5, 1.2, RATIO_CLAMP), "not_learned"),  # the whole interval above 1: the ratio decided
    # with a contrast, a varied null leaves the ratio's verdict alone
    (1.04, (0.9, 0.6, 1.2), "unclear"),
    (1.04, (1.5, 1.2, 1.8), "not_learned"),
    (0.19, (0.2, 0.1, 0.3), "learned"),
])
def test_null_branch_reads_the_null_spread_beside_the_ratio(spread, ratio, expected):
    found = V.null_branch(nt(*ratio), TH, spread=spread)
    assert found.verdict == expected
    if spread < TH.collapsed_seed_share:
        assert found.evidence[0].measure == "null_spread" and found.evidence[0].threshold == "collapsed_seed_share"
        assert "null_spread = 0.01" in found.reasons[0] and len(found.reasons) == 2  # the ratio's reading kept
    if expected == "learned" and ratio[0] is None:
        assert "at_risk_seed_share" in found.reasons[0] and "no contrast" in found.reasons[1]
    if expected == "learned" and ratio[2] == RATIO_CLAMP:
        assert "at_risk_seed_share" in found.reasons[0] and "straddles" in found.reasons[1]


def test_the_null_spread_is_not_read_for_a_controlnet_or_when_not_measured():
    assert V.null_branch(nt(0.2, 0.1, 0.3), TH, base_model=True, spread=0.01).verdict == "learned"
    assert V.null_branch(nt(None, None, None), TH, base_model=True, spread=1.0).verdict == "unclear"
    assert V.null_branch(nt(0.2, 0.1, 0.3), TH, spread=None) == V.null_branch(nt(0.2, 0.1, 0.3), TH)
    assert V.null_branch(None, TH, distilled=True, spread=0.01).verdict == "absent_by_design"


def coverage(entropy):
    return NullCoverage(entropy, max(0.0, entropy - 0.1), min(1.0, entropy + 0.1), 0.5, 96, 10)


@pytest.mark.parametrize("ratio, spread, entropy, expected", [
    ((0.2, 0.1, 0.3), 1.0, 0.5, "unclear"),  # learned by the ratio, but its samples come from a few conditions
    ((0.2, 0.1, 0.3), 1.0, 0.95, "learned"),
    ((None, None, None), 1.04, 0.5, "unclear"),  # learned by the spread (no contrast): the same
    ((1.5, 1.2, 1.8), 1.0, 0.5, "not_learned"),  # never made better than unclear, nor worse than not_learned
    ((1.5, 1.2, 1.8), 1.0, 0.95, "not_learned"),
    ((0.9, 0.6, 1.2), 1.0, 0.5, "unclear"),
])
def test_an_uneven_null_coverage_makes_a_learned_null_unclear(ratio, spread, entropy, expected):
    found = V.null_branch(nt(*ratio), TH, spread=spread, coverage=coverage(entropy))
    assert found.verdict == expected
    plain = V.null_branch(nt(*ratio), TH, spread=spread)
    if found.verdict != plain.verdict:
        assert plain.verdict == "learned"
        assert found.evidence[0].measure == "null_coverage" and found.evidence[0].threshold == "null_coverage_entropy"
        assert "coverage entropy 0.5" in found.reasons[0] and found.reasons[1:] == plain.reasons
    else:
        assert found == plain


def test_the_coverage_threshold_is_a_strict_bound_and_not_read_for_a_controlnet():
    x = TH.null_coverage_entropy
    assert V.null_branch(nt(0.2, 0.1, 0.3), TH, coverage=coverage(x)).verdict == "learned"
    assert V.null_branch(nt(0.2, 0.1, 0.3), TH, coverage=coverage(x - 1e-6)).verdict == "unclear"
    assert V.null_branch(nt(0.2, 0.1, 0.3), TH, base_model=True, coverage=coverage(0.0)).verdict == "learned"
    assert V.null_branch(None, TH, distilled=True, coverage=coverage(0.0)).verdict == "absent_by_design"


def steer(a1, am, brk=1.0, w=7.5):
    return V.Steering(w, a1, am, 0.05, brk)


def test_guidance_is_defined_by_what_guidance_does_to_adherence():
    learned = V.null_branch(nt(0.2, 0.1, 0.3), TH)
    g = TH.steer_adherence_gain
    assert V.guidance_verdict(learned, steer(0.5, 0.5 + g), 0.5, TH).verdict == "steerable"  # raises adherence
    assert V.guidance_verdict(learned, steer(0.97, 0.96), 0.5, TH).verdict == "steerable"  # held at the ceiling
    weak = V.guidance_verdict(learned, steer(0.5, 0.5 + (g + TH.steer_weak_gain) / 2), 0.5, TH)
    assert weak.verdict == "weak" and weak.evidence[0].threshold == "steer_adherence_gain"
    flat = V.guidance_verdict(learned, steer(0.5, 0.5), 0.5, TH)
    assert flat.verdict == "not_steerable" and flat.evidence[0].threshold == "steer_weak_gain"
    assert V.guidance_verdict(learned, steer(0.97, 0.8), 0.5, TH).verdict == "not_steerable"  # falls off the ceiling
    broken = V.guidance_verdict(learned, steer(0.5, 0.9, brk=TH.guidance_break_ratio), 0.5, TH)
    assert broken.verdict == "not_steerable" and broken.evidence[0].measure == "break_ratio"
    distilled = V.null_branch(None, TH, distilled=True)
    assert V.guidance_verdict(distilled, steer(0.5, 0.9), 0.5, TH).verdict == "not_steerable"
    assert "not a training bug" in V.guidance_verdict(distilled, None, 0.5, TH).reasons[0]


def test_an_adherence_change_equal_to_its_threshold_reaches_it():
    """78/80 - 74/80 is exactly steer_adherence_gain 0.05, though 0.975 - 0.925 < 0.05 in floating point."""
    learned = V.null_branch(nt(0.2, 0.1, 0.3), TH)
    assert 0.975 - 0.925 < 0.05 and TH.steer_adherence_gain == 0.05
    assert V.guidance_verdict(learned, steer(74 / 80, 78 / 80), 0.5, TH).verdict == "steerable"


def test_a_decoder_at_its_ceiling_is_weak():
    """A collapsed model whose condition is pixel-aligned: its own classifier reads every sample perfectly, so
    the ceiling says nothing and guidance barely moves what the samples show (weak, calibration round 42); a
    collapsed class or text model (a memoriser) held at the ceiling stays steerable."""
    learned = V.null_branch(nt(0.2, 0.1, 0.3), TH)
    assert V.is_decoder("concat", "collapsed") and V.is_decoder("control", "collapsed")
    assert not V.is_decoder("concat", "at_risk") and not V.is_decoder("cross_attn", "collapsed")
    assert not V.is_decoder("class", "collapsed")
    at_ceiling = V.guidance_verdict(learned, steer(1.0, 1.0), 0.1, TH, decoder=True)
    assert at_ceiling.verdict == "weak" and "decoder" in at_ceiling.reasons[0]
    assert at_ceiling.evidence[0].threshold == "adherence_ceiling"
    assert V.guidance_verdict(learned, steer(1.0, 1.0), 0.1, TH).verdict == "steerable"  # a memoriser
    memoriser = V.guidance_verdict(learned, steer(1.0, 1.0), 0.1, TH, collapsed=True)
    assert memoriser.verdict == "steerable" and V.COLLAPSED_CEILING in memoriser.reasons
    assert V.COLLAPSED_CEILING not in V.guidance_verdict(learned, steer(1.0, 1.0), 0.1, TH).reasons
    assert V.COLLAPSED_CEILING not in V.guidance_verdict(learned, steer(0.5, 0.9), 0.1, TH, collapsed=True).reasons
    assert V.guidance_verdict(learned, steer(0.5, 0.9), 0.1, TH, decoder=True).verdict == "steerable"  # rises


def test_guidance_that_leaves_the_samples_where_they_were_is_weak():
    """A copier or decoder whose samples w = 3 barely moves (relative to how far its w = 0 samples lie) cannot
    change what they show, whatever its own classifier reads at the ceiling; breaking the samples still decides
    first, and without w = 0 (relative_shift None) the adherence decides as before."""
    learned = V.null_branch(nt(0.2, 0.1, 0.3), TH)
    tau = TH.steer_still_shift
    still = V.Steering(3.0, 1.0, 1.0, 0.0, 1.0, relative_shift=tau / 2)
    for flags in ({}, {"collapsed": True}, {"decoder": True}):
        found = V.guidance_verdict(learned, still, 0.1, TH, **flags)
        assert found.verdict == "weak" and found.evidence[0].threshold == "steer_still_shift"
        assert found.evidence[0].value == tau / 2 and "leaves each sample nearly where it was" in found.reasons[0]
    moving = dataclasses.replace(still, relative_shift=tau)  # reaches the threshold: the adherence decides
    assert V.guidance_verdict(learned, moving, 0.1, TH).verdict == "steerable"  # held at the ceiling
    assert V.guidance_verdict(learned, moving, 0.1, TH, decoder=True).verdict == "weak"  # the decoder rule
    unmeasured = dataclasses.replace(still, relative_shift=None)
    assert V.guidance_verdict(learned, unmeasured, 0.1, TH).verdict == "steerable"
    broken = dataclasses.replace(still, break_ratio=TH.guidance_break_ratio)
    assert V.guidance_verdict(learned, broken, 0.1, TH).verdict == "not_steerable"


def test_the_relative_shift_is_the_judged_scales_shift_over_the_null_branchs():
    from collapsecheck.verdict.steering import relative_shift

    assert relative_shift([0.0, 1.0, 3.0], [0.4, 0.0, 0.1], 3.0) == pytest.approx(0.25)
    assert relative_shift([1.0, 3.0], [0.0, 0.1], 3.0) is None  # no w = 0
    assert relative_shift([0.0, 1.0, 3.0], [0.0, 0.0, 0.1], 3.0) is None  # the null sits on the w = 1 samples


def test_an_untrained_null_and_a_strong_pull_are_evidence_not_the_verdict():
    """Without dropout, w > 1 still extrapolates away from the untrained null and can steer; the eps ratio
    says how hard the condition pulls, and neither forces a verdict."""
    not_learned, unclear = V.null_branch(nt(1.5, 1.2, 1.8), TH), V.null_branch(nt(0.9, 0.6, 1.2), TH)
    for null in (not_learned, unclear):
        f = V.guidance_verdict(null, steer(0.5, 0.9), 0.5, TH, eps_ratio=TH.weak_eps_ratio * 4)
        assert f.verdict == "steerable" and not f.evidence
        assert any("eps ratio" in r for r in f.reasons)
    text = " ".join(V.guidance_verdict(not_learned, steer(0.5, 0.9), 0.5, TH).reasons)
    assert "w < 1 cannot bring diversity back" in text


def test_without_an_adherence_measure_the_movement_decides():
    learned = V.null_branch(nt(0.2, 0.1, 0.3), TH)
    assert V.guidance_verdict(learned, None, 0.5, TH).verdict == "steerable"
    assert V.guidance_verdict(learned, None, TH.steer_min_shift * 0.5, TH).verdict == "not_steerable"
    assert V.guidance_verdict(learned, None, (TH.steer_min_shift + TH.steer_weak_shift) / 2, TH).verdict == "weak"
    assert V.guidance_verdict(learned, V.Steering(1.0, None, None), None, TH).verdict == "weak"  # nothing measured


def test_a_base_model_null_is_judged_by_the_same_ratio_with_its_own_words():
    """A ControlNet's null is its trained base model: a ratio above 1 says the hint overrides the base,
    not that guidance extrapolates from an untrained prediction."""
    far = V.null_branch(nt(1.5, 1.2, 1.8), TH, base_model=True)
    assert far.verdict == "not_learned" and "overrides the base" in far.reasons[0]
    f = V.guidance_verdict(far, steer(0.5, 0.9), 0.5, TH, base_model=True)
    assert f.verdict == "steerable" and "overrides it everywhere" in " ".join(f.reasons)


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
