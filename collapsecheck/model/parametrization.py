"""Flow-matching and EDM models seen as VP v-prediction models, so every DDIM sampler and probe runs unchanged.

Flow matching (diffusers' ``FlowMatchEulerDiscreteScheduler``): ``x = (1 - s) x0 + s eps``; the network
predicts ``u = eps - x0`` at timestep ``T s``. EDM (``EDMEulerScheduler``, ``EDMDPMSolverMultistepScheduler``):
``x = x0 + sigma eps``; the denoised ``x0 = c_skip x + c_out F(c_in x, c_noise)`` with diffusers'
``precondition_*`` factors (``c_skip = sd^2 / (sigma^2 + sd^2)``, ``c_out = +-sigma sd / sqrt(sigma^2 + sd^2)``,
+ for ``epsilon``, - for ``v_prediction``; ``c_in = 1 / sqrt(sigma^2 + sd^2)``, ``c_noise = log(sigma) / 4``,
``sd = sigma_data``). Both are the VP process ``x_vp = sqrt(a) x0 + sqrt(1 - a) eps`` at the alpha-bar of
the same signal-to-noise ratio, rescaled::

    flow: a = (1 - s)^2 / ((1 - s)^2 + s^2),   x = sqrt((1 - s)^2 + s^2) x_vp
    EDM:  a = 1 / (1 + sigma^2),               x = sqrt(1 + sigma^2) x_vp

and their outputs give the VP ``v = sqrt(a) eps - sqrt(1 - a) x0`` linearly, without dividing by a vanishing
``sqrt(a)``, ``s`` or ``sigma``::

    flow: v = (1 - 2 s) x_vp + sqrt((1 - s)^2 + s^2) u
    EDM:  v = sigma (1 - sd^2) / (sigma^2 + sd^2) x_vp -+ sqrt(1 + sigma^2) sd / sqrt(sigma^2 + sd^2) F

Deterministic DDIM in VP coordinates is then exactly the Euler step of each model's own ODE: DDIM keeps x0
and eps over a step, ``x' = (1 - s') x0 + s' eps = x + (s' - s) u`` (flow) and ``x' = x0 + sigma' eps``
(EDM Euler).

A :class:`NoiseTable` lists per discrete index ``0..T-1`` (``T = num_train_timesteps``, low noise first) the
model's noise level, the timestep value it is fed and the VP alpha-bar. ``index / T`` is the uniform
training time (the unshifted s for flow, as diffusers' training scripts draw it; one minus the Karras ramp for
EDM), so the rules that read normalised time ``t / T`` (interval guidance, CADS) read it as they do for DDPM.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

import torch

from ..errors import UsageError
from ..load.scheduler import EDM_SCHEDULERS, FLOW_SCHEDULERS


#: flow-matching config keys that only change diffusers' inference spacing; without a :class:`FlowSampling`
#: collapsecheck samples on the training table's shifted spacing instead (noted when set)
_FLOW_SPACING_KEYS = ("shift_terminal", "use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas")


@dataclass(frozen=True)
class FlowSampling:
    """How the model's own pipeline spaces a flow-matching model's steps, so that the scan's steps are the
    pipeline's: ``steps`` sigmas from diffusers' ``FlowMatchEulerDiscreteScheduler.set_timesteps`` (with
    FluxPipeline's ``sigmas = linspace(1, 1 / steps, steps)`` when ``flux_sigmas``), shifted by
    ``mu = calculate_shift(image_seq_len, ...)`` when the config asks for dynamic shifting."""

    steps: int
    image_seq_len: int
    pipeline: str
    flux_sigmas: bool = False
    #: the pipeline's default max_shift when the config has none (FluxPipeline 1.15, StableDiffusion3Pipeline 1.16)
    max_shift: float = 1.15

    def mu(self, config: Mapping[str, Any]) -> float:
        """``calculate_shift`` of the pipelines: linear in the image sequence length."""
        base_len, max_len = int(config.get("base_image_seq_len", 256)), int(config.get("max_image_seq_len", 4096))
        base, top = float(config.get("base_shift", 0.5)), float(config.get("max_shift", self.max_shift))
        m = (top - base) / (max_len - base_len)
        return self.image_seq_len * m + (base - m * base_len)


@dataclass(frozen=True, eq=False)
class NoiseTable:
    """A flow-matching or EDM model's noise levels over discrete indices, and its VP conversions."""

    kind: str
    """``"flow"`` or ``"edm"``."""
    prediction: str
    """What the network predicts: ``flow_velocity``, ``edm_epsilon`` or ``edm_v_prediction``."""
    noise: torch.Tensor
    """(T,) float64: s (flow) or sigma (EDM), increasing with the index."""
    model_timesteps: torch.Tensor
    """(T,) float64: the timestep value the network is fed (``T s``, or ``c_noise``)."""
    alpha_bar: torch.Tensor
    """(T,) float64: the VP alpha-bar of the same signal-to-noise ratio."""
    input_scale: torch.Tensor
    """(T,) float64: network input = ``input_scale * x_vp``."""
    v_from_x: torch.Tensor
    """(T,) float64: VP v = ``v_from_x * x_vp + v_from_out * output``."""
    v_from_out: torch.Tensor
    description: str
    """One line for the report: what the model is and how it is sampled."""
    notes: tuple = field(default_factory=tuple)
    sampling: Optional[torch.Tensor] = None
    """(N,) long: the indices of the pipeline's N sampling steps, highest noise first (flow matching scanned as a
    pipeline's model); None: steps are spaced over the table."""
    _device_cache: dict = field(default_factory=dict, repr=False, compare=False)

    def _on(self, device: torch.device) -> tuple[torch.Tensor, ...]:
        key = str(device)
        if key not in self._device_cache:
            self._device_cache[key] = tuple(
                t.float().to(device) for t in (self.input_scale, self.model_timesteps, self.v_from_x, self.v_from_out)
            )
        return self._device_cache[key]

    def model_input(self, x_vp: torch.Tensor, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The network's input and timestep (float32) for ``x_vp`` (B, ...) at table indices ``index`` (B,)."""
        scale, timesteps, _, _ = self._on(x_vp.device)
        i = index.long().to(x_vp.device)
        return x_vp * _column(scale[i], x_vp), timesteps[i]

    def to_v(self, output: torch.Tensor, x_vp: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """The VP v-prediction of the network ``output`` at ``x_vp`` and table indices ``index``."""
        _, _, from_x, from_out = self._on(x_vp.device)
        i = index.long().to(x_vp.device)
        return _column(from_x[i], x_vp) * x_vp.float() + _column(from_out[i], x_vp) * output.float()


def _column(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.view((-1,) + (1,) * (like.dim() - 1))


def noise_table(config: Mapping[str, Any], prediction_type: Optional[str] = None,
                sampling: Optional[FlowSampling] = None) -> Optional[NoiseTable]:
    """The :class:`NoiseTable` of a flow-matching or EDM scheduler config, or None for DDPM-family configs;
    ``sampling``: the pipeline's step spacing for a flow-matching model."""
    name = str(config.get("_class_name", ""))
    if name in FLOW_SCHEDULERS:
        if prediction_type is not None:
            raise UsageError(f"{name}: flow-matching models predict the velocity eps - x0; "
                             "--prediction-type does not apply to them")
        return flow_table(config, sampling)
    if name in EDM_SCHEDULERS:
        return edm_table(config, prediction_type)
    return None


def flow_table(config: Mapping[str, Any], sampling: Optional[FlowSampling] = None) -> NoiseTable:
    """Flow matching: index i is the unshifted s = (i + 1) / T, shifted as ``shift s / (1 + (shift - 1) s)``
    (diffusers' training table, low noise first), or by ``mu`` under dynamic shifting; index T - 1 is pure noise
    (s = 1, alpha-bar 0). With ``sampling``, the pipeline's ``sampling.steps`` sigmas replace the nearest entries
    (each within half an index) and are the sampling steps (:attr:`NoiseTable.sampling`)."""
    name = config.get("_class_name", "flow matching")
    if config.get("invert_sigmas"):
        raise UsageError(f"{name} with invert_sigmas=True is not supported")
    T = int(config.get("num_train_timesteps", 1000))
    shift = float(config.get("shift", 1.0))
    mu = None
    if config.get("use_dynamic_shifting"):
        if sampling is None:
            raise UsageError(f"{name} with use_dynamic_shifting=True shifts by the image size; scan it as a "
                             "pipeline's transformer (its image size decides the shift)")
        mu = sampling.mu(config)
        shift = math.exp(mu) if config.get("time_shift_type", "exponential") == "exponential" else mu
    if T < 2 or not shift > 0:
        raise UsageError(f"{name}: num_train_timesteps must be >= 2 and shift > 0, got {T} and {shift:g}")
    u = torch.arange(1, T + 1, dtype=torch.float64) / T
    s = shift * u / (1 + (shift - 1) * u)  # the exponential time shift with sigma 1 is this with shift e^mu
    notes, index = [], None
    if sampling is not None:
        s, index = _with_pipeline_sigmas(config, s, sampling, mu)
    spacing = [k for k in _FLOW_SPACING_KEYS if config.get(k)]
    if spacing and sampling is None:
        notes.append(f"the scheduler config's {', '.join(spacing)} (diffusers' inference spacing) is not followed: "
                     "sampling steps are spaced evenly over the shifted training table")
    shifted = f"shift {shift:g}" if mu is None else (f"dynamic shift mu {mu:.4g} for image sequence length "
                                                     f"{sampling.image_seq_len}")
    steps = (f"at {sampling.pipeline}'s sigmas for {sampling.steps} steps" if sampling is not None
             else "spaced evenly over the shifted training table")
    return _flow(s, T, f"flow matching ({name}, {shifted}): sampled as VP DDIM, which is the flow-matching Euler step, "
                       f"{steps}; velocity converted to VP v-prediction", tuple(notes), index)


def _flow(s: torch.Tensor, T: int, description: str, notes: tuple, sampling: Optional[torch.Tensor]) -> NoiseTable:
    n2 = (1 - s) ** 2 + s ** 2
    return NoiseTable(kind="flow", prediction="flow_velocity", noise=s, model_timesteps=s * T,
                      alpha_bar=(1 - s) ** 2 / n2, input_scale=n2.sqrt(), v_from_x=1 - 2 * s, v_from_out=n2.sqrt(),
                      description=description, notes=notes, sampling=sampling)


def _with_pipeline_sigmas(config: Mapping[str, Any], s: torch.Tensor, sampling: FlowSampling,
                          mu: Optional[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """The table ``s`` with the pipeline's sigmas in their nearest entries, and those entries (highest first)."""
    import numpy as np
    from diffusers import FlowMatchEulerDiscreteScheduler

    from ..quiet import quiet_diffusers

    N = int(sampling.steps)
    with quiet_diffusers():  # a Heun config builds the Euler scheduler too: the scan steps with Euler
        scheduler = FlowMatchEulerDiscreteScheduler.from_config({k: v for k, v in config.items()
                                                                 if not k.startswith("_")})
    sigmas = np.linspace(1.0, 1 / N, N) if sampling.flux_sigmas else None
    scheduler.set_timesteps(N, sigmas=sigmas, mu=mu)
    wanted = scheduler.sigmas[:-1].double()  # the last, 0, is where the final step lands (alpha-bar 1)
    index = (s.unsqueeze(0) - wanted.unsqueeze(1)).abs().argmin(1)
    if N > 1 and not bool((index[:-1] > index[1:]).all()):
        raise UsageError(f"--steps {N}: more steps than the flow-matching table of {s.numel()} timesteps can hold "
                         "apart; use fewer steps")
    s = s.clone()
    s[index] = wanted
    return s, index


def edm_table(config: Mapping[str, Any], prediction_type: Optional[str] = None) -> NoiseTable:
    """EDM: index i has sigma at the Karras ramp ``1 - i / (T - 1)`` (or exponential spacing), so index 0 is
    ``sigma_min`` and index T - 1 is ``sigma_max``."""
    name = config.get("_class_name", "EDM")
    prediction = prediction_type or str(config.get("prediction_type", "epsilon"))
    if prediction not in ("epsilon", "v_prediction"):
        raise UsageError(f"{name}: prediction_type must be epsilon or v_prediction (EDM preconditioning), "
                         f"got '{prediction}'")
    T = int(config.get("num_train_timesteps", 1000))
    sigma_min, sigma_max = float(config.get("sigma_min", 0.002)), float(config.get("sigma_max", 80.0))
    sd, rho = float(config.get("sigma_data", 0.5)), float(config.get("rho", 7.0))
    schedule = str(config.get("sigma_schedule", "karras"))
    if T < 2 or not 0 < sigma_min < sigma_max or not sd > 0:
        raise UsageError(f"{name}: needs num_train_timesteps >= 2, 0 < sigma_min < sigma_max and sigma_data > 0")
    ramp = 1 - torch.arange(T, dtype=torch.float64) / (T - 1)  # 1 at index 0 (sigma_min), 0 at T - 1
    if schedule == "karras":
        sigma = (sigma_max ** (1 / rho) + ramp * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    elif schedule == "exponential":
        sigma = torch.linspace(math.log(sigma_min), math.log(sigma_max), T, dtype=torch.float64).exp()
    else:
        raise UsageError(f"{name}: sigma_schedule must be karras or exponential, got '{schedule}'")
    sign = 1.0 if prediction == "epsilon" else -1.0
    r = (1 + sigma ** 2).sqrt()
    d = (sigma ** 2 + sd ** 2).sqrt()
    return NoiseTable(
        kind="edm",
        prediction=f"edm_{prediction}",
        noise=sigma,
        model_timesteps=0.25 * sigma.log(),
        alpha_bar=1 / r ** 2,
        input_scale=r / d,
        v_from_x=sigma * (1 - sd ** 2) / d ** 2,
        v_from_out=-sign * r * sd / d,
        description=f"EDM ({name}, {prediction}, sigma {sigma_min:g}..{sigma_max:g}, sigma_data {sd:g}, "
                    f"{schedule}): sampled as VP DDIM, which is Euler on the EDM ODE; outputs converted to VP "
                    "v-prediction",
    )


class VPDenoiser:
    """A flow-matching or EDM model's :class:`~collapsecheck.model.denoiser.Denoiser` as a VP v-prediction one:
    ``self(x_vp, index, cond, perturb)`` feeds the network its own input scale and timestep and returns the VP v.
    Every other attribute (device, sample shape, decoder, condition helpers) is the wrapped denoiser's."""

    def __init__(self, inner: Any, table: NoiseTable):
        self.inner = inner
        self.table = table

    def __call__(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, perturb=None, **extra) -> torch.Tensor:
        index = t.expand(x.shape[0]) if t.dim() == 0 else t
        x_in, t_in = self.table.model_input(x.float(), index)
        return self.table.to_v(self.inner(x_in, t_in, cond, perturb, **extra), x, index)

    def __getattr__(self, name: str):
        return getattr(self.__dict__["inner"], name)


def vp_denoiser(denoiser: Any, schedule: Any) -> Any:
    """``denoiser`` wrapped for ``schedule``'s noise table, or itself (DDPM-family schedules, already wrapped)."""
    table = getattr(schedule, "table", None)
    if table is None or isinstance(denoiser, VPDenoiser):
        return denoiser
    return VPDenoiser(denoiser, table)
