"""The model's own posterior variance, from Tweedie's second-order identity (Manor & Michaeli, ICLR 2024).

For ``x_t = sqrt(a) x0 + sqrt(1 - a) n`` the posterior covariance is a derivative of the posterior mean:

    Cov[x0 | x_t] = ((1 - a) / sqrt(a)) * d x0hat / d x_t.

A model that has become a deterministic decoder ignores x_t: ``x0hat`` does not move with it, and its
posterior variance is ~0 at every t. A healthy model keeps about the data's conditional variance at
high noise. The trace, divided by the number of pixels D, is a per-pixel posterior variance in the
units of x0 squared (pixels in [-1, 1] for pixel models, latents for latent models). Higher = more
diverse.

**Never differentiate x0hat itself.** For an epsilon model ``x0hat = (x_t - sqrt(1-a) eps)/sqrt(a)``
divides by a small number near t = T; the derivative is multiplied out analytically instead, and only
the raw network output ``f`` is differentiated. With ``q = v^T J_f v / D`` (Rademacher probes v, so
``v^T v = D`` exactly and the identity terms carry no estimation noise):

    epsilon        Cov/D = ((1 - a) / a)   * (1 - sqrt(1 - a) q)       [x0hat' = (I - sqrt(1-a) J_eps)/sqrt(a)]
    v_prediction   Cov/D = (1 - a) - ((1 - a)^1.5 / sqrt(a)) q         [x0hat  = sqrt(a) x_t - sqrt(1-a) v]
    sample         Cov/D = ((1 - a) / sqrt(a)) q                       [x0hat  = f]

For epsilon and v the bracket is a difference of two O(1) numbers that nearly cancel when the model is
collapsed (a healthy model's ``q`` is not at the cancellation point); its rounding error is amplified by
``(1 - a)/a``. :func:`default_probe_timesteps` therefore keeps the probes where the signal-to-noise
ratio is moderate, alpha-bar in [0.1, 0.9] by default: below 0.1 that factor exceeds 9, and above 0.9
x_t alone pins x0 down (its likelihood has per-pixel variance (1 - a)/a < 0.11; for Gaussian data
``Cov = s^2 (1-a) / (a s^2 + 1 - a) <= (1 - a)/a``), every model looks nearly deterministic, and the
measure no longer tells a decoder from a healthy model. The result is not clipped at 0: a learned Jacobian is not
exactly symmetric positive semi-definite, and a slightly negative value is honest estimation noise.

**The trace** is Hutchinson's estimator ``tr(J) ~ mean_k v_k^T J v_k`` with K Rademacher probes, the
products ``J v`` computed by

* ``"jvp"``: forward-mode AD (``torch.func.jvp``), exact up to rounding. Attention runs on PyTorch's
  math SDPA kernel inside the JVP: the fused kernels (flash, memory-efficient) have no forward-mode
  derivative. More activation memory than a forward pass, and on CPU the cost of 5-10 forward passes
  per probe (measured: benchmarks/README.md).
* ``"fd"``: central differences ``(f(x + h v) - f(x - h v)) / 2h``, two forward passes per probe (the
  cheaper choice in float32, where it agrees with the JVP to ~1e-5 on a UNet). The step is relative
  to the sample's norm: ``h = rel_step * rms(x_t)``, so ``h v`` moves every pixel by ``rel_step``
  times the sample's RMS (``rms(v) = 1``). ``rel_step`` defaults to ``eps^(1/3)`` of the
  model's dtype (4.9e-3 in float32, 0.2 in bfloat16), the step that balances the O(h^2) truncation
  error against the O(eps / h) rounding error of a central difference.
* ``"auto"``: JVP, or finite differences when the JVP raises (an operator without a forward-mode
  derivative). :func:`resolve_method` says which and why; :func:`posterior_profile` records it.

**Where x_t comes from** (:func:`posterior_profile`). Tweedie's identity describes the posterior at
x_t drawn from the model's own marginal p(x_t | c); off that distribution the Jacobian means nothing.
By default each seed's x_T is carried down the model's own deterministic DDIM trajectory (conditional
branch, w = 1, on a ``trajectory_steps`` grid with the probe timesteps merged in) and probed where it
passes each probe timestep: the x_t the sampler actually visits, at ``trajectory_steps`` scale NFE.
A caller holding samples (the final samples of a full scan, or real data) passes them as ``x0`` and
gets ``x_t = sqrt(a) x0 + sqrt(1 - a) n`` instead, with no trajectory cost (n is fresh noise per seed,
not x_T: a deterministic sampler's x0 is a function of x_T, and reusing it would correlate the two).
Every random draw continues the seed's own generator after x_T (x_T, then the noise n, then the probe
vectors), so draws never overlap and depend on the seed alone. (Offsetting the seed would not do:
torch's CPU generator keeps only the seed's low 32 bits.) What is *not* used: the model's one-step
prediction x0hat(x_T) re-noised. It is a posterior mean, blurrier and less varied than any sample, so
the x_t it gives are off-distribution.

**Law of total variance.** Within a condition, ``Var[x0] = E[Cov[x0 | x_t]] + Var[x0hat(x_t)]`` for
x_t from the model's marginal, at any t. :class:`PosteriorProfile` reports both terms and
``variance_share``: their sum over the grid's total variance, the same ratio as
:func:`collapsecheck.measure.pixel.seed_share` of final samples, estimated at a probe timestep.
At high noise the posterior term dominates, and it is a trace over D pixels: a few seeds suffice.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Optional, Sequence, Union

import torch

from ..load.conditions import ConditionSet
from ..model.denoiser import Denoiser
from ..errors import check_choice, first_line
from ..sample.grid import initial_noise
from ..model.schedule import MIN_ALPHA_BAR, Schedule, ddim_step, to_eps_and_x0

Method = Literal["jvp", "fd", "auto"]
METHODS = ("jvp", "fd", "auto")

#: measure metadata, as reports show it
HIGHER_IS_MORE_DIVERSE = True

#: default probe range: alpha-bar in [low, high], spread evenly in log-SNR (see the module docstring)
PROBE_ALPHA_BAR_RANGE = (0.1, 0.9)


#: floor of rms(x_t) in the finite-difference step, so a zero input still gets a nonzero step
MIN_FD_SCALE = 1e-3


def default_probe_timesteps(
    schedule: Schedule, count: int = 3, alpha_bar_range: tuple[float, float] = PROBE_ALPHA_BAR_RANGE
) -> torch.Tensor:
    """``count`` training timesteps, highest noise first, whose alpha-bar is spread evenly in log-SNR
    over ``alpha_bar_range`` (default [0.1, 0.9]: SNR from 1/9 to 9). Duplicates are merged.

    ``count=1`` gives the high-noise end, where a decoder and a healthy model differ most: for
    Gaussian data of std s the posterior variance is ``s^2 (1-a) / (a s^2 + 1 - a)``, so the ratio
    between two models tends to ``s_1^2 / s_2^2`` as a -> 0 and to 1 as a -> 1."""
    low, high = alpha_bar_range
    if not 0.0 < low <= high < 1.0:
        raise ValueError(f"alpha_bar_range must satisfy 0 < low <= high < 1, got {alpha_bar_range}")
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    lo, hi = math.log(low / (1 - low)), math.log(high / (1 - high))
    snr = [lo + (hi - lo) * i / max(1, count - 1) for i in range(count)]
    targets = torch.tensor([1.0 / (1.0 + math.exp(-s)) for s in snr], dtype=torch.float64)
    abar = schedule.alphas_cumprod
    index = (abar.unsqueeze(0) - targets.unsqueeze(1)).abs().argmin(1)
    return torch.unique(index).flip(0)


def rademacher(shape: Sequence[int], generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """+-1 entries, float32, CPU."""
    return torch.randint(0, 2, tuple(shape), generator=generator).float().mul_(2.0).sub_(1.0)


def posterior_variance_from_quadratic(q: torch.Tensor, alpha_bar: torch.Tensor, prediction_type: str) -> torch.Tensor:
    """Per-pixel posterior variance from ``q = tr(J_f) / D`` of the raw network output ``f``.

    The multiplied-out forms of the module docstring, in float64; nothing divides by sqrt(a) twice.
    """
    q = q.double()
    a = alpha_bar.double().to(q.device).clamp(MIN_ALPHA_BAR, 1.0)
    if prediction_type == "epsilon":
        return (1 - a) / a * (1 - (1 - a).sqrt() * q)
    if prediction_type == "v_prediction":
        return (1 - a) - (1 - a).pow(1.5) / a.sqrt() * q
    if prediction_type == "sample":
        return (1 - a) / a.sqrt() * q
    raise ValueError(f"unknown prediction type '{prediction_type}'")


def default_rel_step(dtype: torch.dtype) -> float:
    """The central-difference step relative to rms(x_t): ``eps^(1/3)`` of ``dtype``."""
    return float(torch.finfo(dtype).eps) ** (1.0 / 3.0)


def _timesteps_for(t: Union[int, torch.Tensor], batch: int) -> torch.Tensor:
    t = torch.as_tensor(t).long().cpu()
    return t.expand(batch).clone() if t.dim() == 0 else t


def _quadratic_jvp(denoiser: Denoiser, x, t, cond, v) -> torch.Tensor:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with torch.no_grad(), sdpa_kernel([SDPBackend.MATH]):
        _, jv = torch.func.jvp(lambda xx: denoiser(xx, t, cond), (x,), (v,))
    return (v.flatten(1).double() * jv.flatten(1).double()).sum(1)


def _quadratic_fd(denoiser: Denoiser, x, t, cond, v, rel_step: float) -> torch.Tensor:
    n = x.shape[0]
    h = rel_step * x.flatten(1).pow(2).mean(1).sqrt().clamp_min(MIN_FD_SCALE)
    hv = h.view((n,) + (1,) * (x.dim() - 1)) * v
    with torch.no_grad():
        out = denoiser(torch.cat([x + hv, x - hv]), torch.cat([t, t]), torch.cat([cond, cond]))
    diff = (out[:n].double() - out[n:].double()).flatten(1) / (2.0 * h.double().unsqueeze(1))
    return (v.flatten(1).double() * diff).sum(1)


def jacobian_quadratic(
    denoiser: Denoiser,
    x_t: torch.Tensor,
    t: Union[int, torch.Tensor],
    cond: torch.Tensor,
    vectors: torch.Tensor,
    method: Literal["jvp", "fd"],
    batch_size: int = 64,
    rel_step: Optional[float] = None,
) -> torch.Tensor:
    """``v_k^T J_f(x_b) v_k / D`` for probe vectors ``vectors`` (K, B, *sample_shape): (K, B), float64.

    ``J_f`` is the Jacobian of the raw network output with respect to x_t. ``batch_size`` counts
    network inputs: a JVP item is one, a finite-difference item two.
    """
    check_choice("method", method, ("jvp", "fd"))
    device = denoiser.device
    K, B = vectors.shape[:2]
    D = vectors[0, 0].numel()
    x = x_t.to(device).float()
    ts = _timesteps_for(t, B).to(device)
    cond = cond.to(device)
    step = default_rel_step(denoiser.dtype) if rel_step is None else float(rel_step)
    per_chunk = max(1, batch_size if method == "jvp" else batch_size // 2)
    items = K * B
    q = torch.empty(items, dtype=torch.float64, device=device)
    flat_v = vectors.reshape((items,) + tuple(vectors.shape[2:]))
    for i0 in range(0, items, per_chunk):
        i1 = min(items, i0 + per_chunk)
        b = torch.arange(i0, i1, device=device) % B
        v = flat_v[i0:i1].to(device=device, dtype=torch.float32)
        if method == "jvp":
            q[i0:i1] = _quadratic_jvp(denoiser, x[b], ts[b], cond[b], v)
        else:
            q[i0:i1] = _quadratic_fd(denoiser, x[b], ts[b], cond[b], v, step)
    return (q / D).view(K, B)


def resolve_method(
    denoiser: Denoiser, x_t: torch.Tensor, t: Union[int, torch.Tensor], cond: torch.Tensor
) -> tuple[str, Optional[str]]:
    """``("jvp", None)`` when a JVP runs on this model (tried on one sample), else ``("fd", why)``."""
    v = rademacher((1, 1) + tuple(x_t.shape[1:]), torch.Generator().manual_seed(0))
    try:
        jacobian_quadratic(denoiser, x_t[:1], _timesteps_for(t, x_t.shape[0])[:1], cond[:1], v, "jvp", 1)
    except (RuntimeError, NotImplementedError) as exc:
        first = first_line(exc)
        return "fd", f"forward-mode AD failed ({first}); finite differences used"
    return "jvp", None


def posterior_trace(
    denoiser: Denoiser,
    schedule: Schedule,
    x_t: torch.Tensor,
    t: Union[int, torch.Tensor],
    cond: torch.Tensor,
    probes: Union[int, torch.Tensor] = 4,
    method: Method = "auto",
    generator: Optional[torch.Generator] = None,
    batch_size: int = 64,
    rel_step: Optional[float] = None,
) -> torch.Tensor:
    """Per-sample ``tr(Cov[x0 | x_t]) / D``: (B,), float64, on the denoiser's device.

    ``t`` is one timestep or one per sample; ``cond`` holds one condition per sample, as the denoiser
    takes them. ``probes`` is the number K of Rademacher probes (drawn on the CPU from ``generator``)
    or the probe vectors themselves, (K, B, *sample_shape). ``method="auto"`` uses a JVP when it runs
    on this model and finite differences otherwise (:func:`resolve_method` tells which).
    """
    check_choice("method", method, METHODS)
    B = x_t.shape[0]
    ts = _timesteps_for(t, B)
    if isinstance(probes, int):
        if probes < 1:
            raise ValueError(f"probes must be at least 1, got {probes}")
        vectors = rademacher((probes, B) + tuple(x_t.shape[1:]), generator)
    else:
        vectors = probes
    if method == "auto":
        method, _ = resolve_method(denoiser, x_t, ts, cond)
    q = jacobian_quadratic(denoiser, x_t, ts, cond, vectors, method, batch_size, rel_step).mean(0)
    return posterior_variance_from_quadratic(q, schedule.alpha_bar(ts), schedule.prediction_type)


@dataclass
class PosteriorProfile:
    """Per-pixel posterior variance at each probe timestep and condition (x0 units squared)."""

    timesteps: torch.Tensor  # (P,), long, highest noise first
    alpha_bar: torch.Tensor  # (P,), float64
    posterior_var: torch.Tensor  # (P, C): mean over seeds of tr(Cov[x0 | x_t]) / D
    per_seed: torch.Tensor  # (P, C, S): tr(Cov[x0 | x_t]) / D of every cell
    x0hat_var: torch.Tensor  # (P, C): per-pixel variance of x0hat across seeds (ddof 1; 0 with one seed)
    variance_share: torch.Tensor  # (P, C): (posterior_var + x0hat_var) / the grid's total, a seed_share estimate
    method: str  # "jvp" or "fd": the method that ran
    method_note: Optional[str]  # why "auto" fell back to finite differences
    probes: int
    source: str  # "trajectory" (DDIM from x_T) or "x0" (forward-noised samples the caller passed)
    nfe: int  # forward evaluations over the grid: trajectory, x0hat at the probes, finite differences
    jvps: int  # Jacobian-vector products over the grid (each 5-10 forward evaluations' time on CPU)


def _forward(denoiser: Denoiser, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, batch_size: int) -> torch.Tensor:
    outs = []
    with torch.no_grad():
        for n0 in range(0, x.shape[0], batch_size):
            n1 = min(x.shape[0], n0 + batch_size)
            outs.append(denoiser(x[n0:n1], t.expand(n1 - n0), cond[n0:n1]))
    return torch.cat(outs)


def _seed_draws(
    seeds: Sequence[int], shape: Sequence[int], count: int, probes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per seed, continuing its generator after x_T: noise (S, *shape) and probe vectors
    (count, probes, S, *shape). Functions of the seed alone, shared by every condition."""
    noise, vectors = [], []
    for s in seeds:
        g = torch.Generator().manual_seed(int(s))
        torch.randn(tuple(shape), generator=g)  # x_T, as initial_noise draws it
        noise.append(torch.randn(tuple(shape), generator=g))
        vectors.append(rademacher((count, probes) + tuple(shape), g))
    return torch.stack(noise), torch.stack(vectors, dim=2)


