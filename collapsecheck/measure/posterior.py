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
measure no longer tells a decoder from a healthy model.

**Never below zero.** A true posterior covariance is positive semi-definite, so ``tr(Cov) >= 0``; for an epsilon
model that is ``q <= 1 / sqrt(1 - a)``. A learned network need not satisfy it (its eps is not the exact score: its
Jacobian is neither symmetric nor bounded so), the Hutchinson estimate of ``q`` is noisy, and the factor
``(1 - a) / a`` (9 at a = 0.1) multiplies whatever excess there is: that is how real models gave -0.94 and -1.05.
The raw mean over the (condition, seed) cells is kept (``posterior_var_raw``) with its standard error (over the
cells: seed and probe noise together); the variance reported, and used in ``variance_share``, is that mean
clamped at 0. A raw mean below zero by more than two standard errors says the network's x0hat is not a
posterior mean there (``clamped_note``), not that the variance is negative.

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
from .jacobian import jacobian_quadratic, rademacher, timesteps_for
from .pixel import grid_variance
from ..sample.grid import initial_noise
from ..model.sampler import constrain_x0
from ..model.schedule import MIN_ALPHA_BAR, Schedule, ddim_step, to_eps_and_x0

Method = Literal["jvp", "fd", "auto"]
METHODS = ("jvp", "fd", "auto")

#: measure metadata, as reports show it
HIGHER_IS_MORE_DIVERSE = True

#: default probe range: alpha-bar in [low, high], spread evenly in log-SNR (see the module docstring)
PROBE_ALPHA_BAR_RANGE = (0.1, 0.9)


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


def resolve_method(
    denoiser: Denoiser, x_t: torch.Tensor, t: Union[int, torch.Tensor], cond: torch.Tensor
) -> tuple[str, Optional[str]]:
    """``("jvp", None)`` when a JVP runs on this model (tried on one sample), else ``("fd", why)``."""
    v = rademacher((1, 1) + tuple(x_t.shape[1:]), torch.Generator().manual_seed(0))
    try:
        jacobian_quadratic(denoiser, x_t[:1], timesteps_for(t, x_t.shape[0])[:1], cond[:1], v, "jvp", 1)
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
    ts = timesteps_for(t, B)
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
    posterior_var: torch.Tensor  # (P, C): mean over seeds of tr(Cov[x0 | x_t]) / D, clamped at 0
    per_seed: torch.Tensor  # (P, C, S): tr(Cov[x0 | x_t]) / D of every cell (raw estimates: may be < 0)
    x0hat_var: torch.Tensor  # (P, C): per-pixel variance of x0hat across seeds (ddof 1; 0 with one seed)
    variance_share: torch.Tensor  # (P, C): (posterior_var + x0hat_var) / the grid's total, a seed_share estimate
    method: str  # "jvp" or "fd": the method that ran
    method_note: Optional[str]  # why "auto" fell back to finite differences
    probes: int
    source: str  # "trajectory" (DDIM from x_T) or "x0" (forward-noised samples the caller passed)
    nfe: int  # forward evaluations over the grid: trajectory, x0hat at the probes, finite differences
    jvps: int  # Jacobian-vector products over the grid (each 5-10 forward evaluations' time on CPU)

    def summary(self, p: int) -> dict:
        """Probe timestep ``p`` over every (condition, seed) cell: the posterior variance (raw mean clamped at
        0), its raw mean and standard error, the mean x0hat variance and variance share, and a note when the
        raw mean is below zero."""
        cells = self.per_seed[p].flatten()
        raw = float(cells.mean())
        stderr = float(cells.std(unbiased=True)) / len(cells) ** 0.5 if len(cells) > 1 else None
        note = None
        if raw < 0:
            beyond = stderr is not None and raw < -2 * stderr
            note = (f"raw estimate {raw:.3g} < 0 clamped to 0" + (
                " (more than 2 standard errors below: the network's x0hat is not a posterior mean here)"
                if beyond else " (within 2 standard errors of 0: estimation noise)"))
        return {"posterior_var": max(raw, 0.0), "posterior_var_raw": raw, "posterior_var_stderr": stderr,
                "x0hat_var": float(self.x0hat_var[p].mean()), "variance_share": float(self.variance_share[p].mean()),
                "posterior_note": note}


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
    grid = grid_variance(x0hat) if S > 1 else torch.tensor(float("nan"))  # as seed_share's denominator
    post_c = post.mean(1).clamp_min(0.0)  # a covariance's trace is never negative (module docstring)
    total = post_c.mean() + grid
    return within, (post_c + within) / total


def _probe_timesteps(schedule: Schedule, timesteps: Optional[Sequence[int]]) -> torch.Tensor:
    """The probe timesteps, unique, highest noise first (default :func:`default_probe_timesteps`)."""
    if timesteps is None:
        return default_probe_timesteps(schedule)
    return torch.unique(torch.as_tensor(list(timesteps)).long()).flip(0)


