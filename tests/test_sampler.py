"""The stochastic samplers (``--sampler ddim-eta1|ddpm``) and x0 clipping/thresholding: step for step what
diffusers' DDIMScheduler and DDPMScheduler do; the known final distribution on Gaussian data; every noise
draw a function of the seed alone."""
import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from collapsecheck.model.sampler import sampler_step
from collapsecheck.model.schedule import schedule_from_config, to_eps_and_x0
from collapsecheck.sample.grid import probe_null_branch, sample_grid
from collapsecheck.sample.noise import StepNoise
from helpers_analytic import gaussian_setup

BASE = {"num_train_timesteps": 1000, "beta_schedule": "linear", "beta_start": 1e-4, "beta_end": 0.02}
CONSTRAINTS = [
    {"clip_sample": False},
    {"clip_sample": True, "clip_sample_range": 0.8},
    {"thresholding": True, "dynamic_thresholding_ratio": 0.9, "sample_max_value": 1.5, "clip_sample": False},
]


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    return 1.7 * torch.randn(3, 2, 6, 6, generator=g), torch.randn(3, 2, 6, 6, generator=g)


def _ours(schedule, k, steps, x, out, noise):
    ts, abar, abar_prev = schedule.step_tensors(steps, "cpu")
    eps, x0 = to_eps_and_x0(out, x, abar[k], schedule.prediction_type)
    return sampler_step(schedule, x, eps, x0, abar[k], abar_prev[k], noise, int(ts[k]) == 0)


@pytest.mark.parametrize("extra", CONSTRAINTS)
@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction", "sample"])
@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_step_is_diffusers_ddim_step(extra, prediction, eta):
    config = {**BASE, **extra, "prediction_type": prediction, "timestep_spacing": "leading", "steps_offset": 1}
    ref = DDIMScheduler.from_config(config)
    ref.set_timesteps(10)
    schedule = schedule_from_config(config, sampler="ddim" if eta == 0 else "ddim-eta1")
    assert torch.equal(schedule.timesteps(10), ref.timesteps.long())
    for k in (0, 4, 9):
        x, out = _inputs(k)
        noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(100 + k))
        expected = ref.step(out, int(ref.timesteps[k]), x, eta=eta, variance_noise=noise).prev_sample
        assert torch.allclose(_ours(schedule, k, 10, x, out, noise), expected, atol=2e-5), (k, extra)


@pytest.mark.parametrize("extra", CONSTRAINTS)
@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("variance", ["fixed_small", "fixed_large"])
@pytest.mark.parametrize("spacing", ["leading", "trailing"])
def test_ddpm_step_is_diffusers_ddpm_step(extra, prediction, variance, spacing):
    config = {**BASE, **extra, "prediction_type": prediction, "variance_type": variance, "timestep_spacing": spacing}
    ref = DDPMScheduler.from_config(config)
    ref.set_timesteps(8)
    schedule = schedule_from_config(config, sampler="ddpm")
    assert torch.equal(schedule.timesteps(8), ref.timesteps.long())
    for k in range(8):
        x, out = _inputs(k)
        noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(7))
        expected = ref.step(out, int(ref.timesteps[k]), x, generator=torch.Generator().manual_seed(7)).prev_sample
        assert torch.allclose(_ours(schedule, k, 8, x, out, noise), expected, atol=2e-5), (k, extra)


def _ancestral_moments(schedule, steps, sigma, mu_offset):
    """Exact per-pixel (mean offset, variance) of the final samples of DDIM eta = 1 or DDPM with the exact eps
    of N(mu, s^2) data: the centred state y = x - sqrt(a) mu maps as y' = f y + std z, linear-Gaussian."""
    from collapsecheck.model.sampler import noise_std

    ts = schedule.timesteps(steps)
    a_all, p_all = schedule.alpha_bar(ts), schedule.previous_alpha_bar(ts)
    mean, var = mu_offset, 1.0
    for k in range(steps):
        a, ap = a_all[k], p_all[k]
        g = a.sqrt() * sigma ** 2 / (a * sigma ** 2 + 1 - a)  # d x0hat / d y
        std = noise_std(schedule, a, ap, int(ts[k]) == 0)
        if schedule.sampler == "ddpm":
            beta = 1 - a / ap
            f = ap.sqrt() * beta / (1 - a) * g + (a / ap).sqrt() * (1 - ap) / (1 - a)
        else:
            f = ap.sqrt() * g + (1 - ap - std ** 2).sqrt() * (1 - a).sqrt() / (a * sigma ** 2 + 1 - a)
        mean, var = f * mean, f ** 2 * var + std ** 2
    return float(mean), float(var)


