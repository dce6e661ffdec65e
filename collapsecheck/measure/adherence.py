"""Adherence: how well samples follow their condition (higher = more adherent).

The built-in measure is :func:`centroid_adherence`; ``--adherence module:function`` plugs in the user's own.
"""
from __future__ import annotations

from typing import Callable

import torch

from ..errors import UsageError, first_line

Adherence = Callable[[torch.Tensor, object], torch.Tensor]


def load_adherence(spec: str) -> Adherence:
    """Load ``module:function`` or ``path/to/file.py:function``: the user's adherence metric.

    The function takes (samples (C, S, channels, H, W) in [-1, 1] on the CPU, the ConditionSet)
    and returns (C,) or (C, S) scores, higher = more adherent to the condition.
    """
    from ..load.custom import load_entry_point

    return load_entry_point(spec, "--adherence")


def adherence_scores(fn: Adherence, samples: torch.Tensor, conds) -> torch.Tensor:
    """(V, C) mean adherence per variant and condition from the user's metric."""
    out = []
    for v in range(samples.shape[0]):
        try:
            scores = torch.as_tensor(fn(samples[v].cpu(), conds), dtype=torch.float64)
        except Exception as exc:
            raise UsageError(f"--adherence function failed: {first_line(exc)}") from None
        if scores.dim() == 2:
            scores = scores.mean(1)
        if scores.shape != (samples.shape[1],):
            raise UsageError(
                f"--adherence function returned shape {tuple(scores.shape)}; expected ({samples.shape[1]},) or "
                f"({samples.shape[1]}, {samples.shape[2]}) for {samples.shape[1]} conditions"
            )
        out.append(scores)
    return torch.stack(out)


def centroid_adherence(samples: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Built-in adherence: the share of each condition's samples whose nearest reference centroid is
    their own condition's. ``samples`` (V, C, S, ...), ``reference`` (C, S, ...) (the w = 1 samples,
    whose per-condition means are the centroids). Returns (V, C); needs C >= 2.

    It asks whether a sample still belongs to its condition rather than to another one, which is what
    lower guidance scales can lose while they bring diversity back.
    """
    V, C, S = samples.shape[:3]
    centroids = reference.reshape(C, S, -1).double().mean(1)  # (C, D)
    flat = samples.reshape(V, C, S, -1).double()
    d2 = (flat.unsqueeze(-2) - centroids.view(1, 1, 1, C, -1)).pow(2).sum(-1)  # (V, C, S, C)
    own = torch.arange(C, device=samples.device).view(1, C, 1)
    return (d2.argmin(-1) == own).double().mean(-1)
