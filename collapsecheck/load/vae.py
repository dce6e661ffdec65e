"""A pipeline's VAE as the decoder of latent samples: ``AutoencoderKL`` turning latents into images in [-1, 1]
(``latents / scaling_factor + shift_factor``, as diffusers' pipelines do) before any measure."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Sequence, Tuple

import torch

from ..errors import LoadError
from .files import one_line as _one_line


#: images with a side above this many pixels are decoded one latent at a time (slicing, as diffusers'
#: ``enable_slicing``: the VAE's activations of one image at a time; the same images up to float32
#: rounding, since a convolution may round differently at another batch size); tiling (``enable_tiling``)
#: is never used: its tiles blend at their seams and would change the pixels every measure reads
SLICE_ABOVE_PX = 512


@dataclass
class LatentDecoder:
    """``decode(latents) -> images in [-1, 1]`` with a diffusers ``AutoencoderKL``; kept in float32."""

    vae: torch.nn.Module
    scaling_factor: float
    shift_factor: float
    source: str

    def __call__(self, latents: torch.Tensor) -> torch.Tensor:
        device = next(self.vae.parameters()).device
        z = latents.to(device=device, dtype=torch.float32) / self.scaling_factor + self.shift_factor
        if self.sliced(latents):  # one latent at a time, as diffusers' enable_slicing does
            images = torch.cat([self.vae.decode(z[i:i + 1]).sample.float() for i in range(z.shape[0])])
        else:
            images = self.vae.decode(z).sample.float()
        return images.clamp(-1.0, 1.0).to(latents.device)

    def sliced(self, latents: torch.Tensor) -> bool:
        """Large images (a side above SLICE_ABOVE_PX) are decoded one at a time."""
        return max(latents.shape[-2:]) * self.scale_factor > SLICE_ABOVE_PX

    @property
    def scale_factor(self) -> int:
        """Image pixels per latent pixel along each side."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    def to(self, device: torch.device | str) -> "LatentDecoder":
        self.vae.to(device=device)
        return self


def load_vae(root: Path, latent_shape: Sequence[int]) -> Tuple[LatentDecoder, Dict[str, Any]]:
    """The pipeline's VAE as a :class:`LatentDecoder`, and a JSON-ready description of it."""
    folder = root / "vae"
    from diffusers import AutoencoderKL

    from ..quiet import quiet_diffusers

    try:
        with quiet_diffusers():
            vae = AutoencoderKL.from_pretrained(str(folder), local_files_only=True, low_cpu_mem_usage=False)
    except Exception as exc:
        raise LoadError(f"cannot load the VAE in {folder} (AutoencoderKL): {_one_line(exc)}") from None
    return latent_decoder(vae, latent_shape, str(folder))


def latent_decoder(
    vae: torch.nn.Module, latent_shape: Sequence[int], source: str
) -> Tuple[LatentDecoder, Dict[str, Any]]:
    """A built ``AutoencoderKL`` (from ``source``) as a :class:`LatentDecoder`, and a JSON-ready description."""
    vae = vae.float().eval().requires_grad_(False)
    cfg = vae.config
    channels = int(latent_shape[0])
    if int(cfg.latent_channels) != channels:
        raise LoadError(f"{source} has {cfg.latent_channels} latent channels, the UNet samples {channels}: "
                        "the VAE and the UNet do not belong together")
    scaling = float(cfg.scaling_factor if cfg.scaling_factor is not None else 0.18215)
    shift = float(getattr(cfg, "shift_factor", None) or 0.0)
    factor = 2 ** (len(cfg.block_out_channels) - 1)
    image_shape = [int(cfg.out_channels), int(latent_shape[1]) * factor, int(latent_shape[2]) * factor]
    info = {
        "source": source,
        "class": type(vae).__name__,
        "scaling_factor": scaling,
        "shift_factor": shift,
        "latent_shape": [int(d) for d in latent_shape],
        "image_shape": image_shape,
    }
    return LatentDecoder(vae=vae, scaling_factor=scaling, shift_factor=shift, source=source), info




def decoder_note(info: Dict[str, Any]) -> str:
    """The report's note on how latent samples became the images the measures see (``info``: from
    :func:`latent_decoder`)."""
    shift = f", shift_factor {info['shift_factor']:g}" if info.get("shift_factor") else ""
    return (f"latent samples {'x'.join(map(str, info['latent_shape']))} decoded by {info['source']} "
            f"(scaling_factor {info['scaling_factor']:g}{shift}) into {'x'.join(map(str, info['image_shape']))} "
            "images; every pixel measure and LPIPS runs on the images"
            + (f"; decoded one image at a time (slicing, above {SLICE_ABOVE_PX} px)"
               if max(info["image_shape"][1:]) > SLICE_ABOVE_PX else ""))
