"""Sample a grid of variants (guidance scales, recovery probes) x conditions x seeds with the scan's sampler
(deterministic DDIM by default; DDIM eta = 1 or DDPM ancestral: :mod:`collapsecheck.model.sampler`).

Every grid cell starts from the noise of its seed, drawn from its own CPU generator, so a
sample never depends on batch size, chunking or the order of the grid; a stochastic sampler's step noise
comes from each seed's own generator too (:mod:`collapsecheck.sample.noise`). At every step the
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
from ..model.sampler import is_stochastic, sampler_step
from ..model.schedule import Schedule, to_eps, to_eps_and_x0
from .noise import StepNoise
from ..profile import stage
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


@dataclass
class _Cells:
    """The per-cell inputs of a grid, cells flattened in (variant, condition, seed) order."""

    cond_index: torch.Tensor  # (N,): the condition of each cell
    variant_index: torch.Tensor  # (N,): the variant of each cell
    values: torch.Tensor  # the conditions, on the sampling device
    null: torch.Tensor  # the null condition (1, ...), or one per condition (C, ...) when paired_null
    paired_null: bool  # each condition has its own null (ControlNet (prompt, hint) pairs)
    w_plan: torch.Tensor  # (K, V): guidance scale per step and variant
    gamma_plan: torch.Tensor  # (K, V): CADS gamma per step and variant
    cond_noise: Optional[torch.Tensor]  # (N, *condition feature shape): CADS noise, scaled; None without CADS
    strength: Optional[torch.Tensor]  # (N,): ControlNet scale multipliers; None when all are 1


def _grid_cells(denoiser: Denoiser, schedule: Schedule, conds: ConditionSet, seeds: Sequence[int],
                variants: tuple[Variant, ...], timesteps: torch.Tensor) -> _Cells:
    device = denoiser.device
    V, C, S = len(variants), len(conds), len(seeds)
    cell = torch.arange(V * C * S, device=device)
    variant_index = cell // (C * S)
    w_plan, gamma_plan = (t.to(device) for t in step_plan(variants, timesteps, schedule.num_train_timesteps))
    strength = None  # ControlNet scale multipliers, per cell (conditional half; the null half is off anyway)
    if any(v.control_strength != 1.0 for v in variants):
        strength = torch.tensor([v.control_strength for v in variants], device=device)[variant_index]
    return _Cells(
        cond_index=(cell // S) % C, variant_index=variant_index,
        values=conds.values.to(device), null=conds.null.to(device), paired_null=conds.paired_null, w_plan=w_plan, gamma_plan=gamma_plan,
        cond_noise=_cads_noise(denoiser, conds, seeds, variants, variant_index), strength=strength,
    )


def _cads_noise(denoiser: Denoiser, conds: ConditionSet, seeds: Sequence[int], variants: tuple[Variant, ...],
                variant_index: torch.Tensor) -> Optional[torch.Tensor]:
    """Each cell's CADS condition noise times its variant's noise scale and the conditions' spread."""
    if not any(v.cads_noise > 0 for v in variants):
        return None
    device, N = variant_index.device, variant_index.shape[0]
    shape = denoiser.condition_feature_shape(conds)
    scale = torch.tensor([v.cads_noise for v in variants], device=device) * denoiser.condition_spread(conds)
    base = condition_noise(seeds, len(conds), shape).to(device).repeat(len(variants), *([1] * (1 + len(shape))))
    return base.view((N,) + tuple(shape)) * scale[variant_index].view((N,) + (1,) * len(shape))


