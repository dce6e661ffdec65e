"""The options of :func:`~collapsecheck.load.dispatch.load_checkpoint`, as one frozen dataclass, and their checks."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Optional, Tuple

from ..config import PREDICTION_TYPES, WEIGHTS, LoadSettings, PathLike
from ..errors import UsageError, check_choice

#: a Hugging Face hub model id, ``org/name`` (the hub's own rules: word characters, ``-`` and ``.``, no ``--`` or
#: ``..``, at most 96 characters a part)
HUB_ID = re.compile(r"(?!.*(?:--|\.\.))[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}")


@dataclass(frozen=True, kw_only=True)
class LoadOptions(LoadSettings):
    """How to load a checkpoint: the :class:`~collapsecheck.config.LoadSettings` of a scan (the keyword arguments
    of ``load_checkpoint``; see its docstring), with the paths they name."""

    @classmethod
    def of(cls, settings: LoadSettings) -> "LoadOptions":
        """The load settings of ``settings`` (a :class:`~collapsecheck.config.ScanConfig` is one)."""
        return cls(**{f.name: getattr(settings, f.name) for f in fields(LoadSettings)})

    @property
    def base_path(self) -> Optional[Path]:
        return None if self.base is None else Path(self.base)

    @property
    def text_lora(self) -> Optional[Tuple[Path, float]]:
        """(LoRA file, scale) for the text encoders, or None."""
        return None if self.lora is None else (Path(self.lora), float(self.lora_scale))


def hub_repo_id(path: PathLike) -> Optional[str]:
    """``path`` as a Hugging Face hub id (``"org/name"``) when it reads as one and is no local path, else None:
    a local path always wins over a hub id of the same spelling."""
    text = os.fspath(path).replace(os.sep, "/")
    if HUB_ID.fullmatch(text) is None or text.endswith(".git") or Path(path).exists():
        return None
    return text


def check_options(path: Path, options: LoadOptions) -> None:
    """UsageError in one line for bad arguments, before any loading (``--model`` takes only ``--prediction-type``)."""
    check_choice("--weights", options.weights, WEIGHTS)
    if options.prediction_type is not None:
        check_choice("--prediction-type", options.prediction_type, PREDICTION_TYPES)
    check_checkpoint_path(path, options.revision)
    if options.model is not None:
        return
    base = options.base_path
    if base is not None and not base.is_dir():
        raise UsageError(f"--base {base} is not a folder; pass a pipeline folder or a diffusers UNet folder")
    if options.prompts is not None:
        from .pipeline import read_prompts

        read_prompts(str(options.prompts))  # a missing or empty file is a usage error before any loading
    if options.lora is not None and not Path(options.lora).is_file():
        raise UsageError(f"--lora {options.lora} does not exist; pass a LoRA .safetensors file")


def check_checkpoint_path(path: Path, revision: Optional[str]) -> None:
    """The checkpoint is a local path or a hub id, and ``--revision`` goes with a hub id only."""
    hub_id = hub_repo_id(path)
    if hub_id is None and not path.exists():
        if path.is_symlink():
            raise UsageError(f"checkpoint path {path} is a symlink that leads nowhere (a loop, or a missing target)")
        raise UsageError(f"checkpoint path {path} does not exist")
    if revision is not None and hub_id is None:
        raise UsageError(f"--revision applies to a Hugging Face hub id (org/name); {path} is a local path")
    if revision is not None and not revision.strip():
        raise UsageError("--revision needs a branch, tag or commit of the hub id, e.g. main")


def refuse_controlnet_scale(path: Path, options: LoadOptions) -> None:
    """``--controlnet-scale`` applies to ControlNets only."""
    if options.controlnet_scale != 1.0:
        raise UsageError(f"--controlnet-scale applies to a ControlNet; {path} is not one (no ControlNetModel config)")
