"""Flow-matching and EDM models in VP terms: the conversions against the forward processes, DDIM against
diffusers' own Euler steps, and Gaussian data whose samples have a closed-form spread."""
import math
from types import SimpleNamespace

import pytest
import torch
from diffusers import EDMEulerScheduler, FlowMatchEulerDiscreteScheduler

from collapsecheck.load.conditions import ConditionSet
from collapsecheck.model.denoiser import Denoiser
from collapsecheck.errors import UsageError
from collapsecheck.model.parametrization import vp_denoiser
from collapsecheck.sample.grid import initial_noise, sample_grid
from collapsecheck.model.schedule import ddim_step, schedule_from_config, to_eps_and_x0

FLOW = {"_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": 1000, "shift": 3.0}
EDM = {"_class_name": "EDMEulerScheduler", "sigma_min": 0.002, "sigma_max": 80.0, "sigma_data": 0.5,
       "sigma_schedule": "karras", "rho": 7.0, "prediction_type": "epsilon"}
EDM_V = {**EDM, "_class_name": "EDMDPMSolverMultistepScheduler", "prediction_type": "v_prediction",
         "sigma_data": 1.3, "sigma_schedule": "exponential"}


def _native(cfg, x0, eps, index):
    """(network input, network timestep, ideal network output) of the model's own process."""
    table = schedule_from_config(cfg).table
    level = table.noise[index].float().view(-1, 1, 1, 1)
    if table.kind == "flow":
        return (1 - level) * x0 + level * eps, 1000 * level.flatten(), eps - x0
    sd = float(cfg["sigma_data"])
    x = x0 + level * eps
    c_skip, c_in = sd ** 2 / (level ** 2 + sd ** 2), 1 / (level ** 2 + sd ** 2).sqrt()
    c_out = level * sd / (level ** 2 + sd ** 2).sqrt() * (1 if cfg["prediction_type"] == "epsilon" else -1)
    return c_in * x, 0.25 * level.flatten().log(), (x0 - c_skip * x) / c_out


