"""``--model helpers_hostile:FUNCTION`` entry points for tests/test_hostile_inputs.py: the healthy Gaussian model
of :mod:`helpers_gate` whose forward returns NaN (or Inf) once sampling reaches a late timestep."""
from __future__ import annotations

from dataclasses import replace

import torch

from collapsecheck.load.custom import CustomModel
from helpers_gate import OneHotGaussian, _model

#: the forward returns non-finite outputs for timesteps below this (mid-scan: the first steps are finite)
BREAKS_BELOW = 500


class BreaksMidway(torch.nn.Module):
    def __init__(self, inner: OneHotGaussian, value: float):
        super().__init__()
        self.inner, self.value = inner, value

    def forward(self, x, t, cond):
        out = self.inner(x, t, cond)
        late = (t < BREAKS_BELOW).view(-1, *([1] * (out.dim() - 1)))
        return torch.where(late, torch.full_like(out, self.value), out)


def _breaking(value: float) -> CustomModel:
    model = _model(0.4, "arbitrary")
    return replace(model, network=BreaksMidway(model.network, value))


def nan_midway(checkpoint: str) -> CustomModel:
    return _breaking(float("nan"))


def inf_midway(checkpoint: str) -> CustomModel:
    return _breaking(float("inf"))