def _variance_terms(x0hat: torch.Tensor, post: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x0hat (C, S, D) float64 and post (C, S) -> (x0hat_var (C,), variance_share (C,))."""
    C, S = x0hat.shape[:2]
    within = x0hat.var(dim=1, unbiased=True).mean(-1) if S > 1 else torch.zeros(C, dtype=torch.float64)
    pooled = x0hat.reshape(C * S, -1)
    between = pooled.var(dim=0, unbiased=True).mean() if C * S > 1 else torch.tensor(float("nan"))
    total = post.mean() + between
    return within, (post.mean(1) + within) / total


def posterior_profile(
    denoiser: Denoiser,
    schedule: Schedule,
    conds: ConditionSet,
    seeds: Sequence[int],
    timesteps: Optional[Sequence[int]] = None,
    probes: int = 4,
    batch_size: int = 64,
    method: Method = "auto",
    trajectory_steps: int = 10,
    x0: Optional[torch.Tensor] = None,
    rel_step: Optional[float] = None,
) -> PosteriorProfile:
    """Posterior variance of every (condition, seed) cell at ``timesteps`` (default
    :func:`default_probe_timesteps`), along the model's own DDIM trajectory from each seed's x_T, or
    at ``x_t = sqrt(a) x0 + sqrt(1 - a) n`` when samples ``x0`` (C, S, *sample_shape) are given (n drawn
    from the seed's generator after x_T, independent of x0).

    Results depend on the seeds alone, not on ``batch_size`` (network inputs per call) or chunking.
    Cost per (condition, seed): the trajectory's forward passes (``x0`` given: one per probe
    timestep), plus, per probe timestep, ``probes`` JVPs or ``2 * probes`` forward passes.
    """
    check_choice("method", method, METHODS)
    if probes < 1:
        raise ValueError(f"probes must be at least 1, got {probes}")
    device = denoiser.device
    C, S = len(conds), len(seeds)
    N = C * S
    shape = tuple(denoiser.sample_shape)
    if timesteps is None:
        probe_t = default_probe_timesteps(schedule)
    else:
        probe_t = torch.unique(torch.as_tensor(list(timesteps)).long()).flip(0)
    P = len(probe_t)
    x_T = initial_noise(seeds, shape).to(device).repeat(C, 1, 1, 1)
    cond = conds.values.to(device)[torch.arange(N, device=device) // S]
    if x0 is not None:
        if tuple(x0.shape) != (C, S) + shape:
            raise ValueError(f"x0 must have shape {(C, S) + shape}, got {tuple(x0.shape)}")
        path, source = probe_t, "x0"
        x0_flat = x0.reshape((N,) + shape).to(device).float()
    else:
        grid = schedule.timesteps(trajectory_steps)
        path = torch.unique(torch.cat([grid[grid > probe_t.min()], probe_t])).flip(0)
        source = "trajectory"
    abar_path = schedule.alpha_bar(path)
    clip = schedule.clip_range
    noise, vectors = _seed_draws(seeds, shape, P, probes)  # (S, *shape), (P, K, S, *shape)
    noise = noise.to(device).repeat(C, 1, 1, 1)
    cell_seed = torch.arange(N) % S

    if method == "auto":
        probe_x = x_T[:1] if x0 is None else (abar_path[0].sqrt() * x0_flat[:1] + (1 - abar_path[0]).sqrt() * noise[:1])
        method, note = resolve_method(denoiser, probe_x.float(), path[0], cond[:1])
        jvps = 1 if method == "jvp" else 0
    else:
        note, jvps = None, 0
    nfe = 0

    per_seed = torch.empty(P, C, S, dtype=torch.float64)
    x0hat_var = torch.empty(P, C, dtype=torch.float64)
    share = torch.empty(P, C, dtype=torch.float64)
    x = x_T.clone()
    p = 0
    for i, t in enumerate(path.tolist()):
        a = abar_path[i].float().to(device)
        if x0 is not None:
            x = a.sqrt() * x0_flat + (1 - a).sqrt() * noise
        t_dev = torch.tensor(t, device=device)
        out = _forward(denoiser, x, t_dev, cond, batch_size)
        nfe += N
        eps, x0hat = to_eps_and_x0(out, x, a, schedule.prediction_type)
        if p < P and t == int(probe_t[p]):
            v = vectors[p][:, cell_seed]  # (K, N, *shape)
            q = jacobian_quadratic(denoiser, x, t, cond, v, method, batch_size, rel_step).mean(0)
            post = posterior_variance_from_quadratic(q, abar_path[i].expand(N), schedule.prediction_type).cpu()
            per_seed[p] = post.view(C, S)
            x0hat_var[p], share[p] = _variance_terms(x0hat.double().cpu().view(C, S, -1), per_seed[p])
            if method == "jvp":
                jvps += N * probes
            else:
                nfe += 2 * N * probes
            p += 1
            if p == P:
                break
        if x0 is None:
            x = ddim_step(eps, x0hat, abar_path[i + 1].float().to(device), clip)
    return PosteriorProfile(
        timesteps=probe_t,
        alpha_bar=schedule.alpha_bar(probe_t),
        posterior_var=per_seed.mean(-1),
        per_seed=per_seed,
        x0hat_var=x0hat_var,
        variance_share=share,
        method=method,
        method_note=note,
        probes=probes,
        source=source,
        nfe=nfe,
        jvps=jvps,
    )
