"""Hutchinson quadratic forms ``v^T J_f v / D`` of a network's raw output ``f`` with respect to x_t.

The building block of :mod:`collapsecheck.measure.posterior`, whose docstring describes the two methods:
``"jvp"`` (forward-mode AD, exact up to rounding) and ``"fd"`` (central differences, two forward passes
per probe, with a step relative to the sample's RMS).
"""
from __future__ import annotations

from typing import Literal, Optional, Sequence, Union

import torch

from ..errors import check_choice
from ..model.denoiser import Denoiser

#: floor of rms(x_t) in the finite-difference step, so a zero input still gets a nonzero step
MIN_FD_SCALE = 1e-3


def rademacher(shape: Sequence[int], generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """+-1 entries, float32, CPU."""
    return torch.randint(0, 2, tuple(shape), generator=generator).float().mul_(2.0).sub_(1.0)


def default_rel_step(dtype: torch.dtype) -> float:
    """The central-difference step relative to rms(x_t): ``eps^(1/3)`` of ``dtype``."""
    return float(torch.finfo(dtype).eps) ** (1.0 / 3.0)


def timesteps_for(t: Union[int, torch.Tensor], batch: int) -> torch.Tensor:
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
    ts = timesteps_for(t, B).to(device)
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
