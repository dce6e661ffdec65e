"""The scan's samplers: one step from x_t to the next x, as diffusers' schedulers take it.

``--sampler`` (:data:`collapsecheck.config.SAMPLERS`) picks one:

* ``ddim``: deterministic DDIM (eta = 0), the default; ``DDIMScheduler.step``.
* ``ddim-eta1``: DDIM with eta = 1, ``DDIMScheduler.step(eta=1)``: noise of variance
  ``sigma^2 = (1 - a_prev) / (1 - a) * (1 - a / a_prev)`` is added, and the direction to x_t shrinks to
  ``sqrt(1 - a_prev - sigma^2) eps``.
* ``ddpm``: DDPM ancestral sampling, ``DDPMScheduler.step``: the posterior mean
  ``sqrt(a_prev) beta / (1 - a) x0 + sqrt(alpha) (1 - a_prev) / (1 - a) x_t`` plus noise of the scheduler
  config's ``variance_type`` (``fixed_small``: the posterior variance; ``fixed_large``: beta), none at t = 0.
  With x0 left as predicted it is the same Markov chain as ``ddim-eta1``; with x0 clipped they differ (DDPM
  keeps x_t, DDIM keeps eps).

Every sampler constrains the predicted x0 as the scheduler config says, before the step: dynamic
``thresholding`` (:func:`threshold_x0`), else ``clip_sample`` to ``clip_sample_range``.
"""
from __future__ import annotations

import torch

from .schedule import Schedule

STOCHASTIC = ("ddim-eta1", "ddpm")
#: variance types read as fixed_large (``fixed_large_log``'s square root of a log is undefined in diffusers);
#: every other one (the learned ones need a predicted variance the scan does not take) as fixed_small
LARGE_VARIANCES = ("fixed_large", "fixed_large_log")


def is_stochastic(schedule: Schedule) -> bool:
    return schedule.sampler in STOCHASTIC


def threshold_x0(x0: torch.Tensor, ratio: float, max_value: float) -> torch.Tensor:
    """Dynamic thresholding (Imagen), as ``DDIMScheduler._threshold_sample``: per sample, s = the ``ratio``
    quantile of |x0|, clamped to [1, ``max_value``]; x0 clipped to [-s, s] and divided by s."""
    flat = x0.reshape(x0.shape[0], -1)
    work = flat if flat.dtype in (torch.float32, torch.float64) else flat.float()
    s = torch.quantile(work.abs(), ratio, dim=1).clamp(min=1, max=max_value).unsqueeze(1)
    return (work.clamp(-s, s) / s).to(x0.dtype).reshape(x0.shape)


def constrain_x0(x0: torch.Tensor, schedule: Schedule) -> torch.Tensor:
    """x0 thresholded or clipped as the scheduler config asks (thresholding first, as diffusers does)."""
    if schedule.thresholding:
        return threshold_x0(x0, schedule.dynamic_thresholding_ratio, schedule.sample_max_value)
    if schedule.clip_sample:
        return x0.clamp(-schedule.clip_sample_range, schedule.clip_sample_range)
    return x0


def noise_std(schedule: Schedule, a: torch.Tensor, a_prev: torch.Tensor, at_zero: bool) -> torch.Tensor:
    """The standard deviation of the noise one step adds (0 for ``ddim``; 0 for ``ddpm`` from timestep 0)."""
    if schedule.sampler == "ddim-eta1":
        return ((1 - a_prev) / (1 - a) * (1 - a / a_prev)).clamp_min(0.0).sqrt()
    if schedule.sampler == "ddpm" and not at_zero:
        beta = 1 - a / a_prev
        if schedule.variance_type in LARGE_VARIANCES:
            return beta.sqrt()
        return ((1 - a_prev) / (1 - a) * beta).clamp_min(1e-20).sqrt()
    return torch.zeros_like(a)


def sampler_step(schedule: Schedule, x_t: torch.Tensor, eps: torch.Tensor, x0: torch.Tensor, a: torch.Tensor,
                 a_prev: torch.Tensor, noise: torch.Tensor | None, at_zero: bool) -> torch.Tensor:
    """x at the step ``a_prev`` from x_t at ``a``, given the (eps, x0) a network output implies and, for the
    stochastic samplers, this step's standard-normal ``noise`` (ignored by ``ddim``); ``at_zero``: x_t is at timestep 0."""
    x0 = constrain_x0(x0, schedule)
    std = noise_std(schedule, a, a_prev, at_zero)
    if schedule.sampler == "ddpm":
        beta = 1 - a / a_prev
        mean = a_prev.sqrt() * beta / (1 - a) * x0 + (a / a_prev).sqrt() * (1 - a_prev) / (1 - a) * x_t
    else:
        mean = a_prev.sqrt() * x0 + (1 - a_prev - std ** 2).clamp_min(0.0).sqrt() * eps
    if schedule.sampler == "ddim" or noise is None:
        return mean
    return mean + std * noise
