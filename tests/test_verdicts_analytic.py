"""Verdicts on denoisers whose answer is known in closed form (exact Gaussian eps)."""
import pytest

from collapsecheck.config import make_config
from collapsecheck.measure.coverage import coverage_nfe
from collapsecheck.run import evaluate
from collapsecheck.verdict.gate import gate_result
from helpers_analytic import gaussian_setup


def gate(result, fail_on):
    return gate_result(result, fail_on).passed


def run(sigma, null, classes=4, **options):
    denoiser, schedule, conds = gaussian_setup(sigma, classes=classes, null=null)
    config = make_config(checkpoint="analytic", seeds=8, steps=20, lpips=False, **options)
    return evaluate(denoiser, schedule, conds, config, {"source": "analytic", "model_class": "GaussianClasses",
                                                          "scheduler_source": "test"})


def test_diverse_model_with_learned_null_is_healthy_and_steerable():
    r = run(0.4, "mixture")
    assert r.verdict == "healthy"
    assert r.guidance.null_branch.verdict == "learned"
    assert r.guidance.verdict == "steerable"
    assert all(c.verdict == "healthy" for c in r.conditions)
    assert gate(r, "collapsed") and gate(r, "at_risk") and gate(r, "not_steerable")


def test_exact_decoder_with_learned_null_cannot_be_rescued_by_sampling():
    """p(x | c) itself is a point: the null branch alone is diverse, but any w > 0 lands on the point,
    and switching the condition on late or blurring it early still ends there."""
    r = run(0.005, "mixture")
    assert r.verdict == "collapsed"
    assert all(c.verdict == "collapsed" for c in r.conditions)
    assert r.guidance.null_branch.verdict == "learned"
    w0 = next(p for p in r.guidance.sweep if p.w == 0.0)
    w1 = next(p for p in r.guidance.sweep if p.w == 1.0)
    assert w0.pixel_rms > 10 * w1.pixel_rms
    assert [p.name for p in r.guidance.recovery] == ["w=0.5", "w=0.25", "interval", "cads"]
    assert all(p.works == "no" for p in r.guidance.recovery)
    assert any("retraining is the way" in a for a in r.recommendations)
    assert not any("condition dropout" in a for a in r.recommendations)  # the null branch is fine
    assert not gate(r, "collapsed") and gate(r, "never")


def test_decoder_without_a_learned_null_says_retrain_with_dropout():
    r = run(0.005, "arbitrary")
    assert r.verdict == "collapsed"
    assert r.guidance.null_branch.verdict == "not_learned"
    assert r.guidance.verdict == "not_steerable"
    assert "condition dropout" in r.recommendations[0]
    assert not gate(r, "not_steerable")


def test_diverse_model_without_null_is_healthy_but_not_steerable():
    r = run(0.4, "arbitrary")
    assert r.verdict == "healthy"
    assert r.guidance.verdict == "not_steerable"
    assert gate(r, "collapsed") and not gate(r, "not_steerable")


def test_every_verdict_carries_its_numbers():
    r = run(0.005, "mixture")
    assert any("pixel RMS" in reason and "collapsed_rms" in reason for reason in r.conditions[0].reasons)
    assert "null_ratio_boundary" in " ".join(r.guidance.null_branch.reasons)
    # classes of std 0.005 are points: w = 3 leaves each sample where it was (weak), and the adherence follows
    assert r.guidance.verdict == "weak" and "steer_still_shift" in r.guidance.reasons[0]
    assert "implicit adherence" in r.guidance.reasons[1] and r.guidance.decided_by[0].threshold == "steer_still_shift"


def test_guidance_sharpens_overlapping_classes_and_the_implicit_classifier_sees_it():
    """Classes of std 1.5 around means 1.2 apart overlap: at w = 1 the model itself cannot tell many samples'
    class, and guidance (with the exact mixture as null) sharpens them toward their class: steerable by the
    adherence gain, not by a ceiling, with samples the model still finds typical (break ratio near 1)."""
    r = run(1.5, "mixture")
    at = {p.w: p for p in r.guidance.sweep}
    assert r.guidance.adherence_chance == 0.25 and len(r.guidance.implicit_levels) == 4
    assert at[0.0].implicit_adherence < 0.4 and at[1.0].implicit_adherence < 0.6
    assert at[7.5].implicit_adherence - at[1.0].implicit_adherence > 0.3
    assert at[7.5].implicit_adherence > at[3.0].implicit_adherence > at[1.0].implicit_adherence
    assert 0 < at[1.0].implicit_adherence_stderr < 0.1 and abs(at[7.5].break_ratio - 1) < 0.2
    assert r.guidance.verdict == "steerable" and "steer_adherence_gain" in r.guidance.reasons[0]
    assert r.guidance.null_branch.verdict == "learned" and r.guidance.null_branch.null_ratio_high < 1


