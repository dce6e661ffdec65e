"""--data-images DIR: the seeds against the training data's within-class variance, estimated without labels, and the
null branch's own w = 0 samples against the data's variance (collapsecheck.measure.datadiv, verdict.data,
escalate.data): closed forms, the rules' cases, and a healthy digits model judged against its own training digits
and against the same digits made more varied by noise."""
from __future__ import annotations

import os
from pathlib import Path

import dataclasses
import math

import pytest
import torch

from collapsecheck import make_config, scan
from collapsecheck.errors import UsageError
from collapsecheck.measure.datadiv import data_relative, image_variance, null_data_share
from collapsecheck.thresholds import Thresholds
from collapsecheck.verdict.data import beyond_any_blend, narrower_than_data, null_against_data

from helpers_witness import write_pngs

ROOT = Path(__file__).resolve().parent.parent
HEALTHY = ROOT / "examples" / "digits-healthy"
DECODER = ROOT / "examples" / "digits-decoder"
LPIPS = os.environ.get("COLLAPSECHECK_LPIPS_WEIGHTS")
FAST = dict(mode="fast", device="cpu", lpips=bool(LPIPS))


def _conditions(within: list[float], grid: float) -> tuple[list[float], list[float]]:
    """pixel RMS and seed shares of conditions with within variances ``within`` in a grid of variance ``grid``."""
    return [(2 * w) ** 0.5 for w in within], [w / grid for w in within]


def test_rho_is_each_condition_s_variance_over_the_data_variance_less_the_conditions_between_variance():
    # W = (0.02, 0.04), G = 0.05, so B = 0.02; V = 0.07 gives V - B = 0.05 and rho = (0.4, 0.8)
    found = data_relative(*_conditions([0.02, 0.04], 0.05), 0.07, 100)
    assert found.per_condition == pytest.approx([0.4, 0.8])
    assert (found.mean, found.between, found.within, found.images) == pytest.approx((0.6, 0.02, 0.05, 100))
    # conditions as wide as the data's classes on average (V - B = mean W) give a mean of 1
    assert data_relative(*_conditions([0.02, 0.04], 0.05), 0.05, 100).mean == pytest.approx(1.0)
    # the same class means (B = 0.02) with every W halved: the grid is B + mean W = 0.035, and rho halves
    assert data_relative(*_conditions([0.01, 0.02], 0.035), 0.07, 100).per_condition == pytest.approx([0.2, 0.4])


def test_rho_is_not_measurable_without_a_between_smaller_than_the_data_or_without_seed_shares():
    assert data_relative(*_conditions([0.02, 0.04], 0.05), 0.02, 10) is None  # B = 0.02 >= V: not these classes' data
    assert data_relative([0.2], [1.0], 0.07, 10) is None  # one condition
    assert data_relative([0.2, 0.2], [None, None], 0.07, 10) is None


def test_image_variance_is_the_per_pixel_variance_over_the_images():
    a = torch.full((1, 1, 2, 2), 0.5)
    assert image_variance(torch.cat([a, -a])) == pytest.approx(0.5)  # (0.25 + 0.25) / (2 - 1)
    assert image_variance(torch.cat([a, a, a])) == 0.0


def test_the_streamed_variance_of_chunks_equals_the_variance_of_all_images_at_once():
    from collapsecheck.measure.datadiv import streamed_variance

    images = torch.rand(103, 3, 5, 4, generator=torch.Generator().manual_seed(1)) * 2 - 1
    direct = float(images.double().flatten(1).var(dim=0, unbiased=True).mean())
    for size in (1, 7, 103):
        assert streamed_variance(images.split(size)) == (pytest.approx(direct, rel=1e-12), 103)


