"""Sample a grid of variants (guidance scales, recovery probes) x conditions x seeds with deterministic DDIM.

Every grid cell starts from the noise of its seed, drawn from its own CPU generator, so a
sample never depends on batch size, chunking or the order of the grid. At every step the
conditional and null halves of a chunk go through the network in one batch; the step loop
does no host-device synchronisation and no per-sample Python work.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence, Union

import torch
import torch.nn.functional as F

from ..load.conditions import ConditionSet
from ..model.denoiser import Denoiser
from ..errors import LoadError
from ..model.schedule import Schedule, ddim_step, to_eps, to_eps_and_x0
from .variants import Variant, as_variants, step_plan

Progress = Callable[[int], None]


@dataclass
class GridSamples:
    """Final samples and per-step eps statistics of a (variant x condition x seed) grid."""

    variants: tuple[Variant, ...]
    samples: torch.Tensor  # (V, C, S, *sample_shape), float32, on the sampling device
    eps_ratio: torch.Tensor  # (K, V, C, S): ||eps_c - eps_null|| / ||eps_null||
    eps_cos: torch.Tensor  # (K, V, C, S): cosine(eps_c - eps_null, eps_null)
    timesteps: torch.Tensor  # (K,), long, CPU
    nfe: int

    def at(self, guidance: float) -> int:
        """Index of the plain variant with this guidance scale."""
        for i, v in enumerate(self.variants):
            if v.is_plain and v.scale == guidance:
                return i
        raise KeyError(f"no plain guidance scale {guidance:g} in the grid")


def initial_noise(seeds: Sequence[int], shape: Sequence[int]) -> torch.Tensor:
    """x_T for each seed, (S, *shape), float32 on CPU: one generator per seed, device-independent."""
    return torch.stack([torch.randn(tuple(shape), generator=torch.Generator().manual_seed(int(s))) for s in seeds])


def condition_noise(seeds: Sequence[int], conditions: int, shape: Sequence[int]) -> torch.Tensor:
    """Noise for the condition of each (condition, seed) cell, (C, S, *shape): one generator per cell."""
    cells = [
        torch.randn(tuple(shape), generator=torch.Generator().manual_seed((int(s) * 1_000_003 + c * 7919 + 17) % 2**63))
        for c in range(conditions)
        for s in seeds
    ]
    return torch.stack(cells).view((conditions, len(seeds)) + tuple(shape))


def _check_finite(tensor: torch.Tensor, what: str) -> None:
    # a float64 sum propagates NaN and inf without a full-size boolean temporary (86 MB at 1024 seeds of SD)
    if not bool(torch.isfinite(tensor.sum(dtype=torch.float64))):
        raise LoadError(f"the model produced NaN or infinite values in {what}; try --dtype float32")


def sample_grid(
    denoiser: Denoiser,
    schedule: Schedule,
    conds: ConditionSet,
    seeds: Sequence[int],
    guidances: Sequence[Union[float, Variant]],
    steps: int,
    batch_size: int,
    progress: Progress | None = None,
) -> GridSamples:
    """Run DDIM for every (variant, condition, seed) cell; ``batch_size`` counts network inputs.

    ``guidances`` holds guidance scales (floats) or :class:`Variant` objects (recovery probes).
    """
    device = denoiser.device
    variants = as_variants(guidances)
    V, C, S = len(variants), len(conds), len(seeds)
    N = V * C * S
    x = initial_noise(seeds, denoiser.sample_shape).to(device).repeat(V * C, 1, 1, 1)
    cell = torch.arange(N, device=device)
    cond_index = (cell // S) % C
    variant_index = cell // (C * S)
    values, null = conds.values.to(device), conds.null.to(device)

    timesteps, abar, abar_prev = schedule.step_tensors(steps, device)
    w_plan, gamma_plan = (t.to(device) for t in step_plan(variants, timesteps, schedule.num_train_timesteps))
    noisy = [i for i, v in enumerate(variants) if v.cads_noise > 0]
    cond_noise = None
    if noisy:
        shape = denoiser.condition_feature_shape(conds)
        scale = torch.tensor([v.cads_noise for v in variants], device=device) * denoiser.condition_spread(conds)
        base = condition_noise(seeds, C, shape).to(device).repeat(V, *([1] * (1 + len(shape))))
        cond_noise = base.view((N,) + tuple(shape)) * scale[variant_index].view((N,) + (1,) * len(shape))
    strength = None  # ControlNet scale multipliers, per cell (conditional half; the null half is off anyway)
    if any(v.control_strength != 1.0 for v in variants):
        per_variant = torch.tensor([v.control_strength for v in variants], device=device)
        strength = per_variant[variant_index]
    t_dev = timesteps.to(device)
    clip = schedule.clip_range
    ratio = torch.empty(len(timesteps), N, device=device)
    cosine = torch.empty(len(timesteps), N, device=device)
    chunk = max(1, batch_size // 2)

    with torch.inference_mode():
        for k in range(len(timesteps)):
            a, a_prev = abar[k], abar_prev[k]
            w_cells = w_plan[k][variant_index].view(N, 1, 1, 1)
            for n0 in range(0, N, chunk):
                n1 = min(N, n0 + chunk)
                xc = x[n0:n1]
                nulls = null[cond_index[n0:n1]] if conds.paired_null else null.expand((n1 - n0,) + tuple(null.shape[1:]))
                cond = torch.cat([values[cond_index[n0:n1]], nulls])
                perturb = None
                if cond_noise is not None:
                    gamma = torch.cat([gamma_plan[k][variant_index[n0:n1]], torch.ones(n1 - n0, device=device)])
                    perturb = (gamma, torch.cat([cond_noise[n0:n1], torch.zeros_like(cond_noise[n0:n1])]))
                if strength is None:
                    out = denoiser(torch.cat([xc, xc]), t_dev[k].expand(2 * (n1 - n0)), cond, perturb)
                else:
                    s = strength[n0:n1].repeat(2)
                    out = denoiser(torch.cat([xc, xc]), t_dev[k].expand(2 * (n1 - n0)), cond, perturb, strength=s)
                out_c, out_u = out.chunk(2)
                eps_c = to_eps(out_c, xc, a, schedule.prediction_type).flatten(1)
                eps_u = to_eps(out_u, xc, a, schedule.prediction_type).flatten(1)
                diff = eps_c - eps_u
                ratio[k, n0:n1] = diff.norm(dim=1) / eps_u.norm(dim=1).clamp_min(1e-12)
                cosine[k, n0:n1] = F.cosine_similarity(diff, eps_u, dim=1, eps=1e-12)
                guided = out_u + w_cells[n0:n1] * (out_c - out_u)
                eps, x0 = to_eps_and_x0(guided, xc, a, schedule.prediction_type)
                x[n0:n1] = ddim_step(eps, x0, a_prev, clip)
            if progress is not None:
                progress(1)
    _check_finite(x, "the samples")
    K = len(timesteps)
    return GridSamples(
        variants=variants,
        samples=x.view((V, C, S) + tuple(denoiser.sample_shape)),
        eps_ratio=ratio.view(K, V, C, S),
        eps_cos=cosine.view(K, V, C, S),
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
    #: the null branch's own final samples (S, *sample_shape), the w = 0 samples of every condition;
    #: None unless the probe ran to the end
    final: Optional[torch.Tensor] = None


def probe_null_branch(
    denoiser: Denoiser,
    schedule: Schedule,
    conds: ConditionSet,
    seeds: Sequence[int],
    steps: int,
    probe_steps: Sequence[int],
    batch_size: int,
    progress: Progress | None = None,
    run_to_end: bool = False,
) -> NullProbe:
    """Follow the null branch alone (w = 0) from each seed; at ``probe_steps`` evaluate all conditions too.

    With ``run_to_end`` the trajectory goes on to the final samples, which are the w = 0 samples of
    every condition (w = 0 ignores the condition), at one network evaluation per seed and step.
    """
    device = denoiser.device
    C, S = len(conds), len(seeds)
    x = initial_noise(seeds, denoiser.sample_shape).to(device)
    values, null = conds.values.to(device), conds.null.to(device)
    timesteps, abar, abar_prev = schedule.step_tensors(steps, device)
    t_dev = timesteps.to(device)
    clip = schedule.clip_range
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
            if not run_to_end and (not probes or k >= probes[-1]):
                break
    if run_to_end:
        _check_finite(x, "the null branch's samples")
    selected = timesteps[probes]
    shape = (0, len(conds), len(seeds), 1)
    return NullProbe(
        timesteps=selected,
        alpha_bar=schedule.alpha_bar(selected),
        eps_cond=torch.stack(eps_cond) if eps_cond else torch.empty(shape),
        eps_null=torch.stack(eps_null) if eps_null else torch.empty(shape[:1] + shape[2:]),
        nfe=nfe,
        final=x if run_to_end else None,
    )
