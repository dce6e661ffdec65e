"""Posterior variance by Tweedie's second-order identity, against closed forms.

For x0 ~ N(mu, Sigma) and x_t = sqrt(a) x0 + sqrt(1 - a) n, Cov[x0 | x_t] = (1 - a) Sigma (a Sigma + (1 - a) I)^-1
for every x_t; with Sigma = s^2 I its per-pixel trace is s^2 (1 - a) / (a s^2 + 1 - a).
"""
from types import SimpleNamespace

import pytest
import torch

from collapsecheck.load.conditions import ConditionSet
from collapsecheck.model.denoiser import Denoiser
from collapsecheck.errors import UsageError
from collapsecheck.measure.pixel import seed_share
from collapsecheck.measure.posterior import (
    default_probe_timesteps,
    jacobian_quadratic,
    posterior_profile,
    posterior_trace,
    posterior_variance_from_quadratic,
    rademacher,
    resolve_method,
)
from collapsecheck.sample.grid import sample_grid
from collapsecheck.model.schedule import schedule_from_config
from helpers_analytic import SCHEDULER, decoder_setup, gaussian_setup
from helpers_models import tiny_class_unet, tiny_crossattn_unet


def isotropic(schedule, t, sigma):
    a = schedule.alpha_bar(torch.as_tensor(t))
    return sigma ** 2 * (1 - a) / (a * sigma ** 2 + 1 - a)


