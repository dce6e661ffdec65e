"""Format: a pipeline or training output folder holding ``unet/`` (and maybe ``unet_ema/``, picked with
``--weights``) or ``transformer/``, and ``scheduler/``; also the ``checkpoint-N/`` folders of the diffusers training
scripts (their scheduler sits in the output folder above). With ``model_index.json`` its text encoder encodes
``--prompts`` and its VAE decodes the latents (:mod:`collapsecheck.load.attach`)."""
from __future__ import annotations

from pathlib import Path

from .layout import controlnet_folder, is_model_folder, is_network_parent, locate_pipeline_folder
from .loaded import LoadedCheckpoint
from .options import LoadOptions
from .weights import load_weights

NAME = "pipeline or training folder (unet/, unet_ema/, transformer/, checkpoint-N/)"


def detect(path: Path, options: LoadOptions) -> bool:
    """A folder holding ``unet/``, ``unet_ema/`` or ``transformer/`` (a directory listing), neither a model folder
    itself nor a ControlNet pipeline."""
    return is_network_parent(path) and not is_model_folder(path) and controlnet_folder(path) is None


def load(path: Path, options: LoadOptions) -> LoadedCheckpoint:
    return load_weights(path, options, locate_pipeline_folder)
