"""Format: an original-LDM single file of Stable Diffusion 1.x / 2.x (CompVis' ``model.diffusion_model.*`` keys,
kohya's saves with ``modelspec.*`` metadata), ``.safetensors`` or ``.ckpt``, converted into a diffusers UNet (see
:mod:`~collapsecheck.load.ldm_load`). ``--base`` supplies a config, scheduler, VAE and tokenizer where wanted."""
from __future__ import annotations

from pathlib import Path

from .ldm_file import read_ldm
from .ldm_load import load_ldm
from .loaded import LoadedCheckpoint
from .options import LoadOptions

NAME = "original-LDM single file, SD 1.x/2.x (model.diffusion_model.* keys)"


def detect(path: Path, options: LoadOptions) -> bool:
    """A file holding ``model.diffusion_model.*`` tensors (the safetensors header only), not an SDXL one."""
    ldm = read_ldm(path) if path.is_file() else None
    return ldm is not None and not ldm.sdxl


def load(path: Path, options: LoadOptions) -> LoadedCheckpoint:
    return load_ldm(read_ldm(path), options)