def test_a_healthy_model_narrower_than_its_data_reads_at_risk_and_nothing_else_moves():
    th = Thresholds()
    x = th.data_relative_diversity
    found = narrower_than_data("healthy", x * 0.9, th)
    assert found.verdict == "at_risk" and "narrower than its data" in found.reasons[0]
    assert found.evidence[0].measure == "data_diversity" and found.evidence[0].threshold == "data_relative_diversity"
    assert narrower_than_data("healthy", x, th) is None  # the bound itself is not below it
    assert narrower_than_data("healthy", None, th) is None
    assert narrower_than_data("collapsed", 0.01, th) is None and narrower_than_data("at_risk", 0.01, th) is None


def test_the_null_s_share_of_the_data_variance_is_its_seed_variance_over_the_data_s():
    # two draws of variance W differ by sqrt(2 W) RMS: pixel RMS 0.4 is W = 0.08, over V = 0.32
    assert null_data_share(0.4, 0.32) == pytest.approx(0.25)
    assert null_data_share(0.0, 0.32) == 0.0
    assert null_data_share(None, 0.32) is None and null_data_share(0.4, None) is None
    assert null_data_share(0.4, 0.0) is None and null_data_share(0.4, float("nan")) is None


def test_the_null_is_judged_by_its_samples_share_of_the_data_variance_as_the_brute_force_judges_it():
    th = Thresholds()
    u, n = th.null_data_unclear, th.null_data_not_learned
    assert 0 < n < u
    # below null_data_not_learned: not learned, whatever the other tests read
    for own in ("learned", "unclear"):
        lost = null_against_data(own, n * 0.99, th)
        assert lost.verdict == "not_learned" and lost.evidence[0].threshold == "null_data_not_learned"
    assert null_against_data("not_learned", n * 0.99, th) is None
    # at or above it the samples vary: a null the other tests read not learned is unclear
    relieved = null_against_data("not_learned", n, th)
    assert relieved.verdict == "unclear" and relieved.evidence[0].op == ">="
    # below null_data_unclear a learned null is narrower than the data; an unclear one stays as it is
    narrow = null_against_data("learned", u * 0.99, th)
    assert narrow.verdict == "unclear" and narrow.evidence[0].threshold == "null_data_unclear"
    assert null_against_data("unclear", u * 0.99, th) is None
    assert null_against_data("learned", u, th) is None  # the bound itself is not below it
    assert null_against_data("learned", None, th) is None
    assert null_against_data("absent_by_design", 0.0, th) is None  # guidance-distilled: no null to judge
    assert all(f.evidence[0].measure == "null_data_share" and "--data-images" in f.reasons[0]
               for f in (lost, relieved, narrow))


def test_a_varying_null_stays_not_learned_when_its_ratio_is_beyond_any_blend_of_the_conditions():
    th = Thresholds()
    n = th.null_data_not_learned
    # ten conditions: a blend of them reaches at most 9 wrong conditions' mean excess error
    assert not beyond_any_blend(8.99, 10) and beyond_any_blend(9.0, 10) and beyond_any_blend(15.0, 10)
    assert not beyond_any_blend(None, 10) and not beyond_any_blend(50.0, 1)
    assert beyond_any_blend(1.0, 2)  # two conditions: a blend is at most as bad as the one wrong condition
    kept = null_against_data("not_learned", 0.57, th, ratio_low=15.0, conditions=10)
    assert kept.verdict == "not_learned" and "no blend" in kept.reasons[0] and "--data-images" in kept.reasons[0]
    assert kept.evidence[0].measure == "null_ratio_low" and kept.evidence[0].value == 15.0
    assert kept.evidence[0].threshold == "null_ratio_boundary"
    # below the bound the relief stands, as it does without a ratio; the other rules never read the bound
    assert null_against_data("not_learned", 0.57, th, ratio_low=8.0, conditions=10).verdict == "unclear"
    assert null_against_data("not_learned", 0.57, th, ratio_low=None, conditions=10).verdict == "unclear"
    assert null_against_data("not_learned", n * 0.99, th, ratio_low=15.0, conditions=10) is None
    assert null_against_data("learned", 0.57, th, ratio_low=15.0, conditions=10) is None


