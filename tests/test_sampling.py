import pytest
import torch

from collapsecheck.measure.eps import hull_distance, null_branch_stats, project_to_simplex
from collapsecheck.measure.pixel import mean_pairwise_rms, per_pixel_std
from collapsecheck.sample.grid import initial_noise, probe_null_branch, sample_grid
from helpers_analytic import gaussian_setup


def ddim_gaussian_std(schedule, steps, sigma):
    """Exact per-pixel std of deterministic DDIM on N(mu, s^2) data from x_T ~ N(0, I).

    With the exact eps, one DDIM step maps y = x - sqrt(a) mu linearly:
    y' = y (sqrt(a' a) s^2 + sqrt((1 - a')(1 - a))) / (a s^2 + 1 - a).
    """
    ts = schedule.timesteps(steps)
    a, a_prev = schedule.alpha_bar(ts), schedule.previous_alpha_bar(ts)
    factor = ((a_prev * a).sqrt() * sigma ** 2 + ((1 - a_prev) * (1 - a)).sqrt()) / (a * sigma ** 2 + 1 - a)
    return float(factor.prod())


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("sigma", [0.5, 0.02])
def test_ddim_samples_the_known_gaussian(prediction, sigma):
    """Exact eps of N(mu_c, s^2): the samples' per-pixel std and pairwise RMS match DDIM's closed form."""
    denoiser, schedule, conds = gaussian_setup(sigma, classes=2, prediction_type=prediction)
    grid = sample_grid(denoiser, schedule, conds, list(range(48)), [1.0], steps=50, batch_size=256)
    expected = ddim_gaussian_std(schedule, 50, sigma)
    # with enough steps DDIM is close to the ODE, which keeps s; at small s it shrinks it
    assert expected == pytest.approx(sigma, rel=0.05 if sigma > 0.1 else 0.5)
    std = per_pixel_std(grid.samples[0], seed_dim=1)
    assert torch.allclose(std.float(), torch.full_like(std.float(), expected), rtol=0.06)
    rms = mean_pairwise_rms(grid.samples[0], seed_dim=1)
    assert torch.allclose(rms.float(), torch.full_like(rms.float(), 2 ** 0.5 * expected), rtol=0.06)
    # the samples sit around their class mean
    means = grid.samples[0].mean(1)
    assert torch.allclose(means, denoiser.model.means, atol=4 * sigma / 48 ** 0.5 + 1e-3)


def test_results_do_not_depend_on_batch_size():
    denoiser, schedule, conds = gaussian_setup(0.3, classes=3)
    seeds = [5, 6, 7, 8]
    a = sample_grid(denoiser, schedule, conds, seeds, [0.0, 1.0, 3.0], steps=8, batch_size=2)
    b = sample_grid(denoiser, schedule, conds, seeds, [0.0, 1.0, 3.0], steps=8, batch_size=1000)
    assert torch.allclose(a.samples, b.samples, atol=1e-5)
    assert torch.allclose(a.eps_ratio, b.eps_ratio, atol=1e-5)
    assert a.nfe == b.nfe == 2 * 3 * 3 * 4 * 8


def test_results_do_not_depend_on_seed_order_or_grid_shape():
    denoiser, schedule, conds = gaussian_setup(0.3, classes=3)
    full = sample_grid(denoiser, schedule, conds, [1, 2, 3, 4], [1.0, 3.0], steps=6, batch_size=16)
    rev = sample_grid(denoiser, schedule, conds, [4, 3, 2, 1], [3.0], steps=6, batch_size=5)
    assert torch.allclose(full.samples[1], rev.samples[0].flip(1), atol=1e-5)


def test_w1_without_the_null_half_gives_the_same_samples_at_half_the_cost():
    denoiser, schedule, conds = gaussian_setup(0.4)
    both = sample_grid(denoiser, schedule, conds, [0, 1, 2], [1.0], steps=8, batch_size=16)
    alone = sample_grid(denoiser, schedule, conds, [0, 1, 2], [1.0], steps=8, batch_size=16, with_null=False)
    torch.testing.assert_close(alone.samples, both.samples, rtol=1e-5, atol=1e-6)
    assert alone.nfe * 2 == both.nfe and torch.isnan(alone.eps_ratio).all() and not torch.isnan(both.eps_ratio).any()
    with pytest.raises(ValueError, match="w = 1"):
        sample_grid(denoiser, schedule, conds, [0], [3.0], steps=2, batch_size=16, with_null=False)


def test_initial_noise_is_a_function_of_the_seed_alone():
    a = initial_noise([3, 9], (1, 4, 4))
    b = initial_noise([9], (1, 4, 4))
    assert torch.equal(a[1], b[0])
    assert not torch.equal(a[0], a[1])


def test_guidance_zero_follows_the_null_branch_for_every_condition():
    denoiser, schedule, conds = gaussian_setup(0.2, classes=3)
    grid = sample_grid(denoiser, schedule, conds, [0, 1], [0.0], steps=10, batch_size=64)
    # w = 0 ignores the condition: every condition's trajectory is the same for a seed
    assert torch.allclose(grid.samples[0, 0], grid.samples[0, 2], atol=1e-5)