@pytest.mark.parametrize("sampler", ["ddim-eta1", "ddpm"])
@pytest.mark.parametrize("sigma", [0.5, 0.1])
def test_ancestral_samplers_sample_the_known_gaussian(sampler, sigma):
    """Exact eps of N(mu, s^2): the final per-pixel variance and mean are the linear-Gaussian recursion's."""
    denoiser, schedule, conds = gaussian_setup(sigma, classes=1)
    import dataclasses
    schedule = dataclasses.replace(schedule, sampler=sampler)
    seeds = list(range(96))
    grid = sample_grid(denoiser, schedule, conds, seeds, [1.0], steps=30, batch_size=512)
    x = grid.samples[0, 0].double()  # (S, 1, 8, 8)
    mu = denoiser.model.means[0].double()
    a_T = float(schedule.alpha_bar(schedule.timesteps(30)[:1]))
    # x_T has mean 0, so the centred start y_T = x_T - sqrt(a_T) mu has mean -sqrt(a_T) mu: per pixel, scale 1
    m_scale, var = _ancestral_moments(schedule, 30, sigma, 1.0)
    a_end = float(schedule.previous_alpha_bar(schedule.timesteps(30))[-1])
    expected_mean = a_end ** 0.5 * mu - m_scale * a_T ** 0.5 * mu
    got_var = float(x.var(0, unbiased=True).mean())
    n = x.shape[0] * x[0].numel()
    assert got_var == pytest.approx(var, rel=4 * (2 / n) ** 0.5 + 0.01)  # 4 standard errors of a variance
    # with x0 replaced by its posterior mean each step drops Var[x0 | x_t]: below the data's variance at 30 steps
    assert 0.4 * sigma ** 2 < var < sigma ** 2
    assert torch.allclose(x.mean(0), expected_mean, atol=4 * var ** 0.5 / len(seeds) ** 0.5)


@pytest.mark.parametrize("sampler", ["ddim-eta1", "ddpm"])
def test_stochastic_samples_depend_on_the_seed_alone(sampler):
    import dataclasses
    denoiser, schedule, conds = gaussian_setup(0.3, classes=3)
    schedule = dataclasses.replace(schedule, sampler=sampler)
    a = sample_grid(denoiser, schedule, conds, [1, 2, 3, 4], [0.0, 1.0, 3.0], steps=6, batch_size=2)
    b = sample_grid(denoiser, schedule, conds, [1, 2, 3, 4], [0.0, 1.0, 3.0], steps=6, batch_size=1000)
    assert torch.allclose(a.samples, b.samples, atol=1e-5)  # batch size, chunking
    rev = sample_grid(denoiser, schedule, conds, [4, 3, 2], [3.0], steps=6, batch_size=5)
    assert torch.allclose(a.samples[2, :, 1:], rev.samples[0].flip(1), atol=1e-5)  # seed order, grid shape
    # a unit of conditions (another process's share) samples the same cells
    from collapsecheck.units import subset
    part = sample_grid(denoiser, schedule, subset(conds, 1, 3), [1, 2, 3, 4], [1.0], steps=6, batch_size=7)
    assert torch.allclose(a.samples[1, 1:], part.samples[0], atol=1e-5)
    # the null branch's own trajectory, run to the end, is the w = 0 column
    null = probe_null_branch(denoiser, schedule, conds, [1, 2, 3, 4], 6, [], 64, run_to_end=True)
    assert torch.allclose(a.samples[0, 0], null.final, atol=1e-5)
    ddim = sample_grid(denoiser, dataclasses.replace(schedule, sampler="ddim"), conds, [1, 2, 3, 4], [1.0], 6, 64)
    assert not torch.allclose(ddim.samples[0], a.samples[1], atol=1e-3)  # the noise is really added


def test_step_noise_is_per_seed_and_apart_from_x_T():
    a, b = StepNoise([3, 9], (1, 4, 4)), StepNoise([9], (1, 4, 4))
    first, second = a.next(), a.next()
    assert torch.equal(first[1], b.next()[0]) and torch.equal(second[1], b.next()[0])
    assert not torch.equal(first[0], second[0])
    x_T = torch.randn((1, 4, 4), generator=torch.Generator().manual_seed(3))
    assert not torch.allclose(first[0], x_T)
