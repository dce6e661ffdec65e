"""The checkpoint formats collapsecheck loads, in the order they are tried.

A format is a module in ``collapsecheck/load/`` that provides:

* ``NAME``: a short description for messages (an unknown layout lists every format's ``NAME``);
* ``detect(path: Path, options: LoadOptions) -> bool``: whether ``path`` is in this format. Detection is cheap:
  a directory listing, a small JSON config, the safetensors header only; it never builds a network and never
  reads tensors it does not need. It may raise a one-line ``LoadError`` for a file it recognises but refuses (an
  original-format ControlNet, say);
* ``load(path: Path, options: LoadOptions) -> LoadedCheckpoint``: the network and the facts about it
  (:class:`~collapsecheck.load.loaded.LoadedCheckpoint`); a format that finds a pipeline folder names it in
  ``LoadedCheckpoint.pipeline`` and :func:`~collapsecheck.load.dispatch.load_checkpoint` attaches its text encoder
  and VAE (:mod:`~collapsecheck.load.attach`).

A format imports only helper modules (``files``, ``layout``, ``configs``, ``scheduler``, ``build``, ``weights``,
``pipeline``, ``vae``, ``lora``, ``ldm_*``, ``attach``, ``options``, ``loaded``), never the dispatcher or this
registry, and builds no denoiser (that is :func:`collapsecheck.model.build.denoiser_for`'s work). One exception:
``hub`` finds a folder (a cached snapshot) and hands it to the folder formats, so it imports those format modules.

Adding a format: write ``load/<name>.py`` with ``NAME``, ``detect`` and ``load``, and add it to :data:`FORMATS`
where it belongs in the order; give it a fixture in ``tests/test_load_registry.py``.

Detection order (the first format whose ``detect`` says yes loads the checkpoint). Apart from ``custom``, which
takes any layout when ``--model`` is given, the detections exclude each other, so the order only states which
test each format leaves to the others:

0. ``hub``: a path that does not exist and reads as ``org/name``: a Hugging Face hub id, resolved offline to its
   cached snapshot folder (``--revision``), which ``custom``, ``controlnet``, ``model_folder`` or
   ``pipeline_folder`` then loads (first, so that ``--model`` too gets the snapshot folder);
1. ``custom``: ``--model module:function`` (the user's function reads any layout);
2. ``controlnet``: a folder whose ``config.json`` (or ``controlnet/config.json``) is a ``ControlNetModel``'s;
3. ``lora_file``: a safetensors file of LoRA factors only, with ``--base`` (and no ``--lora``);
4. ``lora_folder``: a folder holding ``pytorch_lora_weights.safetensors`` (accelerate's LoRA ``checkpoint-N/``), with
   ``--base`` (and no ``--lora``); its pickled training state is never opened;
5. ``singlefile_sdxl``, 6. ``singlefile``: original-LDM single files (``model.diffusion_model.*`` keys), SDXL or not;
7. ``base_weights``: any other file, with ``--base`` supplying its config;
8. ``weight_file``: any other file, without ``--base``;
9. ``model_folder``: a diffusers model folder (not a ControlNet's);
10. ``pipeline_folder``: a folder holding ``unet/``, ``unet_ema/`` or ``transformer/`` that is neither.
"""
from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Tuple

from ..errors import UsageError
from . import (
    base_weights,
    controlnet,
    custom,
    hub,
    lora_file,
    lora_folder,
    model_folder,
    pipeline_folder,
    singlefile,
    singlefile_sdxl,
    weight_file,
)
from .layout import unknown_folder_message
from .options import LoadOptions

FORMATS: Tuple[ModuleType, ...] = (
    hub,
    custom,
    controlnet,
    lora_file,
    lora_folder,
    singlefile_sdxl,
    singlefile,
    base_weights,
    weight_file,
    model_folder,
    pipeline_folder,
)


def format_name(fmt: ModuleType) -> str:
    """The format's module name (``"model_folder"``), as tests and messages refer to it."""
    return fmt.__name__.rsplit(".", 1)[-1]


def pick_format(path: Path, options: LoadOptions) -> ModuleType:
    """The first format in :data:`FORMATS` that detects ``path``; a one-line UsageError listing them if none does."""
    for fmt in FORMATS:
        if fmt.detect(path, options):
            return fmt
    known = "; ".join(fmt.NAME for fmt in FORMATS)
    what = unknown_folder_message(path) if path.is_dir() else f"{path} is neither a file nor a folder"
    raise UsageError(f"{what}. Known formats: {known}")
