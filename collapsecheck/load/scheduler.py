"""Scheduler configs: where a checkpoint's scheduler comes from, and which family it is.

Order of precedence (:func:`resolve_scheduler`): ``--scheduler``, a pipeline's ``scheduler/``, the safetensors
metadata (``scheduler_config``), ``scheduler_config.json`` beside the weights, else diffusers' ``DDPMScheduler()``
defaults, noted. ``--prediction-type`` overrides the stored ``prediction_type`` (:func:`apply_prediction_type`).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Tuple

from ..config import PREDICTION_TYPES
from ..errors import LoadError, UsageError, check_choice
from .files import json_in, json_metadata, read_json

if TYPE_CHECKING:
    from .layout import Located

FLOW_SCHEDULERS = ("FlowMatchEulerDiscreteScheduler", "FlowMatchHeunDiscreteScheduler")
EDM_SCHEDULERS = ("EDMEulerScheduler", "EDMDPMSolverMultistepScheduler")

#: The scheduler assumed when a checkpoint ships none: diffusers' ``DDPMScheduler()`` defaults.
DEFAULT_SCHEDULER_CONFIG: Mapping[str, Any] = {
    "_class_name": "DDPMScheduler",
    "num_train_timesteps": 1000,
    "beta_start": 0.0001,
    "beta_end": 0.02,
    "beta_schedule": "linear",
    "trained_betas": None,
    "variance_type": "fixed_small",
    "clip_sample": True,
    "prediction_type": "epsilon",
    "thresholding": False,
    "dynamic_thresholding_ratio": 0.995,
    "clip_sample_range": 1.0,
    "sample_max_value": 1.0,
    "timestep_spacing": "leading",
    "steps_offset": 0,
    "rescale_betas_zero_snr": False,
}
DEFAULT_SCHEDULER_SOURCE = "assumed default: DDPM linear betas 1e-4..0.02, 1000 steps, epsilon"


def scheduler_flag(scheduler: Any) -> Tuple[Dict[str, Any], str]:
    """The scheduler config ``--scheduler`` names (a file, or a folder holding ``scheduler_config.json``)."""
    path = json_in(Path(scheduler), "scheduler_config.json", "--scheduler")
    return read_json(path, UsageError, "--scheduler"), str(path)


def resolve_scheduler(
    scheduler: Optional[Any], located: "Located", metadata: Mapping[str, str], notes: List[str]
) -> Tuple[Dict[str, Any], str]:
    """The scheduler config and its source, in the documented order of precedence."""
    if scheduler is not None:
        return scheduler_flag(scheduler)
    for root in located.pipeline_roots:
        path = root / "scheduler" / "scheduler_config.json"
        if path.is_file():
            return read_json(path, LoadError, "scheduler config"), str(path)
    stored = json_metadata(dict(metadata), "scheduler_config", located.files[0])
    if stored is not None:
        return stored, f"{located.files[0]} (safetensors metadata)"
    beside = located.weights_dir / "scheduler_config.json"
    if beside.is_file():
        return read_json(beside, LoadError, "scheduler config"), str(beside)
    notes.append(f"no scheduler config found; {DEFAULT_SCHEDULER_SOURCE} (pass --scheduler to set it)")
    return dict(DEFAULT_SCHEDULER_CONFIG), DEFAULT_SCHEDULER_SOURCE


def apply_prediction_type(
    cfg: Dict[str, Any], source: str, override: Optional[str], notes: List[str]
) -> Dict[str, Any]:
    """``cfg`` with ``--prediction-type`` applied, or the stored one checked (``epsilon`` assumed, noted, when none
    is stored; flow-matching schedulers have none)."""
    cfg = dict(cfg)
    stored = cfg.get("prediction_type")
    if override is not None:
        if stored is not None and stored != override:
            notes.append(f"prediction_type '{override}' from --prediction-type overrides '{stored}' in {source}")
        elif stored is None:
            notes.append(f"prediction_type '{override}' from --prediction-type")
        cfg["prediction_type"] = override
        return cfg
    if stored is None and cfg.get("_class_name") in FLOW_SCHEDULERS:
        return cfg  # flow matching predicts the velocity eps - x0; there is no prediction_type to assume
    if stored is None:
        notes.append(f"{source} names no prediction_type; assumed 'epsilon' (the diffusers default)")
        cfg["prediction_type"] = "epsilon"
        return cfg
    check_choice(f"prediction_type in {source} (override with --prediction-type)", str(stored), PREDICTION_TYPES)
    return cfg