class FullGaussian(torch.nn.Module):
    """Exact outputs for x0 ~ N(mu, U diag(lam) U^T) (one class): a Jacobian that is not diagonal."""

    def __init__(self, size: int, abar: torch.Tensor, prediction_type: str, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        D = size * size
        self.register_buffer("mu", torch.rand(D, generator=g, dtype=torch.float64) - 0.5)
        self.register_buffer("lam", torch.logspace(-1.7, 0, D, dtype=torch.float64))  # std 0.14 .. 1
        self.register_buffer("U", torch.linalg.qr(torch.randn(D, D, generator=g, dtype=torch.float64))[0])
        self.register_buffer("abar", abar.double())
        self.prediction_type = prediction_type
        self.anchor = torch.nn.Parameter(torch.zeros(()))

    def trace(self, a: float) -> float:
        return float(((1 - a) * self.lam / (a * self.lam + 1 - a)).mean())

    def forward(self, x, t, class_labels):
        a = self.abar[t.long()].view(-1, 1)
        z = (x.flatten(1).double() - a.sqrt() * self.mu) @ self.U
        eps = (1 - a).sqrt() * (z / (a * self.lam + 1 - a)) @ self.U.T
        x0 = self.mu + a.sqrt() * (z * self.lam / (a * self.lam + 1 - a)) @ self.U.T
        out = {"epsilon": eps, "sample": x0, "v_prediction": a.sqrt() * eps - (1 - a).sqrt() * x0}[self.prediction_type]
        return SimpleNamespace(sample=out.view(x.shape).to(x.dtype) + 0 * self.anchor)


def full_gaussian_setup(prediction_type: str, size: int = 8):
    schedule = schedule_from_config({**SCHEDULER, "prediction_type": prediction_type})
    model = FullGaussian(size, schedule.alphas_cumprod, prediction_type)
    return Denoiser(model=model, kind="class", sample_shape=(1, size, size)), schedule


class _NoForwardAD(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x * 1.0

    @staticmethod
    def backward(ctx, grad):
        return grad


class NoJvpModel(torch.nn.Module):
    """Exact Gaussian eps behind an op without a forward-mode derivative."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x, t, class_labels):
        return self.inner(_NoForwardAD.apply(x), t, class_labels)


def class_unet_setup(prediction_type="epsilon"):
    schedule = schedule_from_config({**SCHEDULER, "prediction_type": prediction_type})
    denoiser = Denoiser(model=tiny_class_unet(num_classes=3), kind="class", sample_shape=(1, 8, 8))
    conds = ConditionSet(kind="class", values=torch.arange(3), null=torch.tensor([3]), labels=("0", "1", "2"),
                         source="test", null_source="test")
    return denoiser, schedule, conds


def test_default_probe_timesteps_spread_in_log_snr():
    _, schedule, _ = gaussian_setup(0.3)
    ts = default_probe_timesteps(schedule, 3)
    a = schedule.alpha_bar(ts)
    assert torch.all(ts[:-1] > ts[1:])  # highest noise first
    assert torch.allclose(a, torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64), atol=2e-3)
    one = default_probe_timesteps(schedule, 1)
    assert len(one) == 1 and float(schedule.alpha_bar(one)) == pytest.approx(0.1, abs=2e-3)
    with pytest.raises(ValueError):
        default_probe_timesteps(schedule, 3, (0.0, 0.9))


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction", "sample"])
def test_multiplied_out_forms_match_tweedie(prediction):
    """Cov = ((1-a)/sqrt(a)) d x0hat/dx for the Jacobian q each parametrization implies, s^2 I data."""
    a = torch.tensor([0.02, 0.1, 0.5, 0.9], dtype=torch.float64)
    s2 = 0.3
    dx0 = a.sqrt() * s2 / (a * s2 + 1 - a)  # d x0hat / dx per pixel
    q = {"epsilon": (1 - a).sqrt() / (a * s2 + 1 - a),  # d eps / dx
         "v_prediction": (a * (1 - a)).sqrt() * (1 - s2) / (a * s2 + 1 - a),
         "sample": dx0}[prediction]
    got = posterior_variance_from_quadratic(q, a, prediction)
    assert torch.allclose(got, (1 - a) / a.sqrt() * dx0, rtol=1e-12)


@pytest.mark.parametrize("method", ["jvp", "fd"])
@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("sigma", [0.5, 0.1])
def test_trace_of_the_exact_gaussian(method, prediction, sigma):
    denoiser, schedule, conds = gaussian_setup(sigma, classes=3, prediction_type=prediction)
    g = torch.Generator().manual_seed(0)
    for t in [900, 700, 500, 300, 150]:
        x_t = torch.randn(6, 1, 8, 8, generator=g)
        got = posterior_trace(denoiser, schedule, x_t, t, torch.tensor([0, 1, 2, 0, 1, 2]), probes=2, method=method,
                              generator=g)
        assert got.shape == (6,)
        assert torch.allclose(got, isotropic(schedule, t, sigma).expand(6), rtol=0.01 if method == "jvp" else 0.03), t


@pytest.mark.parametrize("method", ["jvp", "fd"])
@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction", "sample"])
def test_hutchinson_on_a_full_covariance(method, prediction):
    """A non-diagonal Jacobian: the probe average converges to the trace (64 probes, 5 %)."""
    denoiser, schedule = full_gaussian_setup(prediction)
    g = torch.Generator().manual_seed(1)
    x_t = torch.randn(4, 1, 8, 8, generator=g)
    for t in [700, 400, 200]:
        got = posterior_trace(denoiser, schedule, x_t, t, torch.zeros(4, dtype=torch.long), probes=64, method=method,
                              generator=g, batch_size=128)
        expected = denoiser.model.trace(float(schedule.alpha_bar(torch.tensor(t))))
        assert float(got.mean()) == pytest.approx(expected, rel=0.05), t
        assert torch.allclose(got, torch.full_like(got, expected), rtol=0.1), t


def test_decoder_has_no_posterior_variance_and_a_healthy_model_has():
    """A decoder's x0hat ignores x_t: zero; a near-decoder (s = 0.01) ~1e-4; a healthy one s^2-ish."""
    denoiser, schedule, conds = decoder_setup()
    prof = posterior_profile(denoiser, schedule, conds, [0, 1, 2], probes=2)
    assert torch.equal(prof.posterior_var, torch.zeros_like(prof.posterior_var))
    assert torch.equal(prof.variance_share, torch.zeros_like(prof.variance_share))
    near, sch, conds = gaussian_setup(0.01, classes=3)
    healthy, _, _ = gaussian_setup(0.5, classes=3)
    ts = default_probe_timesteps(sch, 3)
    low = posterior_profile(near, sch, conds, [0, 1], probes=2).posterior_var
    high = posterior_profile(healthy, sch, conds, [0, 1], probes=2).posterior_var
    assert torch.allclose(low, isotropic(sch, ts, 0.01).unsqueeze(1).expand_as(low), rtol=0.02)
    assert torch.allclose(high, isotropic(sch, ts, 0.5).unsqueeze(1).expand_as(high), rtol=1e-3)
    assert bool((high > 100 * low).all())


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
def test_jvp_and_finite_differences_agree_on_a_unet(prediction):
    denoiser, schedule, conds = class_unet_setup(prediction)
    g = torch.Generator().manual_seed(3)
    x_t = torch.randn(4, 1, 8, 8, generator=g)
    cond = torch.tensor([0, 1, 2, 0])
    vectors = rademacher((4, 4, 1, 8, 8), g)
    for t in [700, 300]:
        jvp = posterior_trace(denoiser, schedule, x_t, t, cond, probes=vectors, method="jvp")
        fd = posterior_trace(denoiser, schedule, x_t, t, cond, probes=vectors, method="fd")
        assert torch.allclose(jvp, fd, rtol=2e-3), (jvp, fd)  # measured: 3e-6
        qj = jacobian_quadratic(denoiser, x_t, t, cond, vectors, "jvp")
        qf = jacobian_quadratic(denoiser, x_t, t, cond, vectors, "fd")
        assert torch.allclose(qj, qf, rtol=1e-3, atol=1e-4 * float(qj.abs().max()))


def test_jvp_runs_through_attention():
    """Cross-attention UNets: the JVP runs on the math attention kernel and agrees with FD."""
    schedule = schedule_from_config(SCHEDULER)
    denoiser = Denoiser(model=tiny_crossattn_unet(cross_dim=16), kind="cross_attn", sample_shape=(1, 8, 8))
    g = torch.Generator().manual_seed(4)
    x_t, emb = torch.randn(2, 1, 8, 8, generator=g), torch.randn(2, 3, 16, generator=g)
    assert resolve_method(denoiser, x_t, 500, emb) == ("jvp", None)
    vectors = rademacher((3, 2, 1, 8, 8), g)
    jvp = posterior_trace(denoiser, schedule, x_t, 500, emb, probes=vectors, method="jvp")
    fd = posterior_trace(denoiser, schedule, x_t, 500, emb, probes=vectors, method="fd")
    assert torch.allclose(jvp, fd, rtol=0.02)


def test_auto_falls_back_to_finite_differences_and_says_so():
    inner, schedule, conds = gaussian_setup(0.5, classes=3)
    denoiser = Denoiser(model=NoJvpModel(inner.model), kind="class", sample_shape=inner.sample_shape)
    method, note = resolve_method(denoiser, torch.randn(1, 1, 8, 8), 500, torch.tensor([0]))
    assert method == "fd" and "forward-mode AD" in note
    with pytest.raises(Exception):
        posterior_trace(denoiser, schedule, torch.randn(2, 1, 8, 8), 500, torch.tensor([0, 1]), method="jvp")
    got = posterior_trace(denoiser, schedule, torch.randn(2, 1, 8, 8), 500, torch.tensor([0, 1]), method="auto")
    assert torch.allclose(got, isotropic(schedule, 500, 0.5).expand(2), rtol=0.03)
    prof = posterior_profile(denoiser, schedule, conds, [0, 1], probes=1)
    assert prof.method == "fd" and "forward-mode AD" in prof.method_note and prof.jvps == 0
    with pytest.raises(UsageError, match="method must be one of"):
        posterior_trace(denoiser, schedule, torch.randn(2, 1, 8, 8), 500, torch.tensor([0, 1]), method="jpv")


def test_profile_does_not_depend_on_batch_size_or_seed_order():
    denoiser, schedule, conds = class_unet_setup()
    kw = dict(timesteps=[800, 500], probes=2, trajectory_steps=5)
    a = posterior_profile(denoiser, schedule, conds, [4, 5, 6], batch_size=3, method="jvp", **kw)
    b = posterior_profile(denoiser, schedule, conds, [4, 5, 6], batch_size=1000, method="jvp", **kw)
    c = posterior_profile(denoiser, schedule, conds, [6, 5, 4], batch_size=7, method="jvp", **kw)
    assert torch.allclose(a.per_seed, b.per_seed, rtol=1e-4, atol=1e-7)
    assert torch.allclose(a.per_seed, c.per_seed.flip(-1), rtol=1e-4, atol=1e-7)
    assert torch.allclose(a.variance_share, b.variance_share, rtol=1e-4)
    f1 = posterior_profile(denoiser, schedule, conds, [4, 5, 6], batch_size=2, method="fd", **kw)
    f2 = posterior_profile(denoiser, schedule, conds, [4, 5, 6], batch_size=64, method="fd", **kw)
    assert torch.allclose(f1.per_seed, f2.per_seed, rtol=1e-3, atol=1e-6)
    assert torch.allclose(a.per_seed, f1.per_seed, rtol=0.02, atol=1e-4)


def test_trace_does_not_depend_on_chunking():
    denoiser, schedule, _ = class_unet_setup()
    g = torch.Generator().manual_seed(5)
    x_t, cond = torch.randn(5, 1, 8, 8, generator=g), torch.tensor([0, 1, 2, 0, 1])
    vectors = rademacher((3, 5, 1, 8, 8), g)
    ref = posterior_trace(denoiser, schedule, x_t, 400, cond, probes=vectors, method="jvp", batch_size=1000)
    for bs in (1, 4):
        got = posterior_trace(denoiser, schedule, x_t, 400, cond, probes=vectors, method="jvp", batch_size=bs)
        assert torch.allclose(got, ref, rtol=1e-5, atol=1e-8)
    # one sample alone gets the same number as inside a batch
    alone = posterior_trace(denoiser, schedule, x_t[2:3], 400, cond[2:3], probes=vectors[:, 2:3], method="jvp")
    assert torch.allclose(alone, ref[2:3], rtol=1e-5, atol=1e-8)


def expected_seed_share(model, sigma, seeds):
    mu = model.means.double().flatten(1)
    C, S = mu.shape[0], seeds
    between = ((mu - mu.mean(0)) ** 2).sum(0).mean() / C  # the conditions' own spread (population variance)
    return float(sigma ** 2 / (sigma ** 2 + between))


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
def test_variance_share_predicts_the_seed_share(prediction):
    """Law of total variance: at every probe, (E Cov + Var x0hat) / total ~ the final samples' seed_share."""
    denoiser, schedule, conds = gaussian_setup(0.3, classes=4, prediction_type=prediction)
    seeds = list(range(24))
    expected = expected_seed_share(denoiser.model, 0.3, len(seeds))
    prof = posterior_profile(denoiser, schedule, conds, seeds, probes=1, trajectory_steps=25)
    assert torch.allclose(prof.variance_share, torch.full_like(prof.variance_share, expected), rtol=0.03)
    a = prof.alpha_bar.unsqueeze(1)
    assert torch.allclose(prof.x0hat_var, a * 0.3 ** 4 / (a * 0.09 + 1 - a) * torch.ones(1, 4), rtol=0.25)
    # forward-noised samples instead of the trajectory; DDIM's 25-step samples are slightly narrower than
    # the model's distribution (std factor < 1), which the posterior term does not see
    grid = sample_grid(denoiser, schedule, conds, seeds, [1.0], steps=25, batch_size=512)
    from_x0 = posterior_profile(denoiser, schedule, conds, seeds, probes=1, x0=grid.samples[0])
    assert from_x0.source == "x0"
    assert torch.allclose(from_x0.variance_share, torch.full_like(from_x0.variance_share, expected), rtol=0.03)
    final = seed_share(grid.samples[0], seed_dim=1)
    assert torch.allclose(final, torch.full_like(final, expected), rtol=0.08)


def test_nfe_accounting():
    denoiser, schedule, conds = gaussian_setup(0.3, classes=2)
    seeds = [0, 1, 2]
    N = 2 * 3
    ts = [700, 400]
    fd = posterior_profile(denoiser, schedule, conds, seeds, ts, probes=3, method="fd", trajectory_steps=10)
    grid = schedule.timesteps(10)
    path = len(torch.unique(torch.cat([grid[grid > 400], torch.tensor(ts)])))
    assert fd.nfe == N * path + 2 * N * 3 * len(ts) and fd.jvps == 0
    jvp = posterior_profile(denoiser, schedule, conds, seeds, ts, probes=3, method="auto", trajectory_steps=10)
    assert jvp.method == "jvp" and jvp.method_note is None
    assert jvp.nfe == N * path and jvp.jvps == 1 + N * 3 * len(ts)
    x0 = torch.zeros(2, 3, 1, 8, 8)
    given = posterior_profile(denoiser, schedule, conds, seeds, ts, probes=3, method="jvp", x0=x0)
    assert given.nfe == N * len(ts) and given.jvps == N * 3 * len(ts)
    assert given.timesteps.tolist() == [700, 400]
    with pytest.raises(ValueError, match="x0 must have shape"):
        posterior_profile(denoiser, schedule, conds, seeds, ts, x0=torch.zeros(2, 1, 8, 8))


class OverExpanding(torch.nn.Module):
    """eps = k x_t: tr(J_eps) / D = k > 1 / sqrt(1 - a), beyond any posterior covariance (raw trace < 0)."""

    def __init__(self, k: float):
        super().__init__()
        self.k = k
        self.anchor = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x, t, class_labels):
        return SimpleNamespace(sample=self.k * x + 0 * self.anchor)


def test_posterior_variance_is_never_negative_and_says_why_it_was_clamped():
    """The raw estimate of an inconsistent network goes below 0, as real models' did (-0.94, -1.05): reported
    as 0 with the raw mean, its standard error and a note; the closed form of the raw mean is
    (1 - a)/a (1 - sqrt(1 - a) k), exact here (J_eps = k I: every probe gives k)."""
    schedule = schedule_from_config({**SCHEDULER, "prediction_type": "epsilon"})
    denoiser = Denoiser(model=OverExpanding(4.0), kind="class", sample_shape=(1, 4, 4))
    conds = ConditionSet(kind="class", values=torch.arange(2), null=torch.tensor([2]), labels=("0", "1"),
                         source="test", null_source="test")
    prof = posterior_profile(denoiser, schedule, conds, [0, 1, 2], probes=2, method="jvp")
    a = prof.alpha_bar
    raw = (1 - a) / a * (1 - (1 - a).sqrt() * 4.0)
    assert bool((raw < 0).all())
    assert bool((prof.posterior_var == 0).all()) and bool((prof.variance_share >= 0).all())
    for p in range(len(prof.timesteps)):
        point = prof.summary(p)
        assert point["posterior_var"] == 0.0
        assert point["posterior_var_raw"] == pytest.approx(float(raw[p]), rel=1e-5)
        assert point["posterior_var_stderr"] == pytest.approx(0.0, abs=1e-6)  # J = k I: no probe or seed noise
        assert "clamped to 0" in point["posterior_note"] and "not a posterior mean" in point["posterior_note"]


def test_posterior_standard_error_covers_the_closed_form():
    """Exact Gaussian eps, few probes: the clamped mean is within 4 standard errors of s^2 (1-a)/(a s^2 + 1 - a)."""
    denoiser, schedule, conds = gaussian_setup(0.5, classes=2)
    prof = posterior_profile(denoiser, schedule, conds, [0, 1, 2, 3], probes=1, method="jvp")
    exact = isotropic(schedule, prof.timesteps, 0.5)
    for p in range(len(prof.timesteps)):
        point = prof.summary(p)
        assert point["posterior_var_stderr"] is not None and point["posterior_var_stderr"] >= 0
        assert abs(point["posterior_var"] - float(exact[p])) <= 4 * point["posterior_var_stderr"] + 1e-6
        assert point["posterior_note"] is None
