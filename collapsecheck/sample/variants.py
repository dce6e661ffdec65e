"""Sampling variants: how one column of the grid guides its samples, step by step.

A plain guidance scale ``w`` is one variant. The recovery probes are others:

* **interval** (after Kynkäänniemi et al. 2024): the condition is off (w = 0, the null branch alone)
  in the highest-noise steps, so the seed lays out the image, then guided at ``w`` afterwards.
* **CADS** (condition-annealed sampling, Sadat et al. ICLR 2024): Gaussian noise is mixed into the
  condition early in sampling, ``c' = sqrt(gamma) c + s sqrt(1 - gamma) sigma_c n``, with
  ``gamma`` = 1 below ``tau1`` and 0 above ``tau2`` in normalised time ``t / T`` (1 = pure noise),
  linear between; ``sigma_c`` is the spread of the condition representation (the class embedding
  table for class labels) and ``n`` is drawn once per grid cell from its seed. No rescaling (psi = 0).
* **ControlNet scale**: for ControlNet scans, the ControlNet's residuals at a fraction of the
  conditioning scale (does a weaker hint bring the seeds back?).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

#: CADS defaults (the paper's class-conditional setting)
CADS_TAU1 = 0.6
CADS_TAU2 = 0.9
CADS_NOISE = 0.25
#: the interval probe leaves the condition off above this normalised time
INTERVAL_START = 0.7


@dataclass(frozen=True)
class Variant:
    """One column of the sampling grid."""

    name: str
    scale: float
    #: steps with normalised time t / T above this use ``scale_early`` (None: never)
    switch_time: float | None = None
    scale_early: float = 0.0
    #: CADS noise scale s (0: no noise on the condition)
    cads_noise: float = 0.0
    cads_tau: tuple[float, float] = (CADS_TAU1, CADS_TAU2)
    #: multiplier of a ControlNet's conditioning scale (1: as configured)
    control_strength: float = 1.0

    @property
    def is_plain(self) -> bool:
        return self.switch_time is None and self.cads_noise == 0.0 and self.control_strength == 1.0


def plain(scale: float) -> Variant:
    return Variant(name=f"w={scale:g}", scale=float(scale))


def interval(scale: float, start: float = INTERVAL_START) -> Variant:
    return Variant(name="interval", scale=float(scale), switch_time=start, scale_early=0.0)


def cads(scale: float, noise: float = CADS_NOISE, tau: tuple[float, float] = (CADS_TAU1, CADS_TAU2)) -> Variant:
    return Variant(name="cads", scale=float(scale), cads_noise=float(noise), cads_tau=tau)


def control_strength(scale: float, strength: float) -> Variant:
    return Variant(name=f"controlnet x{strength:g}", scale=float(scale), control_strength=float(strength))


def as_variants(items: Sequence) -> tuple[Variant, ...]:
    """Floats become plain guidance scales; variants pass through."""
    return tuple(v if isinstance(v, Variant) else plain(v) for v in items)


def step_plan(variants: Sequence[Variant], timesteps: torch.Tensor, num_train_timesteps: int):
    """Per step and variant: the guidance scale and the CADS gamma, both (K, V) float32."""
    time = timesteps.double() / num_train_timesteps  # (K,), 1 = pure noise
    scales, gammas = [], []
    for v in variants:
        w = torch.full_like(time, v.scale)
        if v.switch_time is not None:
            w = torch.where(time > v.switch_time, torch.full_like(time, v.scale_early), w)
        scales.append(w)
        if v.cads_noise > 0:
            lo, hi = v.cads_tau
            gammas.append(((hi - time) / (hi - lo)).clamp(0.0, 1.0))
        else:
            gammas.append(torch.ones_like(time))
    return torch.stack(scales, 1).float(), torch.stack(gammas, 1).float()
