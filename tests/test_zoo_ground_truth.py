"""The brute-force ground-truth measures of examples/zoo (gt_measures.py) on synthetic data."""

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ZOO = Path(__file__).resolve().parent.parent / "examples" / "zoo"
sys.path.insert(0, str(ZOO))

import gt_measures as gm  # noqa: E402


def test_mean_pixel_variance_is_ddof1_mean_over_pixels():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(7, 1, 8, 8, generator=g)
    want = np.var(x.reshape(7, -1).numpy().astype(np.float64), axis=0, ddof=1).mean()
    assert gm.mean_pixel_variance(x) == pytest.approx(want, rel=1e-12)
    with pytest.raises(ValueError):
        gm.mean_pixel_variance(x[:1])


def test_identical_samples_have_zero_diversity():
    x = torch.rand(1, 1, 8, 8).repeat(16, 1, 1, 1)
    assert gm.mean_pixel_variance(x) == 0.0
    assert gm.mean_pairwise_rms(x) == 0.0
    assert gm.div_ratio([0.0, 0.0], [0.2, 0.1]) == 0.0


def test_pairwise_rms_closed_form():
    a = torch.zeros(1, 64)
    b = torch.full((1, 64), 0.5)
    c = torch.full((1, 64), -0.5)
    # distances 0.5, 0.5, 1.0 -> mean 2/3
    assert gm.mean_pairwise_rms(torch.cat([a, b, c])) == pytest.approx(2.0 / 3.0)


def test_div_ratio_of_gaussian_samples_matches_variance_ratio():
    g = torch.Generator().manual_seed(1)
    samples = [0.3 * torch.randn(4000, 64, generator=g) for _ in range(3)]  # variance 0.09
    v = [gm.mean_pixel_variance(s) for s in samples]
    assert gm.div_ratio(v, [0.18, 0.18, 0.18]) == pytest.approx(0.5, rel=0.03)
    # conditions compared with their own class references: mean over both, then the ratio
    assert gm.div_ratio([0.1, 0.3], [0.2, 0.2]) == pytest.approx(1.0)


def test_class_variances_per_class():
    x = torch.cat([torch.zeros(5, 64), torch.randn(50, 64, generator=torch.Generator().manual_seed(2))])
    y = torch.tensor([0] * 5 + [1] * 50)
    v = gm.class_variances(x, y, num_classes=2)
    assert v[0] == 0.0
    assert v[1] == pytest.approx(1.0, rel=0.2)


def test_nearest_neighbour_finds_copies():
    g = torch.Generator().manual_seed(3)
    train = torch.rand(20, 1, 8, 8, generator=g) * 2 - 1
    x = train[[4, 9]] + 0.01
    d, i = gm.nn_rms(x, train, chunk=1)
    assert i.tolist() == [4, 9]
    assert d.tolist() == pytest.approx([0.01, 0.01], abs=1e-6)
    assert bool((d < gm.COPY_RMS).all())
    loo = gm.nn_rms_excluding_self(torch.cat([train[:1], train[:1] + 0.2]))
    assert loo.tolist() == pytest.approx([0.2, 0.2], abs=1e-6)


def test_normalized_entropy():
    assert gm.normalized_entropy(torch.arange(10).repeat(5)) == pytest.approx(1.0)
    assert gm.normalized_entropy(torch.full((30,), 3)) == 0.0
    two = gm.normalized_entropy(torch.tensor([0, 1] * 10))
    assert two == pytest.approx(math.log(2) / math.log(10))


def test_pooled_rms_ignores_what_the_pool_does_not_see():
    g = torch.Generator().manual_seed(4)
    x = torch.rand(3, 1, 8, 8, generator=g)
    low = torch.nn.functional.interpolate(torch.nn.functional.avg_pool2d(x, 2), scale_factor=2, mode="nearest")
    assert gm.pooled_rms(x, low).max() < 1e-6
    assert gm.pooled_rms(x + 0.25, x).tolist() == pytest.approx([0.25] * 3, abs=1e-6)


def test_collapse_rule_boundaries():
    assert gm.gt_collapse(0.0) == "collapsed"
    assert gm.gt_collapse(gm.COLLAPSED_BELOW - 1e-9) == "collapsed"
    assert gm.gt_collapse(gm.COLLAPSED_BELOW) == "at_risk"
    assert gm.gt_collapse(gm.AT_RISK_BELOW - 1e-9) == "at_risk"
    assert gm.gt_collapse(gm.AT_RISK_BELOW) == "healthy"
    assert gm.gt_collapse(1.2) == "healthy"


