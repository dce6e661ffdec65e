"""How much the first x0 prediction still depends on the seed (after NeMo, Hintersdorf et al., NeurIPS 2024).

A model that has become a deterministic decoder predicts nearly the same x0hat from every initial
noise x_T, already at the first steps; NeMo reads memorization off 10 seeds x 1 step. For each
condition, x0hat is taken from the same network call DDIM makes on the scan's own step grid, for every
seed, and compared across seeds:

* ``share`` (higher = more diverse): per-pixel variance of x0hat across this condition's seeds over the
  per-pixel variance across all conditions and seeds, :func:`collapsecheck.measure.pixel.seed_share`
  applied to x0hat. Near 0 when the seed no longer matters; NaN with a single condition.
* ``rms`` (higher = more diverse): mean pairwise RMS distance of x0hat across seeds, in x0 units.
* ``corr`` (higher = less diverse): mean over seed pairs of the Pearson correlation of the two x0hat
  maps (each centred on its own pixel mean and scaled to unit norm), a structural-similarity substitute
  for NeMo's SSCD features that needs no weights. A map with no spatial variance counts as
  uncorrelated.

**Which step.** At t = T an epsilon model's ``x0hat = (x_T - sqrt(1-a) eps)/sqrt(a)`` divides by
sqrt(a), about 0.07 for Stable Diffusion's last timestep (0 for zero-terminal-SNR schedules): whatever
x_T-dependence the prediction has is amplified by 1/sqrt(a), and so are its errors. The probe is
therefore the first step of the ``steps`` grid whose alpha-bar reaches ``min_alpha_bar`` (default
0.05, sqrt(a) ~ 0.22), reached by running the model's own DDIM trajectory (the same steps, guidance and
clipping as :func:`collapsecheck.sample.grid.sample_grid`, so its x0hat is exactly what a full scan
computes there). ``step_index`` picks a step explicitly; ``step_index=0`` is NeMo's literal one step.
x0hat is measured unclipped: it is a posterior mean, not an image.

Cost: ``(step_index + 1)`` network evaluations per (condition, seed), twice that when ``guidance != 1``
(the null branch).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from ..load.conditions import ConditionSet
from ..model.denoiser import Denoiser
from .pixel import mean_pairwise_rms, seed_share, upper_mean
from ..sample.grid import initial_noise
from ..model.schedule import Schedule, ddim_step, to_eps_and_x0

#: the first step probed is the first whose alpha-bar reaches this (see the module docstring)
MIN_ALPHA_BAR = 0.05

#: measure metadata, as reports show it
DIRECTIONS = {"share": "higher is more diverse", "rms": "higher is more diverse", "corr": "higher is less diverse"}


@dataclass
class FirstStep:
    """x0hat of every (condition, seed) at one early step, and its diversity across seeds."""

    step_index: int  # index in the ``steps`` grid of the probed step
    timestep: int
    alpha_bar: float
    guidance: float
    x0hat: torch.Tensor  # (C, S, *sample_shape), float32, CPU
    share: torch.Tensor  # (C,), float64: seed-variance share of x0hat (NaN when C < 2)
    rms: torch.Tensor  # (C,), float64: mean pairwise RMS distance across seeds
    corr: torch.Tensor  # (C,), float64: mean pairwise Pearson correlation across seeds
    nfe: int  # network evaluations over the grid


def probe_step_index(schedule: Schedule, steps: int, min_alpha_bar: float = MIN_ALPHA_BAR) -> int:
    """Index of the first step of the ``steps`` DDIM grid whose alpha-bar is at least ``min_alpha_bar``
    (the last step when none is)."""
    abar = schedule.alpha_bar(schedule.timesteps(steps))
    reached = torch.nonzero(abar >= min_alpha_bar)
    return int(reached[0]) if len(reached) else steps - 1


def mean_pairwise_correlation(x: torch.Tensor, seed_dim: int = 0) -> torch.Tensor:
    """Mean over seed pairs of the Pearson correlation between maps: ``x`` is (..., S, *dims)."""
    flat = x.reshape(x.shape[: seed_dim + 1] + (-1,)).double()
    flat = flat - flat.mean(-1, keepdim=True)
    flat = flat / flat.norm(dim=-1, keepdim=True).clamp_min(1e-300)
    return upper_mean(flat @ flat.transpose(-1, -2))


def first_step(
    denoiser: Denoiser,
    schedule: Schedule,
    conds: ConditionSet,
    seeds: Sequence[int],
    guidance: float = 1.0,
    steps: int = 25,
    min_alpha_bar: float = MIN_ALPHA_BAR,
    step_index: Optional[int] = None,
    batch_size: int = 64,
) -> FirstStep:
    """x0hat of every (condition, seed) at the probed step of the ``steps`` DDIM grid, at ``guidance``.

    Results depend on the seeds alone, not on ``batch_size`` (network inputs per call).
    """
    k_probe = probe_step_index(schedule, steps, min_alpha_bar) if step_index is None else int(step_index)
    if not 0 <= k_probe < steps:
        raise ValueError(f"step_index must be in [0, {steps - 1}], got {step_index}")
    if len(seeds) < 2:
        raise ValueError("first_step compares seeds: pass at least two")
    device = denoiser.device
    C, S = len(conds), len(seeds)
    N = C * S
    shape = tuple(denoiser.sample_shape)
    x = initial_noise(seeds, shape).to(device).repeat(C, 1, 1, 1)
    values = conds.values.to(device)[torch.arange(N, device=device) // S]
    guided = float(guidance) != 1.0
    timesteps, abar, abar_prev = schedule.step_tensors(steps, device)
    clip = schedule.clip_range
    per_call = max(1, batch_size // 2) if guided else max(1, batch_size)
    nfe = 0
    with torch.no_grad():
        for k in range(k_probe + 1):
            t = timesteps[k].to(device)
            eps = torch.empty_like(x)
            x0hat = torch.empty_like(x)
            for n0 in range(0, N, per_call):
                n1 = min(N, n0 + per_call)
                xc, n = x[n0:n1], n1 - n0
                if guided:
                    null = conds.null.to(device).expand((n,) + tuple(conds.null.shape[1:]))
                    both = denoiser(torch.cat([xc, xc]), t.expand(2 * n), torch.cat([values[n0:n1], null]))
                    out_c, out_u = both.chunk(2)
                    out = out_u + float(guidance) * (out_c - out_u)
                else:
                    out = denoiser(xc, t.expand(n), values[n0:n1])
                eps[n0:n1], x0hat[n0:n1] = to_eps_and_x0(out, xc, abar[k], schedule.prediction_type)
            nfe += N * (2 if guided else 1)
            if k < k_probe:
                x = ddim_step(eps, x0hat, abar_prev[k], clip)
    maps = x0hat.view((C, S) + shape).float().cpu()
    share = seed_share(maps, seed_dim=1) if C >= 2 else torch.full((C,), float("nan"), dtype=torch.float64)
    return FirstStep(
        step_index=k_probe,
        timestep=int(timesteps[k_probe]),
        alpha_bar=float(schedule.alpha_bar(timesteps[k_probe])),
        guidance=float(guidance),
        x0hat=maps,
        share=share,
        rms=mean_pairwise_rms(maps, seed_dim=1),
        corr=mean_pairwise_correlation(maps, seed_dim=1),
        nfe=nfe,
    )
