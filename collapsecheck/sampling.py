"""Sample a grid of guidance scales x conditions x seeds with deterministic DDIM.

Every grid cell starts from the noise of its seed, drawn from its own CPU generator, so a
sample never depends on batch size, chunking or the order of the grid. At every step the
conditional and null halves of a chunk go through the network in one batch; the step loop
does no host-device synchronisation and no per-sample Python work.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from .conditions import ConditionSet
from .denoiser import Denoiser
from .errors import LoadError
from .schedule import Schedule, ddim_step, to_eps, to_eps_and_x0

Progress = Callable[[int], None]


@dataclass
class GridSamples:
    """Final samples and per-step eps statistics of a (guidance x condition x seed) grid."""

    guidances: tuple[float, ...]
    samples: torch.Tensor  # (W, C, S, *sample_shape), float32, on the sampling device
    eps_ratio: torch.Tensor  # (K, W, C, S): ||eps_c - eps_null|| / ||eps_null||
    eps_cos: torch.Tensor  # (K, W, C, S): cosine(eps_c - eps_null, eps_null)
    timesteps: torch.Tensor  # (K,), long, CPU
    nfe: int

    def at(self, guidance: float) -> int:
        """Index of a guidance scale in the grid."""
        return self.guidances.index(guidance)


def initial_noise(seeds: Sequence[int], shape: Sequence[int]) -> torch.Tensor:
    """x_T for each seed, (S, *shape), float32 on CPU: one generator per seed, device-independent."""
    return torch.stack([torch.randn(tuple(shape), generator=torch.Generator().manual_seed(int(s))) for s in seeds])


def _check_finite(tensor: torch.Tensor, what: str) -> None:
    if not bool(torch.isfinite(tensor).all()):
        raise LoadError(f"the model produced NaN or infinite values in {what}; try --dtype float32")


def sample_grid(
    denoiser: Denoiser,
    schedule: Schedule,
    conds: ConditionSet,
    seeds: Sequence[int],
    guidances: Sequence[float],
    steps: int,
    batch_size: int,
    progress: Progress | None = None,
) -> GridSamples:
    """Run DDIM for every (guidance, condition, seed) cell; ``batch_size`` counts network inputs."""
    device = denoiser.device
    W, C, S = len(guidances), len(conds), len(seeds)
    N = W * C * S
    x = initial_noise(seeds, denoiser.sample_shape).to(device).repeat(W * C, 1, 1, 1)
    cell = torch.arange(N, device=device)
    cond_index = (cell // S) % C
    scale = torch.tensor(list(guidances), dtype=torch.float32, device=device).repeat_interleave(C * S)
    scale = scale.view(N, 1, 1, 1)
    values, null = conds.values.to(device), conds.null.to(device)

    timesteps = schedule.timesteps(steps)
    t_dev = timesteps.to(device)
    abar = schedule.alpha_bar(timesteps).float().to(device)
    abar_prev = schedule.previous_alpha_bar(timesteps).float().to(device)
    clip = schedule.clip_sample_range if schedule.clip_sample else None
    ratio = torch.empty(len(timesteps), N, device=device)
    cosine = torch.empty(len(timesteps), N, device=device)
    chunk = max(1, batch_size // 2)

    with torch.inference_mode():
        for k in range(len(timesteps)):
            a, a_prev = abar[k], abar_prev[k]
            for n0 in range(0, N, chunk):
                n1 = min(N, n0 + chunk)
                xc = x[n0:n1]
                cond = torch.cat([values[cond_index[n0:n1]], null.expand((n1 - n0,) + tuple(null.shape[1:]))])
                out = denoiser(torch.cat([xc, xc]), t_dev[k].expand(2 * (n1 - n0)), cond)
                out_c, out_u = out.chunk(2)
                eps_c = to_eps(out_c, xc, a, schedule.prediction_type).flatten(1)
                eps_u = to_eps(out_u, xc, a, schedule.prediction_type).flatten(1)
                diff = eps_c - eps_u
                ratio[k, n0:n1] = diff.norm(dim=1) / eps_u.norm(dim=1).clamp_min(1e-12)
                cosine[k, n0:n1] = F.cosine_similarity(diff, eps_u, dim=1, eps=1e-12)
                guided = out_u + scale[n0:n1] * (out_c - out_u)
                eps, x0 = to_eps_and_x0(guided, xc, a, schedule.prediction_type)
                x[n0:n1] = ddim_step(eps, x0, a_prev, clip)
            if progress is not None:
                progress(1)
    _check_finite(x, "the samples")
    K = len(timesteps)
    return GridSamples(
        guidances=tuple(float(g) for g in guidances),
        samples=x.view((W, C, S) + tuple(denoiser.sample_shape)),
        eps_ratio=ratio.view(K, W, C, S),
        eps_cos=cosine.view(K, W, C, S),
        timesteps=timesteps,
        nfe=2 * N * K,
    )


@dataclass
class NullProbe:
    """eps of every condition and of the null at the same x_t, along the null branch's own trajectory."""

    timesteps: torch.Tensor  # (P,), long, CPU
    alpha_bar: torch.Tensor  # (P,), float64, CPU
    eps_cond: torch.Tensor  # (P, C, S, D)
    eps_null: torch.Tensor  # (P, S, D)
    nfe: int


