"""What a format's loader returns: :class:`LoadedCheckpoint`, the networks and the facts that came with them.

Building a denoiser from it is the model stage's work (:func:`collapsecheck.model.build.denoiser_for`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import torch


@dataclass(frozen=True)
class ControlParts:
    """A ControlNet's base network and fixed text, for :class:`~collapsecheck.model.control.ControlDenoiser`."""

    base_model: torch.nn.Module
    """The base pipeline's ``UNet2DConditionModel`` (the ControlNet is :attr:`LoadedCheckpoint.model`)."""
    sample_shape: Tuple[int, int, int]
    """(C, H, W) of the base UNet's latents."""
    text: torch.Tensor
    """The prompts' encoder hidden states (P, L, D): one fixed prompt (P = 1), or the P prompts of (prompt, hint)
    pairs."""
    conditioning_scale: float
    hint_shape: Tuple[int, int, int]
    """(channels, H, W) of the hint images the ControlNet takes: the latent size times its downsampling."""
    prompts: Tuple[str, ...] = ("",)
    """The prompts of ``text``, in order."""


@dataclass(frozen=True)
class LoadedCheckpoint:
    """A network ready to evaluate, with the configs and assumptions that came with it."""

    model: torch.nn.Module
    """The diffusers network (eval mode, no grad, CPU, float32); the ControlNet for a ControlNet scan, the user's
    network (or ``nn.Identity`` for a plain function) for ``--model``."""
    model_class: str
    """The diffusers class name (``"UNet2DConditionModel"``, ...), ``"ControlNetModel"`` or ``"custom (...)"``."""
    model_config: Dict[str, Any]
    """The model's diffusers config as a plain, JSON-compatible dict (with ``_class_name``)."""
    scheduler_config: Dict[str, Any]
    """A diffusers scheduler config; always has ``prediction_type`` (except flow matching)."""
    scheduler_source: str
    """Where ``scheduler_config`` came from, or ``"assumed default: ..."``."""
    source: str
    """Human-readable description of the weights that were loaded."""
    notes: Tuple[str, ...] = field(default_factory=tuple)
    """Every assumption the loader made, for the report."""
    content_hash: str = ""
    """First 16 hex characters of the sha256 of the weight file bytes (shards in order)."""
    conditions: Optional[Any] = None
    """A :class:`~collapsecheck.load.conditions.ConditionSet` the loader built (``--prompts``, ``--model``), or None."""
    decoder: Optional[Any] = None
    """``decode(latents) -> images in [-1, 1]`` for latent models (a pipeline's VAE), or None for pixel models."""
    decoder_info: Optional[Dict[str, Any]] = None
    """JSON-ready description of ``decoder`` (source, scaling factor, latent and image shapes)."""
    pipeline: Optional[Path] = None
    """The pipeline folder whose text encoder and VAE go with the network; :func:`load_checkpoint`'s last step
    attaches them (the prompts' conditions and the decoder)."""
    lora: Optional[Tuple[Path, float]] = None
    """The LoRA file applied to the network and its scale; its text-encoder layers go with the pipeline's."""
    control: Optional[ControlParts] = None
    """For a ControlNet: its base network, fixed text and scales."""
    custom: Optional[Any] = None
    """For ``--model``: the checked :class:`~collapsecheck.load.custom.CustomModel` the user's function built."""

    @classmethod
    def built(cls, model: torch.nn.Module, config: Dict[str, Any], scheduler: Tuple[Dict[str, Any], str], source: str,
              notes, content_hash: str, **parts: Any) -> "LoadedCheckpoint":
        """A checkpoint of ``model``, built from ``config`` (with ``_class_name``); ``scheduler`` is (config, source)."""
        return cls(model=model, model_class=config["_class_name"], model_config=config, scheduler_config=scheduler[0],
                   scheduler_source=scheduler[1], source=source, notes=tuple(notes), content_hash=content_hash, **parts)
