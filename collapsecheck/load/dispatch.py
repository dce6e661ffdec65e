"""Load a diffusion checkpoint from disk into a :class:`LoadedCheckpoint`: :func:`load_checkpoint`.

The formats it accepts, and how one is picked, are listed in :mod:`collapsecheck.load.registry`. The loader is
strict: weights must match the config key for key and shape for shape, every assumption it makes is written into
``notes``, and it never writes to disk or touches the network (every ``from_pretrained`` runs with
``local_files_only=True``; a hub id is looked up in the local cache only).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from .attach import attach_pipeline
from .build import refuse_non_finite
from .loaded import ControlParts, LoadedCheckpoint
from .options import LoadOptions, PathLike, check_options
from .registry import pick_format
from .scheduler import DEFAULT_SCHEDULER_CONFIG, DEFAULT_SCHEDULER_SOURCE

__all__ = ["ControlParts", "DEFAULT_SCHEDULER_CONFIG", "DEFAULT_SCHEDULER_SOURCE", "LoadOptions", "LoadedCheckpoint",
           "load_checkpoint", "load_with_options"]


def load_checkpoint(
    path: PathLike,
    *,
    config: Optional[PathLike] = None,
    scheduler: Optional[PathLike] = None,
    weights: str = "auto",
    prediction_type: Optional[str] = None,
    base: Optional[PathLike] = None,
    lora: Optional[PathLike] = None,
    lora_scale: float = 1.0,
    prompts: Optional[PathLike] = None,
    negative_prompt: Optional[str] = None,
    model: Optional[str] = None,
    controlnet_scale: float = 1.0,
    revision: Optional[str] = None,
) -> LoadedCheckpoint:
    """Load the checkpoint at ``path`` (a file or folder, or a Hugging Face hub id from the local cache; see
    :mod:`collapsecheck.load.registry`).

    Args:
        path: a diffusers model folder, a pipeline / training folder holding ``unet/``, or a weight file; or a hub
            id ``org/name`` that is no local path, read from the local Hugging Face cache (:mod:`collapsecheck.load.hub`).
        config: a diffusers model ``config.json`` (or a folder holding one); overrides any other config.
        scheduler: a ``scheduler_config.json`` (or a folder holding one); overrides any other scheduler.
        weights: ``"auto"``, ``"unet"`` or ``"unet_ema"``: which subfolder of a pipeline folder to load.
        prediction_type: overrides the scheduler config's ``prediction_type``.
        base: a pipeline or UNet folder supplying the model config and scheduler a bare weight file lacks,
            the VAE and text encoder of a pipeline, and the weights a LoRA file (as ``path``) applies to.
        lora: LoRA weights applied to the loaded UNet or SD3, Flux or PixArt transformer, at ``lora_scale``.
        prompts: a text file of prompts, encoded by the pipeline's text encoder (a pipeline ``path`` or ``base``).
        negative_prompt: the null condition's text with ``prompts`` (default: the empty prompt).
        model: ``module:function`` or ``file.py:function`` building your own network from ``path``
            (see :mod:`collapsecheck.load.custom`); the other options then do not apply.
        controlnet_scale: the conditioning scale of a ControlNet ``path`` (see :mod:`collapsecheck.load.controlnet`).
        revision: a hub id's branch, tag or commit (default ``main``); only with a hub id.

    Raises:
        UsageError: bad arguments, a missing path, a hub id not in the local cache, an unknown layout, no config found.
        LoadError: a corrupt or unsafe file, an unsupported model class, weights that do not match.
    """
    options = LoadOptions(model_config=config, scheduler=scheduler, weights=weights, prediction_type=prediction_type,
                          base=base, lora=lora, lora_scale=lora_scale, prompts=prompts,
                          negative_prompt=negative_prompt, model=model, controlnet_scale=controlnet_scale,
                          revision=revision)
    return load_with_options(Path(path), options)


def load_with_options(path: Path, options: LoadOptions) -> LoadedCheckpoint:
    """:func:`load_checkpoint` with its options as one :class:`LoadOptions`: check them, pick the format, load,
    attach the pipeline's parts."""
    check_options(path, options)
    fmt = pick_format(path, options)
    loaded = attach_pipeline(fmt.load(path, options), options)
    networks = {"": loaded.model} if loaded.control is None else {
        "ControlNet ": loaded.model, "base UNet ": loaded.control.base_model}
    refuse_non_finite(networks, loaded.source)
    return loaded