def test_null_evidence_rule():
    assert gm.null_learned_evidence(1.0, 0.95)
    assert not gm.null_learned_evidence(gm.NULL_NN_RATIO_MAX + 0.01, 0.95)  # off the data
    assert not gm.null_learned_evidence(1.0, gm.NULL_ENTROPY_MIN - 0.01)  # too few classes
    assert gm.null_learned_evidence(gm.NULL_NN_RATIO_MAX, gm.NULL_ENTROPY_MIN)


def test_guidance_rule():
    assert gm.gt_guidance(False, 0.9, 1.0, 1.0) == "not_steerable"
    assert gm.gt_guidance(True, 0.9, 1.0, 1.0) == "steerable"
    assert gm.gt_guidance(True, 0.9, 0.9 - gm.GUIDANCE_ADHERENCE_SLACK, 1.0) == "steerable"
    assert gm.gt_guidance(True, 0.9, 0.8, 1.0) == "weak"  # adherence lost
    assert gm.gt_guidance(True, 0.9, 1.0, gm.GUIDANCE_NN_RATIO_MAX + 0.1) == "weak"  # images broken


def test_rules_are_documented_with_their_constants():
    r = gm.rules()
    assert r["constants"]["COLLAPSED_BELOW"] == gm.COLLAPSED_BELOW
    assert str(gm.AT_RISK_BELOW) in r["gt_collapse"]
    assert gm.agreement(None, "healthy") is None
    assert gm.agreement("healthy", "healthy") is True
    assert gm.agreement("collapsed", "healthy") is False


def _per_w(div1, nn0, ent0, adh1, adh3, nn3):
    null = {"div_ratio": 1.5, "pairwise_rms": 0.7, "nn_ratio": nn0, "null_class_entropy": ent0, "copy_fraction": 0.0,
            "classifier_confidence": 0.9}
    def cond(div, adh, nn):
        return {"div_ratio": div, "pairwise_rms": 0.5, "nn_ratio": nn, "adherence": adh, "copy_fraction": 0.0,
                "classifier_confidence": 0.95}
    return {"0": null, "1": cond(div1, adh1, 1.0), "3": cond(div1, adh3, nn3), "7.5": cond(div1, adh3, nn3)}


def test_labels_and_markdown_flag_disagreements(tmp_path, pixel_truth):
    gt = pixel_truth

    healthy = gt.labels(_per_w(0.9, 1.2, 0.99, 0.95, 1.0, 1.0), "healthy", "learned")
    assert (healthy["gt_collapse"], healthy["learned_evidence"], healthy["gt_guidance"]) == ("healthy", True, "steerable")
    assert healthy["collapse_agrees"] and healthy["null_branch_agrees"] and healthy["near_threshold"] == []

    # recipe says healthy and null not learned; brute force sees a collapsed model with a working null branch
    odd = gt.labels(_per_w(0.1, 1.51, 0.9, 0.95, 0.5, 1.0), "healthy", "not_learned")
    assert odd["gt_collapse"] == "collapsed" and odd["collapse_agrees"] is False
    assert odd["learned_evidence"] is False and odd["null_branch_agrees"] is True
    assert odd["gt_guidance"] == "not_steerable"
    assert any("nn_ratio@w=0" in n for n in odd["near_threshold"])

    entry = {"conditioning": "class", "recipe": {"expected_collapse": "healthy", "expected_null_branch": "not_learned"},
             "per_w": _per_w(0.1, 1.51, 0.9, 0.95, 0.5, 1.0), "seconds": 1.0, "nfe": 1000, **odd}
    meta = {"seeds": 4, "steps": 3, "classifier": "c", "classifier_accuracy": 0.98, "classifier_heldout_confidence": 0.9,
            "heldout_size": 200, "real_within_class_variance_mean": 0.17, "real_within_class_variance_heldout_mean": 0.17,
            "real_total_variance": 0.29, "heldout_nn_rms_median": 0.26, "heldout_copy_fraction": 0.0,
            "heldout_within_class_pairwise_rms": 0.56, "concat_reference_div_ratio_residual_bound": 0.6,
            f"concat_reference_div_ratio_knn{gt.CONCAT_KNN}": 0.45, "torch": "t", "diffusers": "d", "sklearn": "s",
            "threads": 1, "missing": ["class_vpred"]}
    md = tmp_path / "gt.md"
    gt.write_markdown({"meta": meta, "models": {"odd": entry}, "series": {}}, md)
    text = md.read_text()
    assert "**DISAGREES: collapse** (recipe healthy, brute force collapsed)" in text
    assert "near threshold" in text and "`class_vpred`" in text
