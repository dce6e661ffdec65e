"""Format: a weight file whose config and scheduler come from ``--base`` (a pipeline or diffusers UNet folder), such
as the ``model.safetensors`` accelerate's ``save_state`` writes: ``--base``'s ``unet/config.json`` (or
``config.json``) and its scheduler, unless ``--config`` / ``--scheduler`` are given; its VAE and text encoder go with
the network."""
from __future__ import annotations

from pathlib import Path

from .files import is_lora_file
from .layout import locate_file
from .ldm_file import read_ldm
from .loaded import LoadedCheckpoint
from .options import LoadOptions
from .weights import load_weights

NAME = "weight file with --base (e.g. accelerate's model.safetensors)"


def detect(path: Path, options: LoadOptions) -> bool:
    """A file that is neither an LDM single file nor (without ``--lora``) a LoRA file, with ``--base``."""
    if not (path.is_file() and options.base is not None) or read_ldm(path) is not None:
        return False
    return options.lora is not None or not is_lora_file(path)


def load(path: Path, options: LoadOptions) -> LoadedCheckpoint:
    return load_weights(path, options, lambda root, weights, notes: locate_file(root, weights))