def _x_t_path(schedule: Schedule, probe_t: torch.Tensor, trajectory_steps: int, x0: Optional[torch.Tensor],
              cells: tuple, device: torch.device) -> tuple[torch.Tensor, str, Optional[torch.Tensor]]:
    """(the timesteps evaluated, highest noise first; the source; ``x0`` flattened to (N, *shape) or None).

    ``cells`` is (C, S, *sample_shape). Without ``x0`` the path is the DDIM trajectory on a
    ``trajectory_steps`` grid with the probe timesteps merged in; with it, the probe timesteps alone."""
    if x0 is None:
        grid = schedule.timesteps(trajectory_steps)
        return torch.unique(torch.cat([grid[grid > probe_t.min()], probe_t])).flip(0), "trajectory", None
    if tuple(x0.shape) != tuple(cells):
        raise ValueError(f"x0 must have shape {tuple(cells)}, got {tuple(x0.shape)}")
    return probe_t, "x0", x0.reshape((cells[0] * cells[1],) + tuple(cells[2:])).to(device).float()


def _start(seeds: Sequence[int], shape: tuple, C: int, P: int, probes: int, first_alpha_bar: torch.Tensor,
           x0_flat: Optional[torch.Tensor], device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x at the path's first timestep (N, *shape): x_T, or ``x0_flat`` noised; the noise (N, *shape); the
    probe vectors (P, K, S, *shape). Cells in (condition, seed) order, every condition with the same seeds."""
    x = initial_noise(seeds, shape).to(device).repeat(C, 1, 1, 1)
    noise, vectors = _seed_draws(seeds, shape, P, probes)  # (S, *shape), (P, K, S, *shape)
    noise = noise.to(device).repeat(C, 1, 1, 1)
    if x0_flat is not None:
        x = first_alpha_bar.sqrt() * x0_flat + (1 - first_alpha_bar).sqrt() * noise
    return x, noise, vectors


def _profile_method(denoiser: Denoiser, method: Method, first_x: torch.Tensor, t: torch.Tensor,
                    cond: torch.Tensor) -> tuple[str, Optional[str], int]:
    """(method that runs, why "auto" fell back, JVPs spent deciding): "auto" is tried on one sample."""
    if method != "auto":
        return method, None, 0
    method, note = resolve_method(denoiser, first_x.float(), t, cond[:1])
    return method, note, 1 if method == "jvp" else 0


def _probe_cells(denoiser: Denoiser, schedule: Schedule, x: torch.Tensor, t: int, alpha_bar: torch.Tensor,
                 cond: torch.Tensor, vectors: torch.Tensor, x0hat: torch.Tensor, method: str, batch_size: int,
                 rel_step: Optional[float], C: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """At one probe timestep: per-cell posterior variance (C, S), x0hat variance (C,), variance share (C,)."""
    N = x.shape[0]
    q = jacobian_quadratic(denoiser, x, t, cond, vectors, method, batch_size, rel_step).mean(0)
    post = posterior_variance_from_quadratic(q, alpha_bar.expand(N), schedule.prediction_type).cpu().view(C, -1)
    x0hat_var, share = _variance_terms(x0hat.double().cpu().view(C, N // C, -1), post)
    return post, x0hat_var, share


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
    C, S, shape = len(conds), len(seeds), tuple(denoiser.sample_shape)
    N = C * S
    probe_t = _probe_timesteps(schedule, timesteps)
    P = len(probe_t)
    path, source, x0_flat = _x_t_path(schedule, probe_t, trajectory_steps, x0, (C, S) + shape, device)
    abar_path = schedule.alpha_bar(path)
    x, noise, vectors = _start(seeds, shape, C, P, probes, abar_path[0], x0_flat, device)
    cond = conds.values.to(device)[torch.arange(N, device=device) // S]
    method, note, jvps = _profile_method(denoiser, method, x[:1], path[0], cond)
    per_seed, x0hat_var, share = (torch.empty(size, dtype=torch.float64) for size in ((P, C, S), (P, C), (P, C)))
    nfe, p = 0, 0
    for i, t in enumerate(path.tolist()):
        a = abar_path[i].float().to(device)
        if x0_flat is not None:
            x = a.sqrt() * x0_flat + (1 - a).sqrt() * noise
        eps, x0hat = to_eps_and_x0(_forward(denoiser, x, torch.tensor(t, device=device), cond, batch_size), x, a,
                                   schedule.prediction_type)
        nfe += N
        if p < P and t == int(probe_t[p]):
            v = vectors[p][:, torch.arange(N) % S]  # (K, N, *shape): each cell gets its seed's probes
            per_seed[p], x0hat_var[p], share[p] = _probe_cells(denoiser, schedule, x, t, abar_path[i], cond, v,
                                                               x0hat, method, batch_size, rel_step, C)
            jvps, nfe = (jvps + N * probes, nfe) if method == "jvp" else (jvps, nfe + 2 * N * probes)
            p += 1
            if p == P:
                break
        if x0_flat is None:
            x = ddim_step(eps, constrain_x0(x0hat, schedule), abar_path[i + 1].float().to(device))
    return PosteriorProfile(
        timesteps=probe_t, alpha_bar=schedule.alpha_bar(probe_t), posterior_var=per_seed.mean(-1).clamp_min(0.0),
        per_seed=per_seed, x0hat_var=x0hat_var, variance_share=share, method=method, method_note=note,
        probes=probes, source=source, nfe=nfe, jvps=jvps,
    )
