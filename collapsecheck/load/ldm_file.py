"""Original-LDM single files (Stable Diffusion 1.x / 2.x / XL, kohya's saves): detection from the tensor names.

A single file holds the whole model under the original CompVis key prefixes: ``model.diffusion_model.*`` (the
UNet), and maybe ``first_stage_model.*`` (the VAE) and ``cond_stage_model.*`` (the CLIP or OpenCLIP text encoder);
SDXL base files hold ``conditioner.embedders.*`` (CLIP ViT-L, OpenCLIP ViT-bigG) instead. Training tools such as
kohya's sd-scripts add ``modelspec.*`` metadata (architecture, prediction type, resolution). Detection reads the
safetensors header only; a ``.ckpt`` is read with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple

import torch

from ..errors import LoadError
from .files import counted, examples, is_safetensors, safetensors_header, torch_keys

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_PREFIX = "cond_stage_model.transformer."
OPEN_CLIP_PREFIX = "cond_stage_model.model."
SDXL_PREFIX = "conditioner.embedders."
SDXL_CLIP_PREFIX = "conditioner.embedders.0.transformer."  # CLIP ViT-L (transformers' keys)
SDXL_OPEN_CLIP_PREFIX = "conditioner.embedders.1.model."  # OpenCLIP ViT-bigG, with text_projection
REFINER_OPEN_CLIP_PREFIX = "conditioner.embedders.0.model."  # a refiner's only encoder
#: Buffers of the LDM training module stored beside the weights (the schedule, EMA bookkeeping): not weights.
_LDM_BUFFERS = re.compile(
    r"^(betas|alphas_cumprod|alphas_cumprod_prev|sqrt_alphas_cumprod|sqrt_one_minus_alphas_cumprod|"
    r"log_one_minus_alphas_cumprod|sqrt_recip_alphas_cumprod|sqrt_recipm1_alphas_cumprod|"
    r"posterior_variance|posterior_log_variance_clipped|posterior_mean_coef1|posterior_mean_coef2|logvar)$"
)


def is_sdxl(keys: List[str], architecture: str) -> bool:
    """An SDXL file (base or refiner): a ``stable-diffusion-xl`` architecture or ``conditioner.embedders.*`` keys."""
    return architecture.lower().startswith("stable-diffusion-xl") or any(k.startswith(SDXL_PREFIX) for k in keys)


def why_sdxl(ldm: LdmFile) -> str:
    """What marks ``ldm`` as an SDXL file, for messages."""
    arch = ldm.architecture
    return f"modelspec.architecture '{arch}'" if arch else "the SDXL layout (conditioner.embedders.* keys)"


def sdxl_parts(keys: List[str]) -> List[str]:
    """The text encoders an SDXL file holds, for the report's first note."""
    found = []
    if any(k.startswith(SDXL_CLIP_PREFIX) for k in keys):
        found.append("CLIP ViT-L text encoder (conditioner.embedders.0.transformer.*)")
    if any(k.startswith(SDXL_OPEN_CLIP_PREFIX) for k in keys):
        found.append("OpenCLIP text encoder with projection (conditioner.embedders.1.model.*)")
    return found


def refuse_refiner(ldm: LdmFile) -> None:
    """SDXL refiners (5 time ids with an aesthetic score, OpenCLIP alone) are refused, as everywhere in the project."""
    arch = ldm.architecture.lower()
    if "refiner" in arch or any(k.startswith(REFINER_OPEN_CLIP_PREFIX) for k in ldm.keys):
        why = f"modelspec.architecture '{arch}'" if "refiner" in arch else "OpenCLIP as conditioner.embedders.0"
        raise LoadError(f"{ldm.path} is an SDXL refiner single file ({why}): refiners (5 time ids with an aesthetic "
                        "score, trained for the last denoising steps) are not supported; scan the SDXL base model")
    if arch and not arch.startswith("stable-diffusion-xl-v1-base"):
        raise LoadError(f"{ldm.path}: modelspec.architecture '{arch}' is not an SDXL base UNet; SDXL single files are "
                        "supported for stable-diffusion-xl-v1-base only")


@dataclass
class LdmFile:
    """A file detected as an original-LDM single file: its tensor names, metadata and the parts it holds."""

    path: Path
    keys: List[str]
    metadata: Dict[str, str]
    parts: List[str] = field(default_factory=list)

    @property
    def architecture(self) -> str:
        return self.metadata.get("modelspec.architecture", "")

    @property
    def sdxl(self) -> bool:
        return is_sdxl(self.keys, self.architecture)


