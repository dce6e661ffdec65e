"""Each condition against its own cell of the training data (--data-images; collapsecheck.measure.cells,
verdict.data.narrow_by_nature, witnesses.relieve_narrow_by_nature): closed forms on Gaussian clusters, the
robustness that motivates the median, invariances, the rule's cases, and a digits model whose conditions the seed
share is made to read collapsed."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from collapsecheck import make_config, scan
from collapsecheck.escalate.data import CELL_BAND
from collapsecheck.measure.cells import (CELL_SIDE, MIN_CELL, cell_shares, pair_spread, reduced, reduced_data,
                                         robust_spread)
from collapsecheck.report.jsonfile import to_json
from collapsecheck.result import schema_errors
from collapsecheck.thresholds import Thresholds
from collapsecheck.verdict.data import narrow_by_nature

ROOT = Path(__file__).resolve().parent.parent
HEALTHY = ROOT / "examples" / "digits-healthy"
FAST = dict(mode="fast", device="cpu", lpips=False, recovery=False, classes="0-3")  # four conditions: cheaper


def clusters(seed_std: float, data_std: float, n_data: int = 400, side: int = 8):
    """Two conditions at -0.5 and +0.5 everywhere: 64 seeds each of std ``seed_std``, ``n_data`` data images each
    of std ``data_std`` (one channel, ``side`` x ``side``)."""
    g = torch.Generator().manual_seed(0)
    centre = torch.tensor([-0.5, 0.5]).view(2, 1, 1, 1, 1)
    samples = centre + seed_std * torch.randn(2, 64, 1, side, side, generator=g)
    data = (centre + data_std * torch.randn(2, n_data, 1, side, side, generator=g)).reshape(-1, 1, side, side)
    return samples, data


def test_a_condition_s_cell_share_is_its_seed_variance_over_its_cell_s_variance():
    samples, data = clusters(seed_std=0.1, data_std=0.2)
    shares, sizes = cell_shares(samples, reduced_data([data]))
    assert sizes == [400, 400]  # every image in its own cluster's cell
    # the median of a cell's per-image mean squared distance to its median is its variance per pixel, 0.04, to
    # within the spread of a mean over 64 pixels; the seeds' is 0.01
    assert shares == pytest.approx([0.25, 0.25], rel=0.08)


def test_far_images_in_a_cell_do_not_move_its_robust_spread_as_they_move_a_variance():
    _, data = clusters(seed_std=0.1, data_std=0.2)
    cell = reduced(data[:400])
    far = reduced(torch.full((20, 1, 8, 8), 3.0))  # 5% of the cell, far away
    mixed = torch.cat([cell, far])
    assert robust_spread(mixed) == pytest.approx(robust_spread(cell), rel=0.1)
    plain = lambda x: float(((x - x.mean(0)) ** 2).mean())  # noqa: E731
    assert plain(mixed) > 5 * plain(cell)


def test_the_seeds_spread_over_pairs_is_their_variance_and_reads_a_copy_held_by_most_seeds_as_none():
    g = torch.Generator().manual_seed(0)
    gaussian = 0.1 * torch.randn(64, 256, generator=g)
    assert pair_spread(gaussian) == pytest.approx(0.01, rel=0.05)  # two draws lie 2 x 0.01 apart in mean square
    order = torch.randperm(64, generator=g)
    assert pair_spread(gaussian[order]) == pair_spread(gaussian)  # the same pairs in any seed order
    copy, far = torch.zeros(1, 256), 1.0 + torch.randn(5, 256, generator=g)
    # 12 of 16 seeds on one image: 66 of the 120 pairs are pairs of copies, so the median pair is one
    assert pair_spread(torch.cat([copy.expand(12, -1), far[:4]])) == 0.0
    # 11 of 16: 55 of 120 pairs, fewer than half, and the copy no longer decides
    assert pair_spread(torch.cat([copy.expand(11, -1), far])) > 0.5
    assert pair_spread(gaussian[:MIN_CELL - 1]) is None


def test_seeds_that_stray_by_different_amounts_read_as_their_variance_not_as_the_narrower_half():
    # half the seeds spread with std 0.1, half with 0.3 (a dot drawn small or large): variance per pixel 0.05; the
    # median distance to the seeds' median reads the narrower half (the 8th of 16 distances, about 0.01)
    g = torch.Generator().manual_seed(0)
    seeds = torch.cat([0.1 * torch.randn(8, 1024, generator=g), 0.3 * torch.randn(8, 1024, generator=g)])
    assert float(seeds.var(0).mean()) == pytest.approx(0.05, rel=0.05)
    assert pair_spread(seeds) == pytest.approx(0.05, rel=0.05)  # 64 of the 120 pairs mix the halves: (0.01 + 0.09) / 2
    assert robust_spread(seeds) < 0.5 * 0.05


def test_cell_shares_do_not_depend_on_how_the_data_is_chunked_or_ordered():
    samples, data = clusters(seed_std=0.1, data_std=0.2)
    whole = cell_shares(samples, reduced_data([data]))
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(1))
    chunked = cell_shares(samples, reduced_data(data[order].split(37)))
    assert chunked[1] == whole[1]
    assert chunked[0] == pytest.approx(whole[0], rel=1e-12)


def test_large_images_are_compared_as_area_averages_and_a_small_cell_has_no_share():
    big = torch.arange(64.0 * 64).view(1, 1, 64, 64)
    small = reduced(big)
    assert small.shape == (1, CELL_SIDE * CELL_SIDE)
    assert float(small[0, 0]) == pytest.approx(float(big[0, 0, :2, :2].mean()))
    samples, data = clusters(seed_std=0.1, data_std=0.2)
    shares, sizes = cell_shares(samples, reduced_data([torch.cat([data[:MIN_CELL - 1], data[400:]])]))
    assert sizes == [MIN_CELL - 1, 400] and shares[0] is None and shares[1] is not None


def test_only_a_collapsed_condition_keeping_enough_of_its_cell_is_relieved_and_only_to_at_risk():
    th = Thresholds()
    x = th.cell_collapsed_share
    found = narrow_by_nature("collapsed", x, th)
    assert found.verdict == "at_risk" and found.evidence[0].measure == "cell_share"
    assert narrow_by_nature("collapsed", x * 0.99, th) is None
    assert narrow_by_nature("collapsed", None, th) is None
    assert narrow_by_nature("at_risk", 10.0, th) is None and narrow_by_nature("healthy", 10.0, th) is None


EVERY = dataclasses.replace(Thresholds(), collapsed_seed_share=1.01)  # the seed share reads every condition collapsed


@pytest.fixture(scope="module")
def kept(digits_folder):
    """Every condition collapsed by its seed share and none relieved (cell_collapsed_share out of reach)."""
    th = dataclasses.replace(EVERY, cell_collapsed_share=1e9)
    return scan(make_config(checkpoint=str(HEALTHY), data_images=str(digits_folder), thresholds=th, **FAST))


def test_a_model_collapsed_by_its_seed_share_alone_is_relieved_by_its_cells(digits_folder, kept):
    import sys

    sys.path.insert(0, str(ROOT / "examples"))
    import calibrate

    assert kept.verdict == "collapsed" and all(c.verdict == "collapsed" for c in kept.conditions)
    shares = [c.cell_share for c in kept.conditions]
    assert all(s is not None and s > 0 for s in shares)
    assert sum(c.cell_images for c in kept.conditions) == len(list(digits_folder.iterdir()))
    th = dataclasses.replace(EVERY, cell_collapsed_share=min(shares) / (2 * CELL_BAND))  # every share past the band
    relieved = scan(make_config(checkpoint=str(HEALTHY), data_images=str(digits_folder), thresholds=th, **FAST))
    assert [c.cell_share for c in relieved.conditions] == shares
    assert relieved.verdict == "at_risk" and relieved.decided_by[0].measure == "unhealthy_fraction"
    assert all(c.verdict == "at_risk" and c.decided_by[0].measure == "cell_share" for c in relieved.conditions)
    assert relieved.reasons[0].startswith("each condition judged against its own cell")
    # the JSON holds what the verdict read, and the calibration's re-judging from it agrees with the scan
    data = json.loads(to_json(relieved))
    assert schema_errors(data) == []
    assert calibrate.rejudge(data, th)["collapse"] == "at_risk"
    assert calibrate.rejudge(data, dataclasses.replace(th, cell_collapsed_share=1e9))["collapse"] == "collapsed"
    # the report's data section lists each condition's share and cell beside its rho
    from collapsecheck.report.witnesses import markdown_lines

    text = "\n".join(markdown_lines(data))
    assert "| condition | rho | cell share | cell images |" in text
    assert f"| {shares[0]:.3g} | {relieved.conditions[0].cell_images} |" in text


def test_fast_mode_reads_the_cell_shares_near_the_threshold_from_a_full_scan_s_samples(digits_folder, kept):
    shares = [c.cell_share for c in kept.conditions]
    th = dataclasses.replace(EVERY, cell_collapsed_share=min(shares))  # a collapsed condition within CELL_BAND
    config = dict(checkpoint=str(HEALTHY), data_images=str(digits_folder), thresholds=th)
    near = scan(make_config(**config, **FAST))
    full = scan(make_config(**config, **dict(FAST, mode="full")))
    assert all(c.cell_resampled for c in near.conditions) and not any(c.cell_resampled for c in kept.conditions)
    assert not any(c.cell_resampled for c in full.conditions)
    assert [c.cell_share for c in near.conditions] == pytest.approx([c.cell_share for c in full.conditions], rel=1e-5)
    assert [c.cell_images for c in near.conditions] == [c.cell_images for c in full.conditions]
    assert [c.verdict for c in near.conditions] == [c.verdict for c in full.conditions]


def test_a_condition_that_lost_diversity_against_its_base_is_not_narrow_by_nature(kept):
    import copy
    import sys

    from collapsecheck.witnesses import relieve_narrow_by_nature

    sys.path.insert(0, str(ROOT / "examples"))
    import calibrate

    th = dataclasses.replace(EVERY, cell_collapsed_share=0.0)  # every condition's cell would relieve it
    n = len(kept.conditions)
    ratios = [0.01] + [1.0] * (n - 1)  # the first condition fell toward one image against the base; the rest did not
    lost = copy.deepcopy(kept)
    lost.reference = {"base_verdict": "healthy", "w0_ratio": None,
                      "conditions": [{"verdict": "collapsed" if r < 0.5 else "healthy", "ratio": r,
                                      "base_verdict": "healthy"} for r in ratios]}
    assert relieve_narrow_by_nature(lost, th)
    assert [c.verdict for c in lost.conditions] == ["collapsed"] + ["at_risk"] * (n - 1)
    assert lost.verdict == "at_risk"
    data = dict(json.loads(to_json(kept)), reference=lost.reference)  # the scan's numbers, that base section
    assert calibrate.rejudge(data, th)["per_condition"] == ["collapsed"] + ["at_risk"] * (n - 1)


def test_relief_that_leaves_the_verdict_states_the_count_the_conditions_now_show(kept):
    import copy

    from collapsecheck.verdict.rules import overall_collapse
    from collapsecheck.witnesses import relieve_narrow_by_nature

    th = dataclasses.replace(EVERY, cell_collapsed_share=0.0)  # every collapsed condition's cell relieves it
    n = len(kept.conditions)
    half = copy.deepcopy(kept)
    before = ["collapsed"] * (n // 2) + ["healthy"] * (n - n // 2)
    for cond, verdict in zip(half.conditions, before):
        cond.verdict, cond.cell_share = verdict, 1.0
    own = overall_collapse(before, th)
    assert own.verdict == "at_risk"  # half collapsed: at risk, and at risk still once they read at_risk
    half.verdict, half.reasons = own.verdict, list(own.reasons)
    assert relieve_narrow_by_nature(half, th)
    assert half.verdict == "at_risk"
    shown = [c.verdict for c in half.conditions]
    assert shown == ["at_risk"] * (n // 2) + ["healthy"] * (n - n // 2)
    first = half.reasons[0]
    assert first.startswith("each condition judged against its own cell of the training data too: "
                            f"0/{n} conditions collapsed, {n // 2}/{n} at risk")
    assert half.reasons[1] == f"by the seed share alone: {own.reasons[0]}"