def _guided_pair(denoiser: Denoiser, cells: _Cells, xc: torch.Tensor, t: torch.Tensor, k: int, n0: int,
                 n1: int, with_null: bool = True) -> torch.Tensor:
    """The network's conditional and null outputs for cells n0..n1 at step k, in one batch (2 (n1 - n0), ...);
    only the conditional half without ``with_null``. An embedded-guidance model gets each cell's guidance scale as
    its guidance input, in both halves."""
    n, halves = n1 - n0, 2 if with_null else 1
    extra = {}
    if cells.strength is not None:
        extra["strength"] = cells.strength[n0:n1].repeat(halves)
    if getattr(denoiser, "embedded_guidance", False):
        extra["guidance"] = cells.w_plan[k][cells.variant_index[n0:n1]].repeat(halves)
    index = cells.cond_index[n0:n1]
    nulls = cells.null[index] if cells.paired_null else cells.null.expand((n,) + tuple(cells.null.shape[1:]))
    cond = torch.cat([cells.values[index], nulls][:halves])
    perturb = None
    if cells.cond_noise is not None:
        gamma = torch.cat([cells.gamma_plan[k][cells.variant_index[n0:n1]], torch.ones(n, device=xc.device)][:halves])
        noise = cells.cond_noise[n0:n1]
        perturb = (gamma, torch.cat([noise, torch.zeros_like(noise)][:halves]))
    return denoiser(torch.cat([xc] * halves), t.expand(halves * n), cond, perturb, **extra)


def _guided(denoiser: Denoiser, schedule: Schedule, cells: _Cells, xc: torch.Tensor, t: torch.Tensor, k: int,
            span: tuple[int, int], a: torch.Tensor, w: torch.Tensor, with_null: bool):
    """(guided output, (eps ratio, cosine) or None) of cells ``span`` at step k: the conditional output alone
    without ``with_null`` (no eps statistics) and for an embedded-guidance model."""
    out = _guided_pair(denoiser, cells, xc, t, k, span[0], span[1], with_null)
    if not with_null:
        return out, None
    out_c, out_u = out.chunk(2)
    with stage("eps statistics"):
        stats = _eps_statistics(out_c, out_u, xc, a, schedule.prediction_type)
    return (out_c if getattr(denoiser, "embedded_guidance", False) else out_u + w * (out_c - out_u)), stats


def _eps_statistics(out_c: torch.Tensor, out_u: torch.Tensor, xc: torch.Tensor, a: torch.Tensor,
                    prediction_type: str) -> tuple[torch.Tensor, torch.Tensor]:
    """||eps_c - eps_null|| / ||eps_null|| and cosine(eps_c - eps_null, eps_null), per sample."""
    eps_c = to_eps(out_c, xc, a, prediction_type).flatten(1)
    eps_u = to_eps(out_u, xc, a, prediction_type).flatten(1)
    diff = eps_c - eps_u
    return diff.norm(dim=1) / eps_u.norm(dim=1).clamp_min(1e-12), F.cosine_similarity(diff, eps_u, dim=1, eps=1e-12)


