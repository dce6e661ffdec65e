import pytest
import torch
from diffusers import DDIMScheduler

from collapsecheck.errors import UsageError
from collapsecheck.model.schedule import ddim_step, schedule_from_config, to_eps_and_x0

CONFIGS = [
    {"beta_schedule": "linear", "prediction_type": "epsilon", "clip_sample": False},
    {"beta_schedule": "squaredcos_cap_v2", "prediction_type": "v_prediction", "clip_sample": False, "set_alpha_to_one": False},
    {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012, "prediction_type": "sample",
     "clip_sample": True, "timestep_spacing": "trailing"},
    {"beta_schedule": "linear", "prediction_type": "epsilon", "clip_sample": True, "steps_offset": 1},
    {"beta_schedule": "linear", "prediction_type": "epsilon", "clip_sample": False, "timestep_spacing": "linspace"},
]


@pytest.mark.parametrize("cfg", CONFIGS)
def test_ddim_matches_diffusers_scheduler(cfg):
    """Our vectorised step reproduces diffusers' DDIMScheduler.step (eta = 0) on every prediction type."""
    reference = DDIMScheduler(**cfg)
    reference.set_timesteps(10)
    schedule = schedule_from_config(dict(reference.config))
    timesteps = schedule.timesteps(10)
    assert torch.equal(timesteps, reference.timesteps.long())
    abar = schedule.alpha_bar(timesteps).float()
    abar_prev = schedule.previous_alpha_bar(timesteps).float()
    clip = schedule.clip_sample_range if schedule.clip_sample else None
    torch.manual_seed(0)
    x_ours = x_ref = torch.randn(3, 2, 4, 4)
    for k, t in enumerate(timesteps):
        output = 0.8 * torch.tanh(x_ours) + 0.1  # any smooth function of x_t
        out_ref = 0.8 * torch.tanh(x_ref) + 0.1
        eps, x0 = to_eps_and_x0(output, x_ours, abar[k], schedule.prediction_type)
        x_ours = ddim_step(eps, x0, abar_prev[k], clip)
        x_ref = reference.step(out_ref, int(t), x_ref, eta=0.0).prev_sample
    assert torch.allclose(x_ours, x_ref, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction", "sample"])
def test_conversions_invert_the_forward_process(prediction):
    torch.manual_seed(1)
    x0, eps = torch.randn(4, 1, 8, 8), torch.randn(4, 1, 8, 8)
    a = torch.tensor([0.9, 0.5, 0.1, 0.01]).view(4, 1, 1, 1)
    x_t = a.sqrt() * x0 + (1 - a).sqrt() * eps
    out = {"epsilon": eps, "v_prediction": a.sqrt() * eps - (1 - a).sqrt() * x0, "sample": x0}[prediction]
    eps_hat, x0_hat = to_eps_and_x0(out, x_t, a, prediction)
    assert torch.allclose(eps_hat, eps, atol=1e-4)
    assert torch.allclose(x0_hat, x0, atol=1e-3)


def test_v_prediction_is_finite_at_zero_terminal_snr():
    """abar = 0 at t = T (zero terminal SNR): v models still give a finite x0, no division by sqrt(abar)."""
    x_t, v = torch.randn(2, 1, 4, 4), torch.randn(2, 1, 4, 4)
    eps, x0 = to_eps_and_x0(v, x_t, torch.tensor(0.0), "v_prediction")
    assert torch.isfinite(x0).all() and torch.allclose(x0, -v)
    assert torch.allclose(eps, x_t)


def test_bad_prediction_type_is_a_usage_error():
    with pytest.raises(UsageError, match="prediction_type must be one of"):
        schedule_from_config({"prediction_type": "v-pred"})