def test_the_scan_passes_the_null_ratio_and_the_number_of_conditions_to_the_data_rule():
    from collapsecheck.witnesses import judge_against_data

    config = make_config(checkpoint=str(HEALTHY), recovery=False, posterior=False, **dict(FAST, classes="0-3"))
    result = scan(config)
    k = len(result.conditions)
    assert k >= 2
    branch = result.guidance.null_branch
    result.data_reference = None
    branch.verdict, branch.null_data_share, branch.null_ratio_low = "not_learned", 0.5, float(k - 1)
    assert judge_against_data(result, config).guidance.null_branch.verdict == "not_learned"
    branch.verdict, branch.null_ratio_low = "not_learned", k - 1.01
    assert judge_against_data(result, config).guidance.null_branch.verdict == "unclear"


def _digits_train() -> torch.Tensor:
    import sys

    sys.path.insert(0, str(ROOT / "examples" / "zoo"))
    from digits import load_split

    return load_split("train")[0]


@pytest.fixture(scope="module")
def data_folders(tmp_path_factory, digits_folder) -> tuple[Path, Path]:
    """The training digits of examples/digits-healthy as PNGs (conftest's ``digits_folder``), and the same digits
    beside their negatives (-x): a dataset whose variance is more than twice the digits', far wider than anything the
    model's classes draw."""
    x = _digits_train()
    plain, noisy = digits_folder, tmp_path_factory.mktemp("noisy")
    both = torch.cat([x, -x])
    write_pngs(both, noisy, [f"n{i:04d}.png" for i in range(len(both))])
    return plain, noisy


def test_a_healthy_model_is_judged_against_its_training_digits_and_against_noisier_ones(data_folders):
    plain, noisy = data_folders
    own = scan(make_config(checkpoint=str(HEALTHY), data_images=str(plain), **FAST))
    wider = scan(make_config(checkpoint=str(HEALTHY), data_images=str(noisy), **FAST))
    assert own.verdict == "healthy" and own.data_reference["mean"] >= Thresholds().data_relative_diversity
    assert own.data_reference["images"] == len(_digits_train())
    # the data's variance grows, the model's conditions do not: rho falls below the threshold
    assert wider.data_reference["data_variance"] > 2 * own.data_reference["data_variance"]
    assert wider.data_reference["mean"] < Thresholds().data_relative_diversity
    assert wider.verdict == "at_risk" and wider.decided_by[0].measure == "data_diversity"
    assert any("--data-images" in r for r in wider.reasons)
    assert wider.recommendations[0].startswith("Every condition varies less than its training data")
    assert not any("training data" in r for r in own.recommendations)
    assert [c.verdict for c in wider.conditions] == [c.verdict for c in own.conditions]  # conditions unchanged
    # the null's own samples against the data: fast mode reads them from w = 0 drawn again at full settings (the
    # test below), the same samples for both folders, so the share times each folder's variance is one number
    shares = [r.guidance.null_branch.null_data_share for r in (own, wider)]
    spreads = [s * r.data_reference["data_variance"] for s, r in zip(shares, (own, wider))]
    assert spreads[0] == pytest.approx(spreads[1], rel=1e-9) and shares[1] < shares[0] / 2
    assert all(any("drawn again" in x for x in r.guidance.null_branch.reasons) for r in (own, wider))
    assert own.guidance.null_branch.null_data_share >= Thresholds().null_data_unclear
    assert own.guidance.null_branch.verdict == "learned"