def test_project_to_simplex():
    v = torch.tensor([[0.2, 0.3, 0.5], [2.0, 0.0, 0.0], [-1.0, 0.5, 0.6]], dtype=torch.float64)
    p = project_to_simplex(v)
    assert torch.allclose(p.sum(-1), torch.ones(3, dtype=torch.float64))
    assert (p >= 0).all()
    assert torch.allclose(p[0], v[0]) and torch.allclose(p[1], torch.tensor([1.0, 0, 0], dtype=torch.float64))
    assert torch.allclose(p[2], torch.tensor([0.0, 0.45, 0.55], dtype=torch.float64))


def test_hull_distance_closed_form():
    # a segment from (0,0) to (2,0): a point at (1, 3) is 3 away; (3, 0) is 1 away; (0.5, 0) is inside
    pts = torch.tensor([[[0.0, 0.0], [2.0, 0.0]]] * 3, dtype=torch.float64)
    target = torch.tensor([[1.0, 3.0], [3.0, 0.0], [0.5, 0.0]], dtype=torch.float64)
    assert torch.allclose(hull_distance(pts, target), torch.tensor([3.0, 1.0, 0.0], dtype=torch.float64), atol=1e-6)


def test_null_probe_tells_a_learned_null_from_an_arbitrary_one():
    learned = gaussian_setup(0.3, classes=5, null="mixture")
    arbitrary = gaussian_setup(0.3, classes=5, null="arbitrary")
    stats = {}
    for name, (den, sch, conds) in {"learned": learned, "arbitrary": arbitrary}.items():
        probe = probe_null_branch(den, sch, conds, list(range(8)), steps=20, probe_steps=[0, 3, 6], batch_size=64)
        assert probe.nfe == 8 * 7 + 5 * 8 * 3
        stats[name] = null_branch_stats(probe)
    # a Bayes mixture sits inside the conditions' hull; an arbitrary condition does not
    assert max(stats["learned"].hull_residual) < 1e-3
    assert min(stats["arbitrary"].hull_residual) > 0.3
    assert max(stats["learned"].centroid_gap) < 0.6 < min(stats["arbitrary"].centroid_gap)


def test_variants_interval_and_cads():
    from collapsecheck.sample.variants import cads, interval, plain, step_plan

    denoiser, schedule, conds = gaussian_setup(0.01, classes=3)
    ts = schedule.timesteps(10)
    w, gamma = step_plan([plain(3.0), interval(3.0, 0.5), cads(1.0, 0.5, (0.4, 0.8))], ts, 1000)
    time = ts.double() / 1000
    assert torch.all(w[:, 0] == 3.0)
    assert torch.equal(w[:, 1], torch.where(time > 0.5, 0.0, 3.0).float())
    assert torch.all(gamma[:, :2] == 1.0)
    assert gamma[0, 2] == 0.0 and gamma[-1, 2] == 1.0 and torch.all(gamma[1:, 2] >= gamma[:-1, 2])

    # in one grid each variant equals its own single-variant run; an interval that never starts is
    # plain w, one that always holds is plain w = 0
    seeds = [0, 1, 2, 3]
    grid = sample_grid(denoiser, schedule, conds, seeds, [1.0, 0.0, interval(1.0, 0.5), interval(1.0, 2.0), interval(1.0, -1.0)],
                       steps=10, batch_size=64)
    alone = sample_grid(denoiser, schedule, conds, seeds, [interval(1.0, 0.5)], steps=10, batch_size=7)
    assert torch.allclose(grid.samples[2], alone.samples[0], atol=1e-5)
    assert torch.allclose(grid.samples[3], grid.samples[0], atol=1e-6)
    assert torch.allclose(grid.samples[4], grid.samples[1], atol=1e-6)
    assert not torch.allclose(grid.samples[2], grid.samples[0], atol=1e-3)
    # an exact narrow conditional contracts every trajectory once the condition is on: switching
    # it on late cannot bring diversity back (only mixing in the null branch, w < 1, can)
    rms = mean_pairwise_rms(grid.samples, seed_dim=2).mean(1)
    assert rms[2] < 2 * rms[0] and rms[1] > 10 * rms[0]


def test_cads_noise_reaches_the_class_embedding():
    from collapsecheck.sample.variants import cads

    from helpers_models import tiny_class_unet
    from collapsecheck.model.denoiser import build_denoiser
    from collapsecheck.load.classes import class_conditions
    from collapsecheck.model.schedule import schedule_from_config

    model = tiny_class_unet(num_classes=3)
    den = build_denoiser(model, "UNet2DModel", dict(model.config))
    conds = class_conditions(4)
    sch = schedule_from_config({})
    grid = sample_grid(den, sch, conds, [0, 1], [1.0, cads(1.0, 1.0, (0.0, 0.5)), cads(1.0, 0.0)], steps=4, batch_size=64)
    assert not torch.allclose(grid.samples[0], grid.samples[1])  # noise on the condition changes samples
    assert torch.allclose(grid.samples[0], grid.samples[2], atol=1e-6)  # zero noise changes nothing


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_samples_are_one_clear_error(bad):
    from collapsecheck.errors import LoadError

    denoiser, schedule, conds = gaussian_setup(0.3, classes=2)
    honest = denoiser.model.forward

    def broken(x, t, class_labels=None):
        out = honest(x, t, class_labels=class_labels)
        out.sample[0, 0, 3, 3] = bad  # one pixel of one sample
        return out

    denoiser.model.forward = broken
    with pytest.raises(LoadError, match="NaN or infinite"):
        sample_grid(denoiser, schedule, conds, [0, 1], [1.0], steps=3, batch_size=8)
