"""Fast mode's escalation (collapsecheck.escalate): borderline conditions re-sampled at a full scan's settings."""
import dataclasses
from types import SimpleNamespace

import pytest
import torch

import collapsecheck.escalate as E
import collapsecheck.escalate.conditions as EC
from collapsecheck.verdict.grid import borderline
from collapsecheck.config import ESCALATION_BAND, ESCALATION_BAND_ABOVE, make_config
from collapsecheck.result import ConditionResult
from collapsecheck.run import evaluate
from collapsecheck.thresholds import Thresholds
from collapsecheck.verdict import rules as V
from helpers_analytic import GaussianClasses, gaussian_setup

INFO = {"source": "analytic", "model_class": "GaussianClasses", "scheduler_source": "test"}


class ClassSigmas(GaussianClasses):
    """Exact eps of Gaussian classes with a per-class std (``sigmas``, the last one the null's, centred at 0)."""

    def __init__(self, means, sigmas, alphas_cumprod):
        super().__init__(means, 1.0, alphas_cumprod, null="arbitrary")
        self.register_buffer("sigmas", torch.tensor(sigmas))

    def forward(self, x, t, class_labels):
        a = self.abar[t.long()].view(-1, 1, 1, 1)
        labels = class_labels.long()
        mu = (torch.nn.functional.one_hot(labels, len(self.sigmas))[:, :-1].float() @ self.means.flatten(1))
        sig = self.sigmas[labels].view(-1, 1, 1, 1)
        eps = (1 - a).sqrt() * (x - a.sqrt() * mu.view_as(x)) / (a * sig ** 2 + 1 - a)
        return SimpleNamespace(sample=eps + 0 * self.anchor)


def class_sigmas_setup(sigmas):
    denoiser, schedule, conds = gaussian_setup(1.0, classes=len(sigmas))
    denoiser.model = ClassSigmas(denoiser.model.means, list(sigmas) + [1.0], schedule.alphas_cumprod)
    return denoiser, schedule, conds


def fast_and_full(setup, **options):
    denoiser, schedule, conds = setup
    fast = evaluate(denoiser, schedule, conds, make_config(checkpoint="a", mode="fast", lpips=False, **options), INFO)
    full = evaluate(denoiser, schedule, conds, make_config(checkpoint="a", lpips=False, recovery=False,
                                                           posterior=False, **options), INFO)
    return fast, full


NUMBERS = ("pixel_rms", "pixel_std", "near_duplicates", "near_duplicates_stderr")


def test_escalated_conditions_equal_the_full_scan_when_every_condition_is_borderline(monkeypatch):
    setup = gaussian_setup(0.15, classes=4)  # seed share ~0.17 in every class: at risk
    fast, full = fast_and_full(setup)
    assert fast.escalation["resampled"] == 4 and fast.escalation["denominator"] == "exact"
    for a, b in zip(fast.conditions, full.conditions):
        assert a.resampled and not b.resampled
        for name in NUMBERS + ("seed_share",):
            assert getattr(a, name) == pytest.approx(getattr(b, name), rel=1e-5, abs=1e-9), name
        assert (a.verdict, a.reasons) == (b.verdict, b.reasons)
    monkeypatch.setattr(EC, "borderline", lambda c, th: [])  # w = 1 sampled without the null half: the fast eps kept
    plain = evaluate(*setup, make_config(checkpoint="a", mode="fast", lpips=False), INFO)
    assert [(c.eps_ratio, c.eps_cos) for c in fast.conditions] == [(c.eps_ratio, c.eps_cos) for c in plain.conditions]
    assert fast.verdict == full.verdict
    steering = (fast.escalation["steering"] or {}).get("nfe", 0)  # the guidance verdict's own re-measure, if any
    assert fast.escalation["nfe"] == 4 * 16 * 25 + steering  # w = 1: the conditional half alone at each step
    assert "4 of 4 conditions were re-sampled at full settings (16 seeds x 25 steps)" in " ".join(
        fast.checkpoint["notes"])


def test_one_borderline_condition_gets_the_full_scans_numbers_and_a_mixed_grid_seed_share():
    fast, full = fast_and_full(class_sigmas_setup([1.0, 1.0, 1.0, 0.25]))
    assert [c.resampled for c in fast.conditions] == [False, False, False, True]
    assert fast.escalation["denominator"] == "mixed" and fast.escalation["indices"] == [3]
    a, b = fast.conditions[3], full.conditions[3]
    for name in NUMBERS:
        assert getattr(a, name) == pytest.approx(getattr(b, name), rel=1e-5, abs=1e-9), name
    assert a.verdict == b.verdict
    # the seed share's numerator is the full scan's; its denominator the grid's variance with this condition's
    # full set and the others' fast sets: close to the full scan's, not equal
    assert a.seed_share == pytest.approx(b.seed_share, rel=0.15)
    assert [c.verdict for c in fast.conditions] == [c.verdict for c in full.conditions]


