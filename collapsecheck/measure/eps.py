"""Measures on noise predictions: the eps-ratio profile and the null-branch test.

* eps ratio ``||eps_c - eps_null|| / ||eps_null||`` and the cosine between ``eps_c - eps_null`` and
  ``eps_null``, per timestep (Wen et al., ICLR 2024). Large ratios mean the condition pulls hard.
* Null-branch test (after ICG, Sadat et al., ICLR 2025). For a learned unconditional branch,
  Bayes' rule gives ``eps_null(x_t) = sum_c p(c | x_t) eps_c(x_t)``: the null prediction lies in the
  convex hull of the conditional ones, near their centroid where p(c | x_t) is flat (high noise).
  A null condition never trained is one more arbitrary condition, or garbage: it sits as far
  from the centroid as a condition does, or further. Both distances are reported in units of the
  conditions' own spread around their centroid, so they are scale free.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..sample.grid import NullProbe


@dataclass(frozen=True)
class NullBranchStats:
    """Null-branch distances per probe timestep, averaged over seeds (scale-free)."""

    timesteps: list[int]
    alpha_bar: list[float]
    centroid_gap: list[float]  # ||eps_null - mean_c eps_c|| / spread
    hull_residual: list[float]  # distance from eps_null to the convex hull of {eps_c}, / spread


def project_to_simplex(v: torch.Tensor) -> torch.Tensor:
    """Euclidean projection of each row of ``v`` onto the probability simplex (Duchi et al. 2008)."""
    u, _ = torch.sort(v, dim=-1, descending=True)
    css = u.cumsum(-1) - 1.0
    ind = torch.arange(1, v.shape[-1] + 1, device=v.device, dtype=v.dtype)
    cond = u - css / ind > 0
    rho = cond.to(v.dtype).cumsum(-1).argmax(-1, keepdim=True)  # last index where cond holds
    theta = css.gather(-1, rho) / (rho + 1).to(v.dtype)
    return (v - theta).clamp_min(0.0)


def hull_distance(points: torch.Tensor, target: torch.Tensor, iterations: int = 500) -> torch.Tensor:
    """Distance from ``target`` (B, D) to the convex hull of ``points`` (B, C, D), by projected gradient."""
    gram = points @ points.transpose(-1, -2)  # (B, C, C)
    b = (points @ target.unsqueeze(-1)).squeeze(-1)  # (B, C)
    step = 1.0 / torch.linalg.eigvalsh(gram)[..., -1:].clamp_min(1e-30)
    w = torch.full(b.shape, 1.0 / b.shape[-1], dtype=points.dtype, device=points.device)
    for _ in range(iterations):
        grad = (gram @ w.unsqueeze(-1)).squeeze(-1) - b
        w = project_to_simplex(w - step * grad)
    residual = target - (w.unsqueeze(-2) @ points).squeeze(-2)
    return residual.norm(dim=-1)


def null_branch_stats(probe: NullProbe) -> NullBranchStats:
    """Centroid gap and hull residual of eps_null among the conditional eps, per probe timestep."""
    eps_c = probe.eps_cond.double()  # (P, C, S, D)
    eps_u = probe.eps_null.double()  # (P, S, D)
    centroid = eps_c.mean(1, keepdim=True)
    centred_c = (eps_c - centroid).transpose(1, 2)  # (P, S, C, D)
    centred_u = eps_u - centroid.squeeze(1)  # (P, S, D)
    spread = centred_c.pow(2).sum(-1).mean(-1).sqrt().clamp_min(1e-30)  # (P, S)
    gap = centred_u.norm(dim=-1) / spread
    P, S, C, D = centred_c.shape
    hull = hull_distance(centred_c.reshape(P * S, C, D), centred_u.reshape(P * S, D)).view(P, S) / spread
    return NullBranchStats(
        timesteps=[int(t) for t in probe.timesteps],
        alpha_bar=[float(a) for a in probe.alpha_bar],
        centroid_gap=gap.mean(1).tolist(),
        hull_residual=hull.mean(1).tolist(),
    )
