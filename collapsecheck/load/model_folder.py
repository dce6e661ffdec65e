"""Format: a diffusers model folder (``config.json`` + ``diffusion_pytorch_model.safetensors`` / ``.bin``, also
``.fp16`` variants and sharded ``*.index.json`` weights), as ``save_pretrained`` writes it. A ``scheduler/``
beside it (a pipeline's ``unet/``) or ``scheduler_config.json`` inside gives the scheduler."""
from __future__ import annotations

from pathlib import Path

from .layout import controlnet_folder, is_model_folder, locate_model_folder
from .loaded import LoadedCheckpoint
from .options import LoadOptions
from .weights import load_weights

NAME = "diffusers model folder (config.json + diffusion_pytorch_model.*)"


def detect(path: Path, options: LoadOptions) -> bool:
    """A folder holding diffusers weight file names (a directory listing), not a ControlNet's."""
    return is_model_folder(path) and controlnet_folder(path) is None


def load(path: Path, options: LoadOptions) -> LoadedCheckpoint:
    return load_weights(path, options, locate_model_folder)