def test_conditions_far_from_the_thresholds_are_not_escalated(monkeypatch):
    setup = gaussian_setup(1.5, classes=4)  # seed share ~1 in every class
    fast = evaluate(*setup, make_config(checkpoint="a", mode="fast", lpips=False, profile=True), INFO)
    assert fast.escalation is None and not any(c.resampled for c in fast.conditions)
    assert "escalation" not in [p.name for p in fast.profile.stages]
    monkeypatch.setattr(EC, "borderline", lambda c, th: [])  # escalation off: the same network evaluations
    assert evaluate(*setup, make_config(checkpoint="a", mode="fast", lpips=False), INFO).nfe == fast.nfe


def test_escalation_is_profiled_and_counted():
    fast = evaluate(*gaussian_setup(0.15, classes=3), make_config(checkpoint="a", mode="fast", lpips=False,
                                                                   profile=True), INFO)
    stages = {p.name: p for p in fast.profile.stages}
    steering = (fast.escalation["steering"] or {}).get("nfe", 0)
    assert stages["escalation"].nfe == fast.escalation["nfe"] == 3 * 16 * 25 + steering


def condition(seed_share, pixel_rms=0.5, near_duplicates=0.0, lpips=None):
    return ConditionResult(index=0, label="c", verdict="healthy", reasons=[], pixel_rms=pixel_rms, pixel_std=0.3,
                           near_duplicates=near_duplicates, seed_share=seed_share, lpips=lpips, eps_ratio=0.1,
                           eps_cos=0.0)


@pytest.mark.parametrize("band, above", [(ESCALATION_BAND, ESCALATION_BAND_ABOVE), (2.0, 1.5)])
def test_the_band_applies_on_both_sides(band, above):
    th = Thresholds()
    low, high = th.collapsed_seed_share / band, th.at_risk_seed_share * above
    assert borderline(condition(low * 1.01), th, band, above) and borderline(condition(high * 0.99), th, band, above)
    assert not borderline(condition(low * 0.99), th, band, above)
    assert not borderline(condition(high * 1.01), th, band, above)
    assert borderline(condition(0.15), th, band, above)  # between the thresholds


def test_the_default_band_covers_the_measured_fast_to_full_ratios():
    th = Thresholds()
    # fast/full seed share on the zoo: 0.37-1.69 below the collapse threshold, up to 1.29 near the at-risk one; a
    # full share at a threshold reads at most this far off in fast mode
    assert borderline(condition(th.collapsed_seed_share * 0.37), th)
    assert borderline(condition(th.collapsed_seed_share * 1.69), th)
    assert borderline(condition(th.at_risk_seed_share * 1.29), th)


def test_absolute_measures_are_borderline_only_where_they_decide():
    th = Thresholds()
    # a healthy seed share: pixel RMS near at_risk_rms does not decide
    assert not borderline(condition(0.9, pixel_rms=0.15), th)
    # no seed share (one condition): the absolute thresholds decide, within the band of theirs
    assert borderline(condition(None, pixel_rms=0.15), th)
    assert borderline(condition(None, pixel_rms=0.01, near_duplicates=0.9), th)  # near collapsed_near_duplicates
    assert not borderline(condition(None, pixel_rms=2.0), th)


def test_mixed_grid_variance_is_grid_variance_when_the_sets_have_one_size():
    from collapsecheck.measure.pixel import grid_variance

    g = torch.Generator().manual_seed(0)
    grid = torch.randn(5, 8, 30, generator=g, dtype=torch.float64) + torch.randn(5, 1, 30, generator=g, dtype=torch.float64)
    assert float(E.mixed_grid_variance(list(grid))) == pytest.approx(float(grid_variance(grid)), rel=1e-12)
    # every condition escalated: the exact denominator, no factor
    exact, factor = E.shared_denominator(grid, grid[:, :4], [0, 1, 2, 3, 4])
    assert factor is None and float(exact) == float(grid_variance(grid))