def test_fast_mode_reads_rho_near_the_threshold_from_a_full_scan_s_samples(data_folders):
    _, noisy = data_folders
    fast = scan(make_config(checkpoint=str(HEALTHY), data_images=str(noisy), **FAST))
    full = scan(make_config(checkpoint=str(HEALTHY), data_images=str(noisy), mode="full", device="cpu",
                            lpips=False, recovery=False, posterior=False))
    assert fast.data_reference["escalated"] and not full.data_reference["escalated"]
    assert fast.data_reference["per_condition"] == pytest.approx(full.data_reference["per_condition"], rel=1e-5)
    assert fast.verdict == full.verdict == "at_risk"
    # the null's share: fast mode's own w = 0 samples (7 steps) read another share from the full scan's; fast mode
    # draws w = 0 again at full settings and reads the full scan's share, wherever it lies (round 39; a band around
    # the thresholds before left a null at a threshold read differently by the two modes)
    w0 = [p.pixel_rms for p in fast.guidance.sweep if p.w == 0.0][0]
    own_fast = w0 ** 2 / 2 / fast.data_reference["data_variance"]
    full_share = full.guidance.null_branch.null_data_share
    assert abs(own_fast / full_share - 1) > 0.01
    assert fast.guidance.null_branch.null_data_share == pytest.approx(full_share, rel=1e-5)
    assert not any("drawn again" in r for r in full.guidance.null_branch.reasons)
    # null_data_unclear between the two shares: fast mode's null reads as the full scan's share says, not its own
    assert full.guidance.null_branch.verdict == fast.guidance.null_branch.verdict == "learned"
    th = dataclasses.replace(Thresholds(), null_data_unclear=math.sqrt(own_fast * full_share))
    near = scan(make_config(checkpoint=str(HEALTHY), data_images=str(noisy), thresholds=th, **FAST))
    assert near.guidance.null_branch.null_data_share == pytest.approx(full_share, rel=1e-5)
    assert near.guidance.null_branch.verdict == ("unclear" if full_share < own_fast else "learned")


def test_fast_mode_draws_each_full_setting_grid_once_for_the_escalation_and_the_data_images(data_folders,
                                                                                              monkeypatch):
    import collapsecheck.escalate.conditions as conditions_module
    import collapsecheck.escalate.data as data_module
    import collapsecheck.escalate.grids as grids_module

    _, noisy = data_folders
    drawn = []
    SMALL = dict(FAST, classes="0-3", lpips=False, recovery=False)  # four conditions: cheaper, the same paths

    def counted(original):
        def resample(s, indices, scale):
            drawn.append((tuple(indices), scale))
            return original(s, indices, scale)
        return resample

    for module in (grids_module, data_module, conditions_module):
        monkeypatch.setattr(module, "resample", counted(module.resample))
    alone = scan(make_config(checkpoint=str(HEALTHY), data_images=str(noisy), **SMALL))
    assert ((0,), 0.0) in drawn  # the null's w = 0 samples drawn for one condition (the others' are the same)
    everything = tuple(range(len(alone.conditions)))
    drawn.clear()
    forced = dataclasses.replace(make_config(checkpoint=str(HEALTHY), data_images=str(noisy), **SMALL),
                                 escalate_also=everything, escalate_w0=True)
    shared = scan(forced)
    # the escalation drew every condition at w = 0 and at the verdict scale; --data-images read those, drawing nothing
    assert drawn.count((everything, 0.0)) == 1 and ((0,), 0.0) not in drawn
    assert drawn.count((everything, forced.guidance_scale)) == 1 and len(drawn) == len(set(drawn))
    assert shared.data_reference["escalated"] and alone.data_reference["escalated"]
    assert shared.data_reference["per_condition"] == pytest.approx(alone.data_reference["per_condition"], rel=1e-5)
    share = shared.guidance.null_branch.null_data_share
    assert share == pytest.approx(alone.guidance.null_branch.null_data_share, rel=1e-5)
    assert any("drawn again" in r for r in shared.guidance.null_branch.reasons)


