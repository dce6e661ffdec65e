"""Format: a bare weight file: ``.safetensors`` (its model config in the metadata, beside it in ``config.json``,
or in ``--config``) or a torch state dict (``.bin`` / ``.pt`` / ``.pth`` / ``.ckpt``, read only with
``torch.load(weights_only=True)``)."""
from __future__ import annotations

from pathlib import Path

from .layout import locate_file
from .ldm_file import read_ldm
from .loaded import LoadedCheckpoint
from .options import LoadOptions
from .weights import load_weights

NAME = "weight file (.safetensors or torch state dict, config from metadata, beside it or --config)"


def detect(path: Path, options: LoadOptions) -> bool:
    """A file that is not an LDM single file (its safetensors header), without ``--base``; an unsupported file type
    is refused when it is loaded."""
    return path.is_file() and options.base is None and read_ldm(path) is None


def load(path: Path, options: LoadOptions) -> LoadedCheckpoint:
    return load_weights(path, options, lambda root, weights, notes: locate_file(root, weights))