def undecided_thresholds(setup):
    """Thresholds whose null-ratio boundary lies inside the fast scan's interval: the fast test is undecided."""
    plain = evaluate(*setup, make_config(checkpoint="a", mode="fast", lpips=False), INFO).guidance.null_branch
    assert plain.null_ratio_low < plain.null_ratio_high
    boundary = (plain.null_ratio_low + plain.null_ratio_high) / 2
    return dataclasses.replace(Thresholds(), null_ratio_boundary=boundary), plain


def test_an_undecided_fast_null_test_is_run_again_as_the_full_scan_runs_it():
    setup = gaussian_setup(1.0, classes=4)
    th, plain = undecided_thresholds(setup)
    fast, full = fast_and_full(setup, thresholds=th)
    a, b = fast.guidance.null_branch, full.guidance.null_branch
    assert (a.null_samples, b.null_samples, plain.null_samples) == (64, 64, 32)
    for name in ("null_ratio", "null_ratio_low", "null_ratio_high", "null_contrast"):
        # the same samples and noises, batched differently: equal to float32 rounding (1.1e-6 on some CPUs)
        assert getattr(a, name) == pytest.approx(getattr(b, name), rel=1e-5, abs=1e-9), name
    assert a.verdict == b.verdict and fast.guidance.verdict == full.guidance.verdict
    esc = fast.escalation["null"]
    assert (esc["fast_ratio"], esc["fast_low"], esc["fast_high"]) == (plain.null_ratio, plain.null_ratio_low,
                                                                     plain.null_ratio_high)
    assert esc["nfe"] == 4 * 16 * 25 + 4 * 16 * (4 + 1) * 4  # w = 1 conditional samples; 4 candidates + null, 4 levels
    steering = (fast.escalation["steering"] or {}).get("nfe", 0)  # the guidance re-measure reuses those w = 1 samples
    assert fast.escalation["nfe"] == fast.escalation["resampled"] * 16 * 25 + esc["nfe"] + steering
    assert "the null-branch test was undecided or near its boundary at fast settings" in a.reasons[-1]
    assert esc["note"] in fast.checkpoint["notes"]


def test_a_decided_fast_null_test_is_not_run_again():
    setup = gaussian_setup(1.0, classes=4)
    th = dataclasses.replace(Thresholds(), null_ratio_boundary=1e6)  # every interval below it: learned
    fast = evaluate(*setup, make_config(checkpoint="a", mode="fast", lpips=False, thresholds=th), INFO)
    assert fast.guidance.null_branch.verdict == "learned" and fast.guidance.null_branch.null_samples == 32
    assert fast.escalation is None or fast.escalation["null"] is None


def test_a_fast_null_test_decided_near_its_boundary_is_run_again_as_the_full_scan_runs_it():
    from collapsecheck.escalate.null import NULL_TEST_BAND

    setup = gaussian_setup(1.0, classes=4)
    plain = evaluate(*setup, make_config(checkpoint="a", mode="fast", lpips=False), INFO).guidance.null_branch
    for boundary in (plain.null_ratio_high + NULL_TEST_BAND / 2, plain.null_ratio_low - NULL_TEST_BAND / 2):
        th = dataclasses.replace(Thresholds(), null_ratio_boundary=boundary)  # the interval on one side, near it
        fast, full = fast_and_full(setup, thresholds=th)
        esc = fast.escalation["null"]
        assert (esc["fast_low"], esc["fast_high"]) == (plain.null_ratio_low, plain.null_ratio_high)
        a, b = fast.guidance.null_branch, full.guidance.null_branch
        assert a.null_samples == b.null_samples == 64
        assert a.null_ratio == pytest.approx(b.null_ratio, rel=1e-5, abs=1e-9) and a.verdict == b.verdict
    far = dataclasses.replace(Thresholds(), null_ratio_boundary=plain.null_ratio_high + 2 * NULL_TEST_BAND)
    fast = evaluate(*setup, make_config(checkpoint="a", mode="fast", lpips=False, thresholds=far), INFO)
    assert fast.guidance.null_branch.null_samples == 32  # past the band: the fast test stands


def test_the_null_test_reuses_the_w1_samples_when_every_condition_was_escalated():
    setup = gaussian_setup(0.15, classes=4)  # every condition borderline: all re-sampled at w = 1
    th, _ = undecided_thresholds(setup)
    fast, full = fast_and_full(setup, thresholds=th)
    assert fast.escalation["resampled"] == 4
    esc = fast.escalation["null"]
    assert esc["nfe"] == 4 * 16 * (4 + 1) * 4  # the classifier alone: the samples were already drawn
    steering = (fast.escalation["steering"] or {}).get("nfe", 0)
    assert fast.escalation["nfe"] == 4 * 16 * 25 + esc["nfe"] + steering
    a, b = fast.guidance.null_branch, full.guidance.null_branch
    for name in ("null_ratio", "null_ratio_low", "null_ratio_high", "null_contrast"):
        assert getattr(a, name) == pytest.approx(getattr(b, name), rel=1e-6, abs=1e-9), name


