"""The noise schedule, prediction-type conversions and the deterministic DDIM step.

The schedule is read from a diffusers scheduler config (any DDPM-family scheduler: the betas,
their spacing and the prediction type are what matter). The conversions follow

    x_t = sqrt(abar) x0 + sqrt(1 - abar) eps,          v = sqrt(abar) eps - sqrt(1 - abar) x0.

Near t = T, ``sqrt(abar)`` is tiny, so ``x0`` is never formed by dividing by it when the model
predicts ``v`` or ``sample``; for ``epsilon`` models the division is unavoidable, and ``abar`` is
floored at :data:`MIN_ALPHA_BAR` so that zero-terminal-SNR schedules do not produce infinities.

Flow-matching and EDM scheduler configs give a schedule with a :class:`~collapsecheck.model.parametrization.NoiseTable`:
its alpha-bars are the VP equivalents of the model's noise levels, it presents ``v_prediction`` (the network's
outputs are converted by :func:`~collapsecheck.model.parametrization.vp_denoiser`), and its steps are spaced
``trailing`` from pure noise, each leading to the next, the last to alpha-bar 1.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional

import torch

from ..config import PREDICTION_TYPES
from ..errors import LoadError, check_choice
from .parametrization import FlowSampling, NoiseTable, noise_table


#: Smallest alpha-bar used in a division; keeps x0 = (x_t - sqrt(1-a) eps)/sqrt(a) finite at a = 0.
MIN_ALPHA_BAR = 1e-8


@dataclass(frozen=True)
class Schedule:
    """A discrete diffusion schedule: ``alphas_cumprod[t]`` for the training timesteps."""

    alphas_cumprod: torch.Tensor  # (T,), float64, CPU
    final_alpha_cumprod: float
    prediction_type: str
    clip_sample: bool
    clip_sample_range: float
    timestep_spacing: str
    steps_offset: int
    #: flow-matching and EDM models: their own noise levels per index; None for DDPM-family schedules
    table: Optional[NoiseTable] = None
    #: dynamic thresholding of x0 (Imagen), as the scheduler config asks: per sample, x0 is clipped to the
    #: ``dynamic_thresholding_ratio`` quantile s of |x0| (s in [1, sample_max_value]) and divided by s
    thresholding: bool = False
    dynamic_thresholding_ratio: float = 0.995
    sample_max_value: float = 1.0
    #: the sampler (:data:`collapsecheck.config.SAMPLERS`) and, for ``ddpm``, the config's variance type
    sampler: str = "ddim"
    variance_type: str = "fixed_small"

    @property
    def model_prediction(self) -> str:
        """What the network itself predicts (``prediction_type`` is what the samplers see)."""
        return self.prediction_type if self.table is None else self.table.prediction

    @property
    def num_train_timesteps(self) -> int:
        return int(self.alphas_cumprod.shape[0])

    def timesteps(self, steps: int) -> torch.Tensor:
        """The ``steps`` sampling timesteps, highest first, spaced as the scheduler config says."""
        sampling = None if self.table is None else self.table.sampling
        if sampling is not None and len(sampling) == steps:  # the pipeline's own steps
            return sampling.clone().long()
        scheduler = self._ddim(steps)
        return scheduler.timesteps.clone().long()

    def _ddim(self, steps: int):
        from diffusers import DDIMScheduler

        scheduler = DDIMScheduler(
            num_train_timesteps=self.num_train_timesteps,
            trained_betas=_betas_from_alphas_cumprod(self.alphas_cumprod).tolist(),
            timestep_spacing=self.timestep_spacing,
            steps_offset=self.steps_offset,
        )
        scheduler.set_timesteps(steps)
        return scheduler

    @property
    def clip_range(self) -> float | None:
        """The x0 clipping range the scheduler config asks for, or None."""
        return self.clip_sample_range if self.clip_sample else None

    def step_tensors(self, steps: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """For a ``steps``-step DDIM run: the timesteps (long, CPU), and alpha-bar at each step and at the
        step it leads to (float32, on ``device``)."""
        timesteps = self.timesteps(steps)
        abar = self.alpha_bar(timesteps).float().to(device)
        abar_prev = self.previous_alpha_bar(timesteps).float().to(device)
        return timesteps, abar, abar_prev

    def alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        """alpha-bar at integer timesteps ``t`` (any shape), float64."""
        return self.alphas_cumprod[t.long().cpu()]

    def previous_alpha_bar(self, timesteps: torch.Tensor) -> torch.Tensor:
        """alpha-bar of the step each timestep leads to, as diffusers' DDIM has it: ``t - T // steps``,
        or the final alpha-bar below zero. With a noise table, and for the ``ddpm`` sampler (as DDPMScheduler has it):
        the next of ``timesteps``, then alpha-bar 1."""
        if self.table is not None:
            return torch.cat([self.alphas_cumprod[timesteps[1:].long()], torch.ones(1, dtype=torch.float64)])
        if self.sampler == "ddpm":  # DDPMScheduler: the next timestep of the grid, alpha-bar 1 after the last
            return torch.cat([self.alphas_cumprod[timesteps[1:].long()], torch.ones(1, dtype=torch.float64)])
        prev_t = timesteps.long() - self.num_train_timesteps // len(timesteps)
        prev = self.alphas_cumprod[prev_t.clamp_min(0)].clone()
        prev[prev_t < 0] = self.final_alpha_cumprod
        return prev


def _betas_from_alphas_cumprod(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    alphas = alphas_cumprod.clone()
    alphas[1:] = alphas_cumprod[1:] / alphas_cumprod[:-1]
    return 1.0 - alphas


def schedule_from_config(config: Mapping[str, Any], prediction_type: str | None = None,
                         sampler: str = "ddim", sampling: Optional[FlowSampling] = None) -> Schedule:
    """Build a :class:`Schedule` from a diffusers scheduler config dict (dispatching on its ``_class_name``:
    flow-matching and EDM schedulers get a noise table, any other is read as DDPM-family); ``sampler`` is
    ``--sampler`` (:mod:`collapsecheck.model.sampler`); ``sampling``: a flow-matching model's pipeline step
    spacing (:func:`~collapsecheck.model.families.flow_sampling`)."""
    table = noise_table(config, prediction_type, sampling)
    if table is not None:
        return Schedule(alphas_cumprod=table.alpha_bar, final_alpha_cumprod=1.0, prediction_type="v_prediction",
                        clip_sample=False, clip_sample_range=1.0, timestep_spacing="trailing", steps_offset=0,
                        table=table, sampler=sampler)
    from diffusers import DDIMScheduler

    from ..quiet import quiet_diffusers

    prediction = prediction_type or config.get("prediction_type", "epsilon")
    check_choice("prediction_type", prediction, PREDICTION_TYPES)
    known = {k: v for k, v in config.items() if not k.startswith("_")}
    try:
        with quiet_diffusers():  # DDIMScheduler.from_config warns on keys of other schedulers
            scheduler = DDIMScheduler.from_config(known)
    except Exception as exc:  # a malformed config: beta schedule name, betas, ...
        raise LoadError(f"cannot build the noise schedule from the scheduler config: {exc}") from exc
    set_alpha_to_one = bool(config.get("set_alpha_to_one", True))
    alphas_cumprod = scheduler.alphas_cumprod.to(torch.float64)
    return Schedule(
        alphas_cumprod=alphas_cumprod,
        final_alpha_cumprod=1.0 if set_alpha_to_one else float(alphas_cumprod[0]),
        prediction_type=prediction,
        clip_sample=bool(config.get("clip_sample", False)),
        clip_sample_range=float(config.get("clip_sample_range", 1.0)),
        timestep_spacing=str(scheduler.config.timestep_spacing),
        steps_offset=int(scheduler.config.steps_offset),
        thresholding=bool(config.get("thresholding", False)),
        dynamic_thresholding_ratio=float(config.get("dynamic_thresholding_ratio", 0.995)),
        sample_max_value=float(config.get("sample_max_value", 1.0)),
        variance_type=str(config.get("variance_type") or "fixed_small"),
        sampler=sampler,
    )


def to_eps_and_x0(
    output: torch.Tensor, x_t: torch.Tensor, alpha_bar: torch.Tensor, prediction_type: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Convert a network output to (eps, x0). ``alpha_bar`` broadcasts against ``x_t``."""
    sqrt_a, sqrt_1ma = alpha_bar.clamp_min(0.0).sqrt(), (1.0 - alpha_bar).clamp_min(0.0).sqrt()
    if prediction_type == "epsilon":
        eps = output
        x0 = (x_t - sqrt_1ma * eps) / alpha_bar.clamp_min(MIN_ALPHA_BAR).sqrt()
    elif prediction_type == "v_prediction":
        x0 = sqrt_a * x_t - sqrt_1ma * output
        eps = sqrt_1ma * x_t + sqrt_a * output
    elif prediction_type == "sample":
        x0 = output
        eps = (x_t - sqrt_a * x0) / sqrt_1ma.clamp_min(MIN_ALPHA_BAR ** 0.5)
    else:  # pragma: no cover - validated in schedule_from_config
        raise ValueError(prediction_type)
    return eps, x0


def to_eps(output: torch.Tensor, x_t: torch.Tensor, alpha_bar: torch.Tensor, prediction_type: str) -> torch.Tensor:
    """The eps a network output implies (linear in the output for every prediction type)."""
    if prediction_type == "epsilon":
        return output
    return to_eps_and_x0(output, x_t, alpha_bar, prediction_type)[0]


def ddim_step(
    eps: torch.Tensor,
    x0: torch.Tensor,
    alpha_bar_prev: torch.Tensor,
    clip_range: float | None = None,
) -> torch.Tensor:
    """One deterministic DDIM step (eta = 0) from the (eps, x0) pair of one output: x at the previous t.

    As diffusers' DDIMScheduler does by default, a set ``clip_range`` clips x0 only; eps is kept.
    (The scan's samplers, dynamic thresholding included, are in :mod:`collapsecheck.model.sampler`.)
    """
    if clip_range is not None:
        x0 = x0.clamp(-clip_range, clip_range)
    return alpha_bar_prev.sqrt() * x0 + (1.0 - alpha_bar_prev).clamp_min(0.0).sqrt() * eps
