"""Format: a LoRA file as CHECKPOINT, with ``--base``: the base (a pipeline or UNet folder) is loaded and the
LoRA applied to it at ``--lora-scale``, as ``--base BASE --lora FILE`` would."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from .files import is_lora_file
from .loaded import LoadedCheckpoint
from .options import LoadOptions
from .weights import load_weights

NAME = "LoRA file with --base"


def detect(path: Path, options: LoadOptions) -> bool:
    """A safetensors file whose tensor names are all LoRA factors (the header only), with ``--base`` and no
    ``--lora``."""
    return options.base is not None and options.lora is None and is_lora_file(path)


def load(path: Path, options: LoadOptions) -> LoadedCheckpoint:
    base = Path(options.base)
    return load_weights(base, replace(options, lora=path))