def sample_grid(
    denoiser: Denoiser,
    schedule: Schedule,
    conds: ConditionSet,
    seeds: Sequence[int],
    guidances: Sequence[Union[float, Variant]],
    steps: int,
    batch_size: int,
    progress: Progress | None = None,
    with_null: bool = True,
) -> GridSamples:
    """Run DDIM for every (variant, condition, seed) cell; ``batch_size`` counts network inputs.

    Without ``with_null`` (every variant a plain w = 1) only the conditional half is evaluated: half the network
    evaluations, and no eps statistics (NaN).

    An embedded-guidance model (guidance-distilled Flux) steps with its conditional output at its variant's
    guidance input; the null half (the same guidance input) serves the eps statistics alone.

    ``guidances`` holds guidance scales (floats) or :class:`Variant` objects (recovery probes).
    """
    device = denoiser.device
    variants = as_variants(guidances)
    V, C, S = len(variants), len(conds), len(seeds)
    N = V * C * S
    x = initial_noise(seeds, denoiser.sample_shape).to(device).repeat(V * C, 1, 1, 1)
    timesteps, abar, abar_prev = schedule.step_tensors(steps, device)
    cells = _grid_cells(denoiser, schedule, conds, seeds, variants, timesteps)
    t_dev = timesteps.to(device)
    K, chunk = len(timesteps), max(1, batch_size // 2)
    if not with_null and not all(v.is_plain and v.scale == 1.0 for v in variants):
        raise ValueError("sample_grid(with_null=False) samples plain w = 1 variants only")
    ratio = torch.full((K, N), float("nan"), device=device)
    cosine = torch.full((K, N), float("nan"), device=device)
    noise = StepNoise(seeds, denoiser.sample_shape) if is_stochastic(schedule) else None
    with torch.inference_mode():
        for k in range(K):
            w_cells = cells.w_plan[k][cells.variant_index].view(N, 1, 1, 1)
            z = None if noise is None else noise.next().to(device).repeat(V * C, 1, 1, 1)
            for n0 in range(0, N, chunk):
                n1 = min(N, n0 + chunk)
                xc = x[n0:n1]
                guided, stats = _guided(denoiser, schedule, cells, xc, t_dev[k], k, (n0, n1), abar[k],
                                        w_cells[n0:n1], with_null)
                if stats is not None:
                    ratio[k, n0:n1], cosine[k, n0:n1] = stats
                eps, x0 = to_eps_and_x0(guided, xc, abar[k], schedule.prediction_type)
                x[n0:n1] = sampler_step(schedule, xc, eps, x0, abar[k], abar_prev[k], None if z is None else z[n0:n1],
                                        int(timesteps[k]) == 0)
            if progress is not None:
                progress(1)
    _check_finite(x, "the samples")
    return GridSamples(
        variants=variants,
        samples=x.view((V, C, S) + tuple(denoiser.sample_shape)),
        eps_ratio=ratio.view(K, V, C, S),
        eps_cos=cosine.view(K, V, C, S),
        timesteps=timesteps,
        nfe=(2 if with_null else 1) * N * K,
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


def _null_outputs(denoiser: Denoiser, xs: torch.Tensor, t: torch.Tensor, cond: torch.Tensor,
                  batch_size: int) -> torch.Tensor:
    """The network's outputs for ``xs`` at timestep ``t`` under ``cond`` (one row per sample), in batches."""
    outs = []
    for n0 in range(0, xs.shape[0], batch_size):
        n1 = min(xs.shape[0], n0 + batch_size)
        outs.append(denoiser(xs[n0:n1], t.expand(n1 - n0), cond[n0:n1]))
    return torch.cat(outs)


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
    probes = sorted(set(int(p) for p in probe_steps))
    prediction = schedule.prediction_type
    eps_cond, eps_null, nfe = [], [], 0
    noise = StepNoise(seeds, denoiser.sample_shape) if is_stochastic(schedule) else None
    with torch.inference_mode():
        for k in range(len(timesteps)):
            out_u = _null_outputs(denoiser, x, t_dev[k], null.expand((S,) + tuple(null.shape[1:])), batch_size)
            nfe += S
            if k in probes:
                xs = x.repeat(C, 1, 1, 1)
                out_c = _null_outputs(denoiser, xs, t_dev[k], values.repeat_interleave(S, dim=0), batch_size)
                nfe += C * S
                eps_cond.append(to_eps(out_c, xs, abar[k], prediction).view(C, S, -1))
                eps_null.append(to_eps(out_u, x, abar[k], prediction).view(S, -1))
            eps, x0 = to_eps_and_x0(out_u, x, abar[k], prediction)
            z = None if noise is None else noise.next().to(device)
            x = sampler_step(schedule, x, eps, x0, abar[k], abar_prev[k], z, int(timesteps[k]) == 0)
            if progress is not None:
                progress(1)
            if not run_to_end and (not probes or k >= probes[-1]):
                break
    if run_to_end:
        _check_finite(x, "the null branch's samples")
    return _null_probe(schedule, timesteps[probes], C, S, eps_cond, eps_null, nfe, x if run_to_end else None)


def _null_probe(schedule: Schedule, selected: torch.Tensor, C: int, S: int, eps_cond: list, eps_null: list, nfe: int,
                final: Optional[torch.Tensor]) -> NullProbe:
    shape = (0, C, S, 1)
    return NullProbe(
        timesteps=selected,
        alpha_bar=schedule.alpha_bar(selected),
        eps_cond=torch.stack(eps_cond) if eps_cond else torch.empty(shape),
        eps_null=torch.stack(eps_null) if eps_null else torch.empty(shape[:1] + shape[2:]),
        nfe=nfe,
        final=final,
    )