def probe_null_branch(
    denoiser: Denoiser,
    schedule: Schedule,
    conds: ConditionSet,
    seeds: Sequence[int],
    steps: int,
    probe_steps: Sequence[int],
    batch_size: int,
    progress: Progress | None = None,
) -> NullProbe:
    """Follow the null branch alone (w = 0) from each seed; at ``probe_steps`` evaluate all conditions too."""
    device = denoiser.device
    C, S = len(conds), len(seeds)
    x = initial_noise(seeds, denoiser.sample_shape).to(device)
    values, null = conds.values.to(device), conds.null.to(device)
    timesteps = schedule.timesteps(steps)
    t_dev = timesteps.to(device)
    abar = schedule.alpha_bar(timesteps).float().to(device)
    abar_prev = schedule.previous_alpha_bar(timesteps).float().to(device)
    clip = schedule.clip_sample_range if schedule.clip_sample else None
    probes = sorted(set(int(p) for p in probe_steps))
    eps_cond, eps_null = [], []
    nfe = 0

    def run(xs: torch.Tensor, k: int, cond: torch.Tensor) -> torch.Tensor:
        outs = []
        for n0 in range(0, xs.shape[0], batch_size):
            n1 = min(xs.shape[0], n0 + batch_size)
            outs.append(denoiser(xs[n0:n1], t_dev[k].expand(n1 - n0), cond[n0:n1]))
        return torch.cat(outs)

    with torch.inference_mode():
        for k in range(len(timesteps)):
            a, a_prev = abar[k], abar_prev[k]
            out_u = run(x, k, null.expand((S,) + tuple(null.shape[1:])))
            nfe += S
            if k in probes:
                xs = x.repeat(C, 1, 1, 1)
                cond = values.repeat_interleave(S, dim=0)
                out_c = run(xs, k, cond)
                nfe += C * S
                eps_cond.append(to_eps(out_c, xs, a, schedule.prediction_type).view(C, S, -1))
                eps_null.append(to_eps(out_u, x, a, schedule.prediction_type).view(S, -1))
            eps, x0 = to_eps_and_x0(out_u, x, a, schedule.prediction_type)
            x = ddim_step(eps, x0, a_prev, clip)
            if progress is not None:
                progress(1)
            if k >= probes[-1]:
                break
    selected = timesteps[probes]
    return NullProbe(
        timesteps=selected,
        alpha_bar=schedule.alpha_bar(selected),
        eps_cond=torch.stack(eps_cond),
        eps_null=torch.stack(eps_null),
        nfe=nfe,
    )