@pytest.mark.parametrize("cfg", [FLOW, EDM, EDM_V])
def test_conversions_match_the_forward_process_at_every_noise_level(cfg):
    schedule = schedule_from_config(cfg)
    assert schedule.prediction_type == "v_prediction" and schedule.final_alpha_cumprod == 1.0
    index = torch.tensor([0, 1, 250, 500, 900, 998, 999])
    torch.manual_seed(0)
    x0, eps = torch.randn(7, 2, 4, 4), torch.randn(7, 2, 4, 4)
    a = schedule.alpha_bar(index).float().view(-1, 1, 1, 1)
    x_vp = a.sqrt() * x0 + (1 - a).sqrt() * eps
    x_in, t_in, ideal = _native(cfg, x0, eps, index)
    got_in, got_t = schedule.table.model_input(x_vp, index)
    torch.testing.assert_close(got_in, x_in, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(got_t, t_in, atol=1e-4, rtol=1e-5)
    v = schedule.table.to_v(ideal, x_vp, index)
    torch.testing.assert_close(v, a.sqrt() * eps - (1 - a).sqrt() * x0, atol=1e-4, rtol=1e-4)
    eps_hat, x0_hat = to_eps_and_x0(v, x_vp, a, "v_prediction")  # and back, through the VP conversions
    torch.testing.assert_close(eps_hat, eps, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(x0_hat, x0, atol=1e-4, rtol=1e-4)


def test_tables_run_from_pure_noise_to_clean():
    flow = schedule_from_config(FLOW)
    s = flow.table.noise
    assert float(s[-1]) == 1.0 and float(flow.alphas_cumprod[-1]) == 0.0
    torch.testing.assert_close(s[499], torch.tensor(1.5 / 2.0, dtype=torch.float64))  # 3 * 0.5 / (1 + 2 * 0.5)
    assert int(flow.timesteps(25)[0]) == 999 and float(flow.previous_alpha_bar(flow.timesteps(25))[-1]) == 1.0
    edm = schedule_from_config(EDM)
    assert math.isclose(float(edm.table.noise[-1]), 80.0) and math.isclose(float(edm.table.noise[0]), 0.002)
    assert bool((edm.alphas_cumprod[1:] < edm.alphas_cumprod[:-1]).all())


def _field(x, t):
    return 0.7 * torch.tanh(x) + 0.05 * t.view(-1, 1, 1, 1) / 1000.0 - 0.1  # any smooth function of (x, t)


def test_ddim_in_vp_terms_is_diffusers_flow_match_euler():
    schedule = schedule_from_config(FLOW)
    timesteps, abar, abar_prev = schedule.step_tensors(10, "cpu")
    sigmas = schedule.table.noise[timesteps].float()
    reference = FlowMatchEulerDiscreteScheduler(shift=1.0)  # our sigmas are already shifted
    reference.set_timesteps(sigmas=sigmas.tolist())
    torch.testing.assert_close(reference.sigmas[:-1], sigmas)
    x_vp = x_ref = torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    for k, t in enumerate(reference.timesteps):
        index = timesteps[k].expand(3)
        x_in, t_in = schedule.table.model_input(x_vp, index)
        v = schedule.table.to_v(_field(x_in, t_in), x_vp, index)
        x_vp = ddim_step(*to_eps_and_x0(v, x_vp, abar[k], "v_prediction"), abar_prev[k])
        x_ref = reference.step(_field(x_ref, t.expand(3)), t, x_ref).prev_sample
        n = float((1 - sigmas[k + 1]) ** 2 + sigmas[k + 1] ** 2) ** 0.5 if k + 1 < len(sigmas) else 1.0
        torch.testing.assert_close(n * x_vp, x_ref, atol=1e-5, rtol=1e-5)


def test_ddim_in_vp_terms_is_diffusers_edm_euler():
    schedule = schedule_from_config(EDM)
    timesteps, abar, abar_prev = schedule.step_tensors(8, "cpu")
    sigmas = schedule.table.noise[timesteps].float()
    reference = EDMEulerScheduler(**{k: v for k, v in EDM.items() if k != "_class_name"})
    reference.set_timesteps(sigmas=1 - timesteps.double() / 999)  # diffusers takes the Karras ramp here
    torch.testing.assert_close(reference.sigmas[:-1], sigmas)
    x_vp = torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    x_ref = x_vp * reference.init_noise_sigma
    for k, t in enumerate(reference.timesteps):
        index = timesteps[k].expand(3)
        x_in, t_in = schedule.table.model_input(x_vp, index)
        v = schedule.table.to_v(_field(x_in, t_in), x_vp, index)
        x_vp = ddim_step(*to_eps_and_x0(v, x_vp, abar[k], "v_prediction"), abar_prev[k])
        scaled = reference.scale_model_input(x_ref, t)
        x_ref = reference.step(_field(scaled, t.expand(3)), t, x_ref).prev_sample
        scale = (1 + float(reference.sigmas[k + 1]) ** 2) ** 0.5
        torch.testing.assert_close(scale * x_vp, x_ref, atol=1e-4, rtol=1e-4)


class GaussianFlow(torch.nn.Module):
    """The exact velocity (flow) or preconditioned output (EDM) for x0 | c ~ N(mu_c, s^2 I)."""

    def __init__(self, cfg, means, s):
        super().__init__()
        self.cfg, self.s = cfg, float(s)
        self.register_buffer("means", means)
        self.anchor = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x, t, class_labels):
        mu = self.means[class_labels.long()]
        t = t.view(-1, 1, 1, 1).double()
        x = x.double()
        if self.cfg["_class_name"].startswith("FlowMatch"):
            level = t / 1000.0  # x = (1 - level) x0 + level eps
            var = (1 - level) ** 2 * self.s ** 2 + level ** 2
            out = (level - (1 - level) * self.s ** 2) / var * (x - (1 - level) * mu) - mu
        else:
            sd, sigma = self.cfg["sigma_data"], (4 * t).exp()
            x = x * (sigma ** 2 + sd ** 2).sqrt()  # undo c_in
            x0 = mu + self.s ** 2 / (self.s ** 2 + sigma ** 2) * (x - mu)
            c_skip, c_out = sd ** 2 / (sigma ** 2 + sd ** 2), sigma * sd / (sigma ** 2 + sd ** 2).sqrt()
            out = (x0 - c_skip * x) / c_out
        return SimpleNamespace(sample=out.float() + 0 * self.anchor)


@pytest.mark.parametrize("cfg", [FLOW, EDM])
def test_exact_gaussian_model_samples_have_the_analytic_spread(cfg):
    """DDIM keeps x - sqrt(a) mu proportional to x_T with the factor prod f_k,
    f = (sqrt(a' a) s^2 + sqrt((1 - a')(1 - a))) / (a s^2 + 1 - a), which tends to s with the steps."""
    s, steps = 0.5, 25
    schedule = schedule_from_config(cfg)
    means = torch.tensor([-0.4, 0.3]).view(2, 1, 1, 1).expand(2, 1, 8, 8).clone()
    den = vp_denoiser(Denoiser(model=GaussianFlow(cfg, means, s), kind="class", sample_shape=(1, 8, 8)), schedule)
    conds = ConditionSet(kind="class", values=torch.arange(2), null=torch.tensor([0]), labels=("a", "b"),
                         source="test", null_source="test")
    seeds = list(range(6))
    grid = sample_grid(den, schedule, conds, seeds, [1.0], steps, batch_size=64)
    _, a, a_prev = (t.double() for t in schedule.step_tensors(steps, "cpu"))
    factor = float(((a_prev.sqrt() * a.sqrt() * s * s + (1 - a_prev).sqrt() * (1 - a).sqrt()) / (a * s * s + 1 - a)).prod())
    x_T = initial_noise(seeds, (1, 8, 8))
    expected = means.unsqueeze(1) + factor * (x_T.unsqueeze(0) - a[0].sqrt() * means.unsqueeze(1))
    torch.testing.assert_close(grid.samples[0], expected.float(), atol=2e-4, rtol=1e-4)
    assert abs(factor - s) < 0.12 * s  # Euler's first-order error at 25 steps
    many = schedule.step_tensors(400, "cpu")
    a, a_prev = many[1].double(), many[2].double()
    assert abs(float(((a_prev.sqrt() * a.sqrt() * s * s + (1 - a_prev).sqrt() * (1 - a).sqrt())
                      / (a * s * s + 1 - a)).prod()) - s) < 0.01 * s


def test_unsupported_flow_and_edm_configs_are_one_line_errors():
    with pytest.raises(UsageError, match="use_dynamic_shifting"):
        schedule_from_config({**FLOW, "use_dynamic_shifting": True})
    with pytest.raises(UsageError, match="does not apply"):
        schedule_from_config(FLOW, "epsilon")
    with pytest.raises(UsageError, match="epsilon or v_prediction"):
        schedule_from_config(EDM, "sample")
