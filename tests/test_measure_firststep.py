"""First-step x0hat diversity across seeds, against closed forms.

For x0 | c ~ N(mu_c, s^2 I) with the exact eps, x0hat(x_t) = mu_c + sqrt(a) s^2 (x_t - sqrt(a) mu_c) / (a s^2 + 1 - a),
and each DDIM step maps y = x - sqrt(a) mu_c linearly: y' = y f, f = (sqrt(a' a) s^2 + sqrt((1-a')(1-a))) / (a s^2 + 1 - a).
From x_T ~ N(0, I) (Var y_T = 1), the per-pixel variance of x0hat across seeds at step k is
(sqrt(a_k) s^2 / (a_k s^2 + 1 - a_k))^2 * prod_{j<k} f_j^2.
"""

import pytest
import torch

from collapsecheck.load.conditions import ConditionSet
from collapsecheck.model.denoiser import Denoiser
from collapsecheck.measure.firststep import first_step, mean_pairwise_correlation, probe_step_index
from collapsecheck.model.schedule import schedule_from_config
from helpers_analytic import SCHEDULER, decoder_setup, gaussian_setup
from helpers_models import tiny_class_unet


def x0hat_variance(schedule, steps, k, sigma):
    ts = schedule.timesteps(steps)
    a, a_prev = schedule.alpha_bar(ts), schedule.previous_alpha_bar(ts)
    f = ((a_prev * a).sqrt() * sigma ** 2 + ((1 - a_prev) * (1 - a)).sqrt()) / (a * sigma ** 2 + 1 - a)
    gain = a[k].sqrt() * sigma ** 2 / (a[k] * sigma ** 2 + 1 - a[k])
    return float(gain ** 2 * (f[:k] ** 2).prod())


def expected_share(means, within, seeds):
    """E[seed_share]: within / (within + S * sum_c (mu_c - mu)^2 / (C S - 1)), pixel-averaged."""
    mu = means.double().flatten(1)
    C = mu.shape[0]
    between = seeds * ((mu - mu.mean(0)) ** 2).sum(0).mean() / (C * seeds - 1)
    return within / (within + float(between))


def test_probe_step_index():
    _, schedule, _ = gaussian_setup(0.3)
    k = probe_step_index(schedule, 25)
    a = schedule.alpha_bar(schedule.timesteps(25))
    assert a[k] >= 0.05 and (k == 0 or a[k - 1] < 0.05)
    assert probe_step_index(schedule, 25, 0.0) == 0
    assert probe_step_index(schedule, 25, 0.99999) == 24


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("step_index", [None, 0, 8])
def test_x0hat_variance_of_the_exact_gaussian(prediction, step_index):
    sigma, seeds = 0.5, list(range(64))
    denoiser, schedule, conds = gaussian_setup(sigma, classes=3, prediction_type=prediction)
    fs = first_step(denoiser, schedule, conds, seeds, steps=25, step_index=step_index)
    k = probe_step_index(schedule, 25) if step_index is None else step_index
    assert fs.step_index == k and fs.timestep == int(schedule.timesteps(25)[k])
    var = x0hat_variance(schedule, 25, k, sigma)
    got = fs.x0hat.double().var(1).mean((1, 2, 3))
    assert torch.allclose(got, torch.full_like(got, var), rtol=0.06)  # 64 seeds x 64 pixels: ~2 % noise
    assert torch.allclose(fs.rms, torch.full_like(fs.rms, (2 * var) ** 0.5), rtol=0.06)
    share = expected_share(denoiser.model.means, var, len(seeds))
    assert torch.allclose(fs.share, torch.full_like(fs.share, share), rtol=0.08)
    assert fs.nfe == 3 * 64 * (k + 1)
    # x0hat sits around the class mean
    assert torch.allclose(fs.x0hat.mean(1), denoiser.model.means, atol=5 * (var / 64) ** 0.5 + 1e-6)


def test_a_decoder_gives_the_same_x0hat_for_every_seed():
    denoiser, schedule, conds = decoder_setup()
    fs = first_step(denoiser, schedule, conds, [0, 1, 2, 3], steps=10)
    assert torch.equal(fs.share, torch.zeros(3, dtype=torch.float64))
    assert torch.equal(fs.rms, torch.zeros(3, dtype=torch.float64))
    assert torch.allclose(fs.corr, torch.ones(3, dtype=torch.float64))