def read_ldm(path: Path) -> Optional[LdmFile]:
    """An :class:`LdmFile` when ``path`` holds ``model.diffusion_model.*`` keys, else None.

    Safetensors: the header only. ``.ckpt``: ``torch.load(weights_only=True)`` with the tensors memory-mapped
    (zip archives) and not kept; the loader reads them. Other files are never LDM single files.
    """
    found = _names_and_metadata(str(path), path.stat().st_mtime_ns, path.stat().st_size)
    if found is None:
        return None
    keys, metadata = list(found[0]), dict(found[1])
    if not any(k.startswith(UNET_PREFIX) for k in keys):
        if keys and all(k.startswith("control_model.") for k in keys):
            raise LoadError(f"{path} is an original-format ControlNet (control_model.* keys), which is not supported "
                            "yet: convert it to a diffusers ControlNet folder (ControlNetModel.save_pretrained) and "
                            "scan that with --base")
        return None
    parts = ["UNet (model.diffusion_model.*)"]
    if any(k.startswith(VAE_PREFIX) for k in keys):
        parts.append("VAE (first_stage_model.*)")
    if any(k.startswith(CLIP_PREFIX) for k in keys):
        parts.append("CLIP text encoder (cond_stage_model.transformer.*)")
    elif any(k.startswith(OPEN_CLIP_PREFIX) for k in keys):
        parts.append("OpenCLIP text encoder (cond_stage_model.model.*)")
    parts += sdxl_parts(keys)
    return LdmFile(path=path, keys=keys, metadata=metadata, parts=parts)


@functools.lru_cache(maxsize=8)
def _names_and_metadata(path: str, mtime_ns: int, size: int) -> Optional[Tuple[Tuple[str, ...], Tuple[Tuple[str, str], ...]]]:
    """(tensor names, metadata items) of a safetensors or ``.ckpt`` file, else None; cached per file version, so
    that the two single-file formats' detection and the load read a ``.ckpt`` once."""
    file = Path(path)
    if is_safetensors(file):
        header = safetensors_header(file)
        return tuple(k for k in header if k != "__metadata__"), tuple((header.get("__metadata__") or {}).items())
    if file.suffix == ".ckpt":
        return tuple(torch_keys(file)), ()
    return None


def refuse_unsupported(ldm: LdmFile) -> None:
    """LoadError for LDM files that are not SD 1.x/2.x/XL-base UNets."""
    arch = ldm.architecture.lower()
    if ldm.sdxl:
        refuse_refiner(ldm)
    elif arch and not arch.startswith("stable-diffusion-v"):
        raise LoadError(
            f"{ldm.path}: modelspec.architecture '{arch}' is not a Stable Diffusion 1.x/2.x/XL UNet; "
            "single files are supported for stable-diffusion-v1, -v2 and -xl-v1-base only"
        )
    if UNET_PREFIX + "input_blocks.0.0.weight" not in ldm.keys:
        raise LoadError(
            f"{ldm.path} has model.diffusion_model.* keys but no input_blocks.0.0.weight: not an SD 1.x/2.x/XL UNet "
            "(SD3, Flux and other transformers are not supported as single files)"
        )


def note_other_keys(state: Mapping[str, torch.Tensor], notes: List[str]) -> None:
    """A note on the tensors outside the UNet, VAE and text encoders (EMA copies, schedule buffers, others)."""
    known = (UNET_PREFIX, VAE_PREFIX, "cond_stage_model.", SDXL_PREFIX)
    other = sorted(k for k in state if not k.startswith(known))
    if not other:
        return
    ema = [k for k in other if k.startswith("model_ema.")]
    buffers = [k for k in other if _LDM_BUFFERS.match(k)]
    rest = [k for k in other if k not in set(ema) | set(buffers)]
    parts = [f"{len(ema)} model_ema.* tensors (the EMA copy; the model.diffusion_model.* weights are scanned)"] if ema else []
    parts += [f"the LDM schedule buffers ({examples(buffers, 3)})"] if buffers else []
    parts += counted([(rest, "other tensors")])
    notes.append("not loaded from the file: " + "; ".join(parts))
