"""Format: an original-LDM single file of SDXL base (kohya's sd-scripts, A1111): ``model.diffusion_model.*`` with
``conditioner.embedders.*`` text encoders or a ``stable-diffusion-xl`` ``modelspec.architecture``; refiners are
refused. Loaded as the SD single files are (:mod:`~collapsecheck.load.ldm_load`), with what is SDXL's own in
:mod:`~collapsecheck.load.ldm_sdxl`."""
from __future__ import annotations

from pathlib import Path

from .ldm_file import read_ldm
from .ldm_load import load_ldm
from .loaded import LoadedCheckpoint
from .options import LoadOptions

NAME = "original-LDM single file, SDXL (conditioner.embedders.* keys)"


def detect(path: Path, options: LoadOptions) -> bool:
    """A file holding ``model.diffusion_model.*`` tensors and SDXL's marks (the safetensors header only)."""
    ldm = read_ldm(path) if path.is_file() else None
    return ldm is not None and ldm.sdxl


def load(path: Path, options: LoadOptions) -> LoadedCheckpoint:
    return load_ldm(read_ldm(path), options)