def test_thresholds_are_overridable():
    from collapsecheck.config import build_thresholds

    # a stricter definition of collapse turns the healthy model into an at-risk one (the relative seed share
    # decides; an absolute pixel threshold alone would not)
    r = run(0.4, "mixture", thresholds=build_thresholds(None, ["at_risk_seed_share=5"]))
    assert r.verdict == "at_risk"


def test_guidance_distilled_is_reported_not_blamed():
    r = run(0.4, "arbitrary", guidance_distilled=True)
    assert r.guidance.null_branch.verdict == "absent_by_design"
    assert "not a training bug" in " ".join(r.guidance.reasons)


@pytest.mark.parametrize("sigma, null", [(0.4, "mixture"), (0.005, "mixture"), (0.005, "arbitrary"), (0.4, "arbitrary"),
                                         (1.5, "mixture")])
def test_fast_mode_agrees_with_the_full_scan_at_a_fraction_of_the_cost(sigma, null):
    denoiser, schedule, conds = gaussian_setup(sigma, classes=4, null=null)
    info = {"source": "analytic", "model_class": "GaussianClasses", "scheduler_source": "test"}
    full = evaluate(denoiser, schedule, conds, make_config(checkpoint="a", seeds=16, steps=25, lpips=False), info)
    fast = evaluate(denoiser, schedule, conds, make_config(checkpoint="a", mode="fast", lpips=False), info)
    assert (fast.verdict, fast.guidance.verdict, fast.guidance.null_branch.verdict) == (
        full.verdict, full.guidance.verdict, full.guidance.null_branch.verdict)
    escalated = (fast.escalation or {}).get("nfe", 0)  # what lay near a threshold, redone at full settings
    shared = coverage_nfe(4, 25)  # the null coverage: the same samples and cost in both modes
    assert (fast.nfe - escalated - shared) * 8 <= full.nfe - shared and fast.nfe <= full.nfe
    assert fast.guidance.null_branch.null_coverage == full.guidance.null_branch.null_coverage is not None
    assert fast.config["seeds"] == 8 and fast.config["steps"] == 7 and not fast.posterior_profile


def test_posterior_profile_sees_the_collapse():
    healthy, collapsed = run(0.4, "mixture"), run(0.005, "mixture")
    assert healthy.posterior_profile and collapsed.posterior_profile
    for h, c in zip(healthy.posterior_profile, collapsed.posterior_profile):
        assert c.posterior_var < 0.01 * h.posterior_var


def test_adherence_plugin_is_used_and_checked(tmp_path):
    from collapsecheck.errors import UsageError

    plugin = tmp_path / "metric.py"
    plugin.write_text(
        "import torch\n"
        "def nearest_mean(samples, conds):\n"
        "    from helpers_analytic import gaussian_setup\n"
        "    means = gaussian_setup(0.005, classes=4)[0].model.means\n"
        "    d = ((samples.unsqueeze(2) - means.view(1, 1, *means.shape)) ** 2).flatten(3).sum(-1)\n"
        "    return (d.argmin(-1) == torch.arange(samples.shape[0]).view(-1, 1)).double()\n"
        "def wrong_shape(samples, conds):\n"
        "    return torch.zeros(3)\n"
    )
    r = run(0.005, "mixture", adherence=f"{plugin}:nearest_mean")
    assert r.guidance.adherence_metric.endswith("nearest_mean")
    at = {p.w: p.adherence for p in r.guidance.sweep}
    assert at[1.0] == 1.0 and at[0.0] < 0.6  # w = 0 ignores the condition
    low = {p.name: p for p in r.guidance.recovery}["w=0.25"]
    assert low.works == "no" and "adherence" in low.reason
    with pytest.raises(UsageError, match="returned shape"):
        run(0.005, "mixture", adherence=f"{plugin}:wrong_shape")
    with pytest.raises(UsageError, match="--adherence .* has no function"):
        run(0.005, "mixture", adherence=f"{plugin}:missing")
