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
    flat = samples.reshape(V * C * S, -1)
    nearest = torch.cat([nearest_centroid(flat[r:r + rows], centroids)
                         for r, rows in _chunks(flat.shape[0], _rows_per_chunk(C, flat.shape[1]))])
    own = torch.arange(C, device=samples.device).view(1, C, 1)
    return (nearest.view(V, C, S) == own).double().mean(-1)


#: float64 elements of the (rows, centroids, pixels) difference block one chunk of
#: :func:`centroid_adherence` holds (2^22: 32 MB), whatever the number of conditions and seeds
ADHERENCE_CHUNK_ELEMENTS = 2 ** 22


def nearest_centroid(rows: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Index of the nearest centroid (C, D) of each row (N, D), by the squared distance summed over D as
    the direct formula ``(x - c)^2`` computes it (exact: no ``|x|^2 - 2 x.c + |c|^2`` cancellation),
    with the centroids taken in chunks so that a block never holds more than ADHERENCE_CHUNK_ELEMENTS."""
    x = rows.double()
    per = max(1, ADHERENCE_CHUNK_ELEMENTS // max(1, x.shape[0] * x.shape[1]))
    d2 = torch.cat([(x.unsqueeze(1) - centroids[k:k + n].unsqueeze(0)).pow(2).sum(-1)
                    for k, n in _chunks(centroids.shape[0], per)], dim=1)  # (N, C)
    return d2.argmin(-1)


def _rows_per_chunk(conditions: int, pixels: int) -> int:
    return max(1, ADHERENCE_CHUNK_ELEMENTS // max(1, conditions * pixels))


def _chunks(total: int, size: int):
    """(start, length) of consecutive chunks of at most ``size`` covering ``range(total)``."""
    return [(start, min(size, total - start)) for start in range(0, total, size)]
