"""Format: your own architecture, ``--model module:function`` (or ``file.py:function``).

The function is called with the CHECKPOINT path (a string) and returns a :class:`CustomModel`
(or a dict with the same keys). It runs your code: pass only your own. The checked model travels in
``LoadedCheckpoint.custom``; :class:`collapsecheck.model.custom.CustomDenoiser` calls its network.

============================  ==============================================================
``network``                   ``network(x_t, t, cond) -> output``: x_t (B, C, H, W) float,
                              t (B,) integer timesteps in [0, T), cond (B, ...) rows of
                              ``conditions`` (or ``null``); output (B, C, H, W) in the
                              parametrization ``prediction_type`` names. An ``nn.Module`` is
                              moved to ``--device``/``--dtype``; a plain function is not.
``sample_shape``              (C, H, W) of x_t
``conditions``                (N, ...) float tensor, one row per condition (embeddings, images,
                              one-hot class vectors); CADS adds noise to these values
``null``                      (1, ...) or (...): the null condition guidance compares with
``alphas_cumprod``            (T,) alpha-bar per training timestep, or
``scheduler_config``          a diffusers scheduler config dict (one of the two; neither: the
                              DDPM default, noted)
``prediction_type``           ``"epsilon"`` (default), ``"v_prediction"`` or ``"sample"``
``labels``                    optional names of the conditions (default ``cond 0``, ...)
``condition_kind``            optional ``"cross_attn"`` (embeddings, default) or ``"concat"``
                              (images): which advice fits
``decode``                    optional ``decode(samples) -> images in [-1, 1]`` (latent models)
============================  ==============================================================
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch

from ..errors import LoadError, UsageError, check_choice
from .conditions import ConditionSet
from .files import hash_files, one_line as _one_line
from .loaded import LoadedCheckpoint
from .options import LoadOptions
from .scheduler import DEFAULT_SCHEDULER_CONFIG, DEFAULT_SCHEDULER_SOURCE, PREDICTION_TYPES


@dataclass
class CustomModel:
    """What a ``--model`` entry point returns (see the module docstring for each field)."""

    network: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
    sample_shape: Sequence[int]
    conditions: torch.Tensor
    null: torch.Tensor
    prediction_type: str = "epsilon"
    alphas_cumprod: Optional[torch.Tensor] = None
    scheduler_config: Optional[Dict[str, Any]] = None
    labels: Optional[Sequence[str]] = None
    condition_kind: str = "cross_attn"
    decode: Optional[Callable[[torch.Tensor], torch.Tensor]] = None


def load_entry_point(spec: str, flag: str = "--model") -> Callable[..., Any]:
    """``module:function`` or ``path/to/file.py:function``; ``flag`` names the option in errors.

    This runs the user's own code (their model, their metric), which is what they asked for.
    """
    if ":" not in spec:
        raise UsageError(f"{flag} {spec}: write module:function or file.py:function")
    where, name = spec.rsplit(":", 1)
    try:
        if where.endswith(".py"):
            path = Path(where)
            if not path.is_file():
                raise UsageError(f"{flag} {spec}: {path} does not exist")
            mod_name = "collapsecheck_user_" + hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
            module_spec = importlib.util.spec_from_file_location(mod_name, path)
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[mod_name] = module
            module_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(where)
    except UsageError:
        raise
    except Exception as exc:
        raise UsageError(f"{flag} {spec}: cannot import {where} ({type(exc).__name__}: {_one_line(exc)})") from None
    fn = getattr(module, name, None)
    if not callable(fn):
        raise UsageError(f"{flag} {spec}: {where} has no function {name}")
    return fn


NAME = "your own network (--model module:function)"


def detect(path: Path, options: LoadOptions) -> bool:
    """``--model`` was given: the user's function reads the checkpoint, whatever its layout."""
    return options.model is not None


def load(path: Path, options: LoadOptions) -> LoadedCheckpoint:
    return load_custom(options.model, str(path), options.prediction_type)