def test_collapse_is_visible_after_one_step():
    """A near-decoder (s = 0.02) against a healthy model (s = 0.5): share and RMS apart by orders of magnitude."""
    seeds = list(range(10))  # NeMo's 10 seeds
    healthy, schedule, conds = gaussian_setup(0.5, classes=4)
    near, _, _ = gaussian_setup(0.02, classes=4)
    h = first_step(healthy, schedule, conds, seeds)
    c = first_step(near, schedule, conds, seeds)
    assert bool((c.share < 1e-3 * h.share).all())
    assert bool((c.rms < 0.01 * h.rms).all())
    assert bool((c.corr > h.corr).all()) and bool((c.corr > 0.999).all())


def test_guidance_and_nfe():
    denoiser, schedule, conds = gaussian_setup(0.3, classes=3)
    seeds = [0, 1, 2, 3]
    k = probe_step_index(schedule, 25)
    w0 = first_step(denoiser, schedule, conds, seeds, guidance=0.0)
    assert w0.nfe == 2 * 3 * 4 * (k + 1) and w0.guidance == 0.0
    # w = 0 follows the null branch: every condition has the same x0hat for a seed
    assert torch.allclose(w0.x0hat[0], w0.x0hat[2], atol=1e-6)
    w3 = first_step(denoiser, schedule, conds, seeds, guidance=3.0)
    w1 = first_step(denoiser, schedule, conds, seeds, guidance=1.0)
    assert not torch.allclose(w3.x0hat, w1.x0hat)
    with pytest.raises(ValueError, match="step_index"):
        first_step(denoiser, schedule, conds, seeds, steps=10, step_index=10)
    with pytest.raises(ValueError, match="at least two"):
        first_step(denoiser, schedule, conds, [0])


def test_single_condition_has_no_share():
    denoiser, schedule, conds = gaussian_setup(0.3, classes=1)
    fs = first_step(denoiser, schedule, conds, [0, 1, 2])
    assert torch.isnan(fs.share).all() and torch.isfinite(fs.rms).all()


def test_results_do_not_depend_on_batch_size_or_seed_order():
    schedule = schedule_from_config(SCHEDULER)
    denoiser = Denoiser(model=tiny_class_unet(num_classes=3), kind="class", sample_shape=(1, 8, 8))
    conds = ConditionSet(kind="class", values=torch.arange(3), null=torch.tensor([3]), labels=("0", "1", "2"),
                         source="test", null_source="test")
    a = first_step(denoiser, schedule, conds, [3, 4, 5], guidance=2.0, steps=10, batch_size=2)
    b = first_step(denoiser, schedule, conds, [3, 4, 5], guidance=2.0, steps=10, batch_size=1000)
    c = first_step(denoiser, schedule, conds, [5, 4, 3], guidance=2.0, steps=10, batch_size=5)
    assert torch.allclose(a.x0hat, b.x0hat, atol=1e-5)
    assert torch.allclose(a.x0hat, c.x0hat.flip(1), atol=1e-5)
    for name in ("share", "rms", "corr"):
        assert torch.allclose(getattr(a, name), getattr(b, name), rtol=1e-4)


def test_mean_pairwise_correlation():
    g = torch.Generator().manual_seed(0)
    base = torch.randn(1, 64, generator=g)
    same = base.repeat(4, 1) * torch.tensor([[1.0], [2.0], [0.5], [3.0]]) + torch.tensor([[0.0], [1.0], [-2.0], [5.0]])
    assert float(mean_pairwise_correlation(same)) == pytest.approx(1.0, abs=1e-12)  # affine copies
    flipped = torch.stack([base[0], -base[0]])
    assert float(mean_pairwise_correlation(flipped)) == pytest.approx(-1.0, abs=1e-12)
    independent = torch.randn(2, 40, 4096, generator=g)
    assert mean_pairwise_correlation(independent, seed_dim=1).abs().max() < 0.01