def _steering_numbers(result) -> tuple:
    """The adherence change the guidance verdict read, from its first reason."""
    return result.guidance.reasons[0].split(": change")[0], result.guidance.verdict


def test_a_borderline_fast_guidance_verdict_is_measured_again_as_the_full_scan_measures_it():
    setup = gaussian_setup(1.0, classes=4)  # fast: implicit adherence 0.81 (standard error 0.069) at w = 1, 1 at w = 3
    fast, full = fast_and_full(setup)
    esc = fast.escalation["steering"]
    assert esc is not None and esc["fast_adherence_w1"] < 0.95 - 0.05  # near the ceiling by two standard errors
    assert _steering_numbers(fast) == _steering_numbers(full)  # the full scan's adherence at w = 1 and w = 3
    sweep = {p.w: p for p in full.guidance.sweep}
    for name, w in (("adherence_w1", 1.0), ("adherence_max", 3.0)):
        assert esc[name] == pytest.approx(sweep[w].implicit_adherence, abs=1e-12)
    assert esc["break_ratio"] == pytest.approx(sweep[3.0].break_ratio, rel=1e-6)
    samples, classifier = 4 * 16 * 25 * (1 + 2), 2 * 4 * 16 * 4 * 4  # w = 1 alone, w = 3 with the null; 2 scales
    assert esc["nfe"] == samples + classifier and fast.escalation["nfe"] == esc["nfe"]
    assert esc["note"] in fast.guidance.reasons and esc["note"] in fast.checkpoint["notes"]


def _relative_shift(result) -> float:
    sweep = {p.w: p.shift_from_w1 for p in result.guidance.sweep}
    return sweep[3.0] / sweep[0.0]


def test_a_relative_shift_near_its_threshold_is_measured_again_with_full_w0_samples():
    """Fast mode's relative shift (7 steps, 8 seeds) near steer_still_shift: every condition's w = 0 samples are
    drawn at full settings too, and the escalated relative shift is the full scan's own, exactly."""
    setup = gaussian_setup(1.0, classes=4)
    plain = evaluate(*setup, make_config(checkpoint="a", mode="fast", lpips=False), INFO)  # the sweep's fast numbers
    th = dataclasses.replace(Thresholds(), steer_still_shift=_relative_shift(plain) * 1.5)  # near it, from above
    fast, full = fast_and_full(setup, thresholds=th)
    esc = fast.escalation["steering"]
    assert esc["fast_relative_shift"] == pytest.approx(_relative_shift(plain), rel=1e-6)
    assert esc["relative_shift"] == pytest.approx(_relative_shift(full), rel=1e-6)
    assert fast.guidance.verdict == full.guidance.verdict
    samples, classifier, w0 = 4 * 16 * 25 * (1 + 2), 2 * 4 * 16 * 4 * 4, 4 * 16 * 25 * 2
    assert esc["nfe"] == samples + classifier + w0
    assert "relative shift" in esc["note"] and "(and at w = 0, for the relative shift)" in esc["note"]


def test_a_guidance_verdict_far_from_its_thresholds_is_not_measured_again():
    th = Thresholds()
    far = V.Steering(3.0, 0.5, 0.9, 0.01, 1.0)  # a change of +0.4, forty standard errors above steer_adherence_gain
    assert not E.borderline_steering(far, th)
    assert E.borderline_steering(dataclasses.replace(far, adherence_max=0.5 + th.steer_adherence_gain + 0.015), th)
    assert E.borderline_steering(dataclasses.replace(far, break_ratio=th.guidance_break_ratio * 1.9), th)
    assert not E.borderline_steering(dataclasses.replace(far, metric="adherence (plugin)"), th)  # fast samples only
    assert not E.borderline_steering(None, th)
    still = dataclasses.replace(far, relative_shift=th.steer_still_shift * 1.9)  # within STEERING_SHIFT_BAND 2
    assert E.borderline_steering(still, th)
    assert not E.borderline_steering(dataclasses.replace(far, relative_shift=th.steer_still_shift * 2.1), th)