def load_custom(spec: str, checkpoint: str, prediction_override: Optional[str] = None) -> LoadedCheckpoint:
    """Call the entry point with ``checkpoint`` and turn its result into a LoadedCheckpoint (the checked
    :class:`CustomModel` in ``custom``)."""
    built = _call_entry_point(spec, checkpoint)
    notes: List[str] = [f"network built by --model {spec} (your code)"]
    prediction = prediction_override or built.prediction_type
    check_choice("--model prediction_type", prediction, PREDICTION_TYPES)
    sched, sched_source = _scheduler(built, spec, notes)
    sched["prediction_type"] = prediction
    conds = _conditions(built, spec)
    shape = tuple(int(d) for d in built.sample_shape)
    if len(shape) != 3:
        raise UsageError(f"--model {spec}: sample_shape must be (C, H, W), got {shape}")
    path = Path(checkpoint)
    return LoadedCheckpoint(
        model=built.network if isinstance(built.network, torch.nn.Module) else torch.nn.Identity(),
        model_class=f"custom ({spec})",
        model_config={"_class_name": "custom", "entry_point": spec, "sample_shape": list(shape)},
        scheduler_config=sched,
        scheduler_source=sched_source,
        source=str(path),
        notes=tuple(notes),
        content_hash=hash_files([path]) if path.is_file() else "",
        conditions=conds,
        decoder=built.decode,
        custom=dataclasses.replace(built, sample_shape=shape),
    )


def _call_entry_point(spec: str, checkpoint: str) -> CustomModel:
    """The entry point's result for ``checkpoint``, as a :class:`CustomModel` (a dict is checked and converted)."""
    fn = load_entry_point(spec)
    try:
        built = fn(checkpoint)
    except (UsageError, LoadError):
        raise
    except Exception as exc:
        raise LoadError(f"--model {spec} failed on {checkpoint}: {type(exc).__name__}: {_one_line(exc)}") from None
    if isinstance(built, dict):
        known = {f.name for f in dataclasses.fields(CustomModel)}
        unknown = sorted(set(built) - known)
        if unknown:
            raise UsageError(f"--model {spec} returned unknown keys {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        try:
            built = CustomModel(**built)
        except TypeError as exc:
            raise UsageError(f"--model {spec} returned an incomplete model: {_one_line(exc)}") from None
    if not isinstance(built, CustomModel):
        raise UsageError(f"--model {spec} returned a {type(built).__name__}; return a CustomModel or a dict")
    return built


def _scheduler(built: CustomModel, spec: str, notes: List[str]) -> Tuple[Dict[str, Any], str]:
    """The scheduler config from ``alphas_cumprod``, else ``scheduler_config``, else the DDPM default (noted)."""
    if built.alphas_cumprod is not None:
        abar = torch.as_tensor(built.alphas_cumprod, dtype=torch.float64).flatten()
        betas = abar.clone()
        betas[1:] = abar[1:] / abar[:-1]
        sched = {"_class_name": "DDPMScheduler", "num_train_timesteps": int(abar.numel()),
                 "trained_betas": (1.0 - betas).tolist(), "clip_sample": False}
        return sched, f"alphas_cumprod from --model {spec}"
    if built.scheduler_config is not None:
        return dict(built.scheduler_config), f"scheduler_config from --model {spec}"
    notes.append(f"--model gave no alphas_cumprod or scheduler_config; {DEFAULT_SCHEDULER_SOURCE}")
    return dict(DEFAULT_SCHEDULER_CONFIG), DEFAULT_SCHEDULER_SOURCE


def _conditions(built: CustomModel, spec: str) -> ConditionSet:
    values = torch.as_tensor(built.conditions)
    null = torch.as_tensor(built.null)
    if not values.is_floating_point():
        raise UsageError(f"--model {spec}: conditions must be a float tensor (embeddings, images or one-hot "
                         f"classes), got {values.dtype}")
    if values.dim() < 2 or values.shape[0] < 1:
        raise UsageError(f"--model {spec}: conditions must be (N, ...) with N >= 1, got {tuple(values.shape)}")
    if tuple(null.shape) == tuple(values.shape[1:]):
        null = null.unsqueeze(0)
    if tuple(null.shape) != (1,) + tuple(values.shape[1:]):
        raise UsageError(f"--model {spec}: null has shape {tuple(null.shape)}; it must be (1, *{tuple(values.shape[1:])})")
    kind = check_choice("--model condition_kind", built.condition_kind, ("cross_attn", "concat"))
    labels = tuple(built.labels) if built.labels is not None else tuple(f"cond {i}" for i in range(values.shape[0]))
    if len(labels) != values.shape[0]:
        raise UsageError(f"--model {spec}: {len(labels)} labels for {values.shape[0]} conditions")
    return ConditionSet(kind=kind, values=values.float(), null=null.float(), labels=labels,
                        source=f"--model {spec}", null_source=f"null from --model {spec}")