def test_pixel_aligned_conditions_get_no_rho_against_data_and_a_bad_folder_is_one_line(data_folders, tmp_path,
                                                                                       monkeypatch):
    plain, _ = data_folders
    decoder = scan(make_config(checkpoint=str(DECODER), cond=str(DECODER / "cond.safetensors"),
                               data_images=str(plain), **FAST))
    # rho is not judged (a hint is no class; its cell share is: tests/test_hint_cells.py); the null's share is, for
    # any kind of condition
    assert decoder.data_reference is None
    assert decoder.guidance.null_branch.null_data_share is not None
    import collapsecheck.run as run

    monkeypatch.setattr(run, "evaluate", lambda *a, **k: pytest.fail("sampled before the check"))
    (tmp_path / "one").mkdir()
    write_pngs(torch.zeros(1, 1, 8, 8), tmp_path / "one", ["a.png"])
    with pytest.raises(UsageError, match="data.images.*at least 2 images"):
        scan(make_config(checkpoint=str(HEALTHY), data_images=str(tmp_path / "one"), **FAST))
    with pytest.raises(UsageError, match="data.images.*no such folder"):
        make_config(checkpoint=str(HEALTHY), data_images=str(tmp_path / "missing"), **FAST)


def test_a_fine_tune_narrowed_by_its_base_keeps_the_base_advice_first_when_the_data_moves_its_null():
    from collapsecheck.witnesses import advice_for, judge_against_data

    config = make_config(checkpoint=str(HEALTHY), recovery=False, posterior=False, **FAST)
    result = scan(config)
    # as if --reference had read the model at_risk against its base, and the null kept 1% of the data's variance
    result.verdict, result.reference = "at_risk", {"own_verdict": "healthy"}
    result.guidance.null_branch.verdict, result.guidance.null_branch.null_data_share = "learned", 0.01
    result.data_reference = None
    judged = judge_against_data(result, config)
    assert judged.guidance.null_branch.verdict == "not_learned" and judged.verdict == "at_risk"
    base_first, plain = advice_for(judged, config, against_base=True), advice_for(judged, config)
    assert base_first != plain and judged.recommendations == base_first


def _rho_of(samples: torch.Tensor, data: torch.Tensor) -> float:
    """The scan's mean rho of ``samples`` (K conditions, S seeds, D) against ``data`` (N, D), from exact moments."""
    w = samples.var(1, unbiased=True).mean(1)  # each condition's seed variance per pixel
    grid = samples.reshape(-1, samples.shape[-1]).var(0, unbiased=True).mean()
    found = data_relative([float((2 * x) ** 0.5) for x in w], [float(x / grid) for x in w], image_variance(data),
                          len(data))
    return found.mean


def test_rho_overstates_a_collapsed_model_several_fold_and_reads_a_healthy_one_right():
    """Ten Gaussian classes (within variance 0.09 a pixel). A healthy model draws each class: rho about 1. A collapsed
    one draws one data image a class plus noise of variance 0.0009 (true ratio 0.01): its condition means are single
    images, whose spread holds the within-class variance too, so the between estimate takes nearly all of the data's
    variance and rho reads 0.07, 7 times too high. Why the report says so beside a collapsed verdict."""
    g = torch.Generator().manual_seed(0)
    k, d = 10, 256
    means = 0.3 * torch.randn(k, 1, d, generator=g)
    data = (means + 0.3 * torch.randn(k, 400, d, generator=g)).reshape(-1, d)
    healthy = means + 0.3 * torch.randn(k, 64, d, generator=g)
    assert _rho_of(healthy, data) == pytest.approx(1.0, abs=0.1)
    chosen = data.reshape(k, 400, d)[:, :1]
    collapsed = chosen + 0.03 * torch.randn(k, 64, d, generator=g)
    rho = _rho_of(collapsed, data)
    assert 0.05 < rho < 0.1  # the truth is 0.01


def test_the_report_says_rho_overstates_a_collapsed_model():
    from collapsecheck.report.witnesses import COLLAPSED_RHO, data_section

    dr = {"images": 100, "data_variance": 0.27, "between": 0.23, "within": 0.04, "per_condition": [0.7, 0.8],
          "mean": 0.75}
    collapsed = data_section({"data_reference": dr, "labels": ["a", "b"], "verdict": "collapsed"})
    healthy = data_section({"data_reference": dr, "labels": ["a", "b"], "verdict": "healthy"})
    assert COLLAPSED_RHO in collapsed.bullets and COLLAPSED_RHO not in healthy.bullets