def test_full_grids_draw_and_decode_each_scale_once_and_charge_the_first_to_ask(monkeypatch):
    """The escalations share one draw per scale: the w = 0 samples of the relative shift and of the --reference
    comparison are one draw, charged once; a grid offered by the conditions' escalation costs nothing."""
    from types import SimpleNamespace

    import collapsecheck.escalate.grids as G

    drawn, decodes = [], []
    monkeypatch.setattr(G, "resample", lambda s, indices, scale: drawn.append(scale) or SimpleNamespace(
        nfe=100 + int(scale), samples=torch.full((1, 2), scale)))
    monkeypatch.setattr(G, "decoded", lambda s, grid: decodes.append(grid) or grid.samples * 2)
    grids = G.FullGrids(SimpleNamespace(conds=[0, 1]))
    assert grids.get(0.0)[1] == 100 and grids.get(0.0)[1] == 0  # the second asker pays nothing
    images, spent = grids.decoded(0.0)
    assert spent == 0 and torch.equal(images, torch.zeros(1, 2)) and grids.decoded(0.0)[1] == 0
    assert drawn == [0.0] and len(decodes) == 1
    assert grids.decoded(3.0)[1] == 103 and drawn == [0.0, 3.0]
    offered = SimpleNamespace(nfe=7, samples=torch.ones(1, 2))
    grids.offer(1.0, offered, torch.full((1, 2), 5.0))
    assert grids.get(1.0) == (offered, 0) and torch.equal(grids.decoded(1.0)[0], torch.full((1, 2), 5.0))
    assert drawn == [0.0, 3.0] and len(decodes) == 2


def test_a_null_spread_near_its_threshold_is_measured_again_from_full_w0_and_w1_samples():
    """Fast mode's null spread (8 seeds, 7 steps) within NULL_SPREAD_BAND of collapsed_seed_share: the w = 0 and w = 1
    grids are drawn at full settings, and the escalated spread and null verdict are the full scan's own."""
    setup = gaussian_setup(1.0, classes=4)
    plain = evaluate(*setup, make_config(checkpoint="a", mode="fast", lpips=False), INFO).guidance.null_branch
    assert plain.null_spread is not None and "escalation" not in " ".join(plain.reasons)
    low = plain.null_spread * 1.5  # the fast spread reads not_learned against it, within the band
    th = dataclasses.replace(Thresholds(), collapsed_seed_share=low, at_risk_seed_share=low * 1.1)
    fast, full = fast_and_full(setup, thresholds=th)
    esc = fast.escalation["null_spread"]
    assert esc["fast_spread"] == pytest.approx(plain.null_spread, rel=1e-9)
    assert esc["spread"] == pytest.approx(full.guidance.null_branch.null_spread, rel=1e-6)
    assert fast.guidance.null_branch.null_spread == esc["spread"]
    assert fast.guidance.null_branch.verdict == full.guidance.null_branch.verdict
    assert fast.guidance.verdict == full.guidance.verdict
    assert esc["note"] in fast.checkpoint["notes"] and esc["note"] in fast.guidance.null_branch.reasons


def test_a_null_spread_far_from_the_thresholds_or_behind_a_ratio_that_decided_is_not_measured_again():
    from collapsecheck.config import NULL_SPREAD_BAND
    from collapsecheck.escalate.spread import borderline_spread

    th = Thresholds()
    learned = V.null_branch(nt := V.NullTest(0.2, 0.1, 0.3, 32, 4), th)
    assert borderline_spread(th.collapsed_seed_share * 1.5, learned, th)
    assert borderline_spread(th.collapsed_seed_share / NULL_SPREAD_BAND * 1.01, learned, th)
    assert not borderline_spread(th.collapsed_seed_share / NULL_SPREAD_BAND * 0.99, learned, th)
    assert not borderline_spread(th.collapsed_seed_share * NULL_SPREAD_BAND * 1.01, learned, th)
    no_contrast = V.null_branch(V.NullTest(None, None, None, 32, 4), th)  # the spread can read it learned
    assert borderline_spread(th.at_risk_seed_share * NULL_SPREAD_BAND * 0.99, no_contrast, th, contrast=False)
    assert not borderline_spread(th.at_risk_seed_share * NULL_SPREAD_BAND * 1.01, no_contrast, th, contrast=False)
    assert not borderline_spread(None, learned, th)
    by_ratio = V.null_branch(V.NullTest(1.5, 1.2, 1.8, 32, 4), th, spread=0.3)
    assert by_ratio.verdict == "not_learned" and not borderline_spread(0.3, by_ratio, th)
    by_spread = V.null_branch(nt, th, spread=0.15)
    assert by_spread.verdict == "not_learned" and borderline_spread(0.15, by_spread, th)
