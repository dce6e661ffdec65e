"""Format: a LoRA training checkpoint folder as CHECKPOINT, with ``--base``.

accelerate's ``save_state`` in diffusers' LoRA training scripts (``train_text_to_image_lora.py``,
``train_dreambooth_lora.py``) writes ``checkpoint-N/`` holding ``pytorch_lora_weights.safetensors`` beside the
training state: ``optimizer.bin``, ``scheduler.bin``, ``random_states_0.pkl`` (and ``scaler.pt``). Only the LoRA
file is read, as :mod:`~collapsecheck.load.lora_file` reads it (``--base BASE --lora FILE``); the companions are
pickles, and are never opened: the folder is listed by name only.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import List

from .files import examples, is_lora_file
from .loaded import LoadedCheckpoint
from .options import LoadOptions
from .weights import load_weights

NAME = "LoRA checkpoint folder (pytorch_lora_weights.safetensors, as accelerate's checkpoint-N/) with --base"

#: the file diffusers' ``save_lora_weights`` writes
LORA_WEIGHTS = "pytorch_lora_weights.safetensors"


def detect(path: Path, options: LoadOptions) -> bool:
    """A folder holding ``pytorch_lora_weights.safetensors`` of LoRA factors (its header only), with ``--base``
    and no ``--lora``."""
    return (options.base is not None and options.lora is None and path.is_dir()
            and is_lora_file(path / LORA_WEIGHTS))


def load(path: Path, options: LoadOptions) -> LoadedCheckpoint:
    """The base with the folder's LoRA at ``--lora-scale``; a note names the training state left unread."""
    loaded = load_weights(Path(options.base), replace(options, lora=path / LORA_WEIGHTS))
    skipped = _training_state(path)
    if not skipped:
        return loaded
    note = (f"{path}: read {LORA_WEIGHTS} only; the training state beside it ({examples(skipped, 4)}) is "
            "pickled and was never opened")
    return replace(loaded, notes=loaded.notes + (note,))


def _training_state(path: Path) -> List[str]:
    """The names of the other files in the folder (listed, never opened)."""
    return sorted(p.name for p in path.iterdir() if p.name != LORA_WEIGHTS and not p.is_dir())
