"""The noise a stochastic sampler adds at every step, fixed by each seed alone.

Each seed has its own CPU generator for its step noise, seeded from the seed through a fixed mixing
function (a stream apart from the seed's x_T stream, which other measures continue), and every grid cell
with that seed -- every variant and condition, in every unit and process -- takes the same draw at the same
step. So a stochastic sample, like a DDIM one, depends on its seed alone: not on batch size, chunking, the
order of the seeds or the number of processes.
"""
from __future__ import annotations

from typing import Sequence

import torch

_MASK = 2**64 - 1


def noise_stream_seed(seed: int) -> int:
    """The generator seed of ``seed``'s step noise: splitmix64 of the seed, to the 32 bits torch's CPU
    generator keeps (its Mersenne twister is seeded with the low 32 bits)."""
    z = (int(seed) + 0x9E3779B97F4A7C15) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return (z ^ (z >> 31)) & 0xFFFFFFFF


class StepNoise:
    """``next()``: the next step's standard-normal noise of every seed, (S, *shape), float32 on CPU."""

    def __init__(self, seeds: Sequence[int], shape: Sequence[int]):
        self.shape = tuple(shape)
        self.generators = [torch.Generator().manual_seed(noise_stream_seed(s)) for s in seeds]

    def next(self) -> torch.Tensor:
        return torch.stack([torch.randn(self.shape, generator=g) for g in self.generators])
