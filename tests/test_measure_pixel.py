import itertools

import pytest
import torch

from collapsecheck.measure.pixel import (
    mean_pairwise_rms,
    near_duplicate_fraction,
    pairwise_rms,
    per_pixel_std,
    upper_mean,
)


def brute_pairwise_rms(x):
    S = x.shape[0]
    out = torch.zeros(S, S, dtype=torch.float64)
    for i, j in itertools.product(range(S), repeat=2):
        out[i, j] = (x[i].double() - x[j].double()).pow(2).mean().sqrt()
    return out


def test_pairwise_rms_matches_brute_force():
    x = torch.randn(7, 3, 5, 4)
    assert torch.allclose(pairwise_rms(x), brute_pairwise_rms(x), atol=1e-10)


def test_identical_seeds_give_zero_diversity():
    x = torch.randn(1, 1, 8, 8).repeat(6, 1, 1, 1)
    assert float(mean_pairwise_rms(x)) == 0.0
    assert float(per_pixel_std(x)) == 0.0
    assert float(near_duplicate_fraction(pairwise_rms(x), 1e-6)) == 1.0


def test_near_identical_samples_on_a_large_offset_do_not_cancel():
    # a collapsed model: all seeds at the same image plus 1e-4 jitter, far from zero
    torch.manual_seed(0)
    base = torch.full((1, 4, 32, 32), 50.0)
    x = base + 1e-4 * torch.randn(8, 4, 32, 32)
    expected = upper_mean(brute_pairwise_rms(x))
    assert float(mean_pairwise_rms(x)) == pytest.approx(float(expected), rel=1e-6)


def test_gaussian_closed_form():
    # iid N(0, s^2): per-pixel std -> s and mean pairwise squared distance -> 2 s^2
    torch.manual_seed(0)
    s = 0.3
    x = s * torch.randn(64, 1, 32, 32)
    assert float(per_pixel_std(x)) == pytest.approx(s, rel=0.02)
    d = pairwise_rms(x)
    assert float(upper_mean(d ** 2)) == pytest.approx(2 * s * s, rel=0.02)


def test_mean_squared_distance_is_twice_the_variance_exactly():
    torch.manual_seed(1)
    x = torch.randn(9, 2, 6, 6)
    var = x.double().flatten(1).var(dim=0, unbiased=True).mean()
    assert float(upper_mean(pairwise_rms(x) ** 2)) == pytest.approx(2 * float(var), rel=1e-9)


def test_batched_over_leading_dims_matches_per_condition():
    torch.manual_seed(2)
    x = torch.randn(2, 3, 5, 1, 4, 4)  # (W, C, S, ...)
    batched = mean_pairwise_rms(x, seed_dim=2)
    for w in range(2):
        for c in range(3):
            assert float(batched[w, c]) == pytest.approx(float(mean_pairwise_rms(x[w, c])), rel=1e-12)


def test_seed_order_does_not_matter():
    torch.manual_seed(3)
    x = torch.randn(10, 1, 8, 8)
    perm = torch.randperm(10)
    assert float(mean_pairwise_rms(x[perm])) == pytest.approx(float(mean_pairwise_rms(x)), rel=1e-12)
    assert float(per_pixel_std(x[perm])) == pytest.approx(float(per_pixel_std(x)), rel=1e-12)


def test_near_duplicate_fraction_counts_pairs():
    a, b = torch.zeros(1, 1, 4, 4), torch.ones(1, 1, 4, 4)
    x = torch.cat([a, a, a, b])  # pairs: 3 identical (a,a), 3 far (a,b)
    assert float(near_duplicate_fraction(pairwise_rms(x), 0.5)) == pytest.approx(0.5)


def test_seed_share_closed_forms():
    from collapsecheck.measure.pixel import seed_share

    torch.manual_seed(4)
    # seeds only (conditions identical in distribution): share -> 1
    x = torch.randn(4, 200, 1, 8, 8)
    assert torch.allclose(seed_share(x, 1).float(), torch.ones(4), atol=0.05)
    # conditions only (every seed identical): share 0
    y = torch.randn(4, 1, 1, 8, 8).repeat(1, 10, 1, 1, 1)
    assert torch.allclose(seed_share(y, 1).float(), torch.zeros(4), atol=1e-12)
    # means N(0, 1) between conditions, N(0, 0.5^2) within: share -> 0.25 / 1.25
    z = torch.randn(400, 1, 64) + 0.5 * torch.randn(400, 50, 64)
    assert float(seed_share(z, 1).mean()) == pytest.approx(0.2, rel=0.05)


def test_seed_share_is_one_when_every_condition_gives_the_same_samples_and_never_above_one_on_average():
    from collapsecheck.measure.pixel import seed_share
    """The guidance sweep's w = 0 column: one set of null samples for every condition (the pooled ddof = 1
    estimate gave 1.129 there, outside the measure's range)."""
    g = torch.Generator().manual_seed(3)
    same = torch.randn(1, 8, 1, 4, 4, generator=g).expand(10, 8, 1, 4, 4)
    assert torch.allclose(seed_share(same, 1).double(), torch.ones(10, dtype=torch.float64), atol=1e-6)
    mixed = torch.randn(10, 8, 1, 4, 4, generator=g) * torch.linspace(0.1, 3, 10).view(10, 1, 1, 1, 1)
    mixed = mixed + torch.randn(10, 1, 1, 4, 4, generator=g)
    assert float(seed_share(mixed, 1).mean()) <= 1.0 and float(seed_share(mixed, 1).min()) >= 0.0


def test_spread_share_closed_form_two_seeds_per_condition():
    """S = 2 seeds at m_c +- a in every pixel: within variance 2 a^2 (ddof 1); the grid's is 2 a^2 plus the
    variance of the means less its sampling part (C - 1) / C x 2 a^2 / 2. A null whose two seeds sit at +- b
    keeps 2 b^2 of it."""
    from collapsecheck.measure.pixel import spread_share

    a, b, means = 0.3, 0.1, torch.tensor([-0.5, 0.0, 0.2, 0.7])
    C = len(means)
    of = torch.stack([torch.stack([m + a, m - a]) for m in means]).view(C, 2, 1, 1, 1).expand(C, 2, 1, 3, 3)
    x = torch.tensor([b, -b]).view(1, 2, 1, 1, 1).expand(C, 2, 1, 3, 3)
    grid = 2 * a ** 2 + float(means.double().var(unbiased=False)) - (C - 1) / C * a ** 2
    assert spread_share(x, of) == pytest.approx(2 * b ** 2 / grid, rel=1e-6)  # float32 inputs


def test_spread_share_is_one_for_the_grid_itself_when_conditions_are_alike_and_scale_free():
    from collapsecheck.measure.pixel import spread_share

    g = torch.Generator().manual_seed(5)
    same = torch.randn(1, 12, 1, 4, 4, generator=g).expand(6, 12, 1, 4, 4)
    assert spread_share(same, same) == pytest.approx(1.0, abs=1e-12)
    grid = torch.randn(6, 12, 1, 4, 4, generator=g) + torch.randn(6, 1, 1, 4, 4, generator=g)
    null = 0.2 * torch.randn(6, 12, 1, 4, 4, generator=g)
    share = spread_share(null, grid)
    assert 0.0 <= share < 0.2
    assert spread_share(3 * null + 1, 3 * grid - 2) == pytest.approx(share, rel=1e-6)  # scale and shift free
    assert spread_share(null, torch.zeros_like(grid)) != spread_share(null, torch.zeros_like(grid))  # NaN
