"""Flux transformers (``FluxTransformer2DModel``) called as ``FluxPipeline`` calls them.

The samplers see Flux latents unpacked, (C, H, W) as the VAE decodes them; the transformer takes them packed into
2x2 patches, a sequence of (H / 2) (W / 2) tokens of 4 C channels (``FluxPipeline._pack_latents``), with the
image position ids (0, row, column) of each patch (``_prepare_latent_image_ids``) and text position ids of zeros
(``encode_prompt``'s ``text_ids``). Its timestep input is ``t / 1000`` (the transformer multiplies it back), and a
guidance-distilled ("dev-like", ``guidance_embeds``) transformer takes the guidance value as an input: the
scan's guidance scale, per sample, where other models get classifier-free guidance.
"""
from __future__ import annotations

from typing import Optional

import torch


def is_flux(config: dict) -> bool:
    """A Flux transformer's config."""
    return config.get("_class_name") == "FluxTransformer2DModel"


def embeds_guidance(config: dict) -> bool:
    """A guidance-distilled Flux transformer (FLUX.1-dev-like): the guidance value is one of its inputs."""
    return is_flux(config) and bool(config.get("guidance_embeds"))


def pack(latents: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, H/2 W/2, 4 C), as ``FluxPipeline._pack_latents``."""
    b, c, h, w = latents.shape
    x = latents.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, (h // 2) * (w // 2), c * 4)


def unpack(tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, H/2 W/2, 4 C) -> (B, C, H, W), as ``FluxPipeline._unpack_latents`` (``height``, ``width``: latent pixels)."""
    b, _, channels = tokens.shape
    x = tokens.view(b, height // 2, width // 2, channels // 4, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(b, channels // 4, height, width)


def image_ids(height: int, width: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(H/2 W/2, 3) position ids (0, row, column) of the packed patches, as ``_prepare_latent_image_ids``."""
    ids = torch.zeros(height // 2, width // 2, 3)
    ids[..., 1] = ids[..., 1] + torch.arange(height // 2)[:, None]
    ids[..., 2] = ids[..., 2] + torch.arange(width // 2)[None, :]
    return ids.reshape(-1, 3).to(device=device, dtype=dtype)


def image_seq_len(sample_shape: tuple) -> int:
    """The packed sequence length of a (C, H, W) latent: what FluxPipeline's dynamic shift reads."""
    return (int(sample_shape[1]) // 2) * (int(sample_shape[2]) // 2)


def flux_forward(model: torch.nn.Module, x: torch.Tensor, t: torch.Tensor, hidden: torch.Tensor,
                 pooled: torch.Tensor, guidance: Optional[torch.Tensor]) -> torch.Tensor:
    """The transformer's output for unpacked latents ``x`` (B, C, H, W) at timesteps ``t`` (B,), unpacked.

    ``guidance``: (B,) embedded guidance values for a ``guidance_embeds`` transformer (else ignored)."""
    height, width = int(x.shape[-2]), int(x.shape[-1])
    if getattr(model.config, "guidance_embeds", False):
        g = torch.ones(x.shape[0], device=x.device) if guidance is None else guidance.to(x.device)
        guidance = g.float().expand(x.shape[0])
    else:
        guidance = None
    out = model(
        hidden_states=pack(x), timestep=t.to(x.dtype).expand(x.shape[0]) / 1000, guidance=guidance,
        pooled_projections=pooled, encoder_hidden_states=hidden,
        txt_ids=torch.zeros(hidden.shape[1], 3, device=x.device, dtype=x.dtype),
        img_ids=image_ids(height, width, x.device, x.dtype),
    ).sample
    return unpack(out, height, width)


def flux_notes(sample_shape: tuple, image_size: tuple, embedded: bool) -> list:
    """The report's notes on how a Flux transformer is fed."""
    c, h, w = (int(d) for d in sample_shape)
    notes = [f"Flux: {c}x{h}x{w} latents ({image_size[0]}x{image_size[1]} images) packed into "
             f"{image_seq_len(sample_shape)} tokens of 2x2 patches with image position ids, text position ids of "
             "zeros, as FluxPipeline feeds them"]
    if embedded:
        notes.append("guidance-distilled Flux (guidance_embeds, FLUX.1-dev-like): the guidance sweep sets the "
                     "transformer's embedded guidance input (the pipeline's guidance_scale), not classifier-free "
                     "guidance; the null condition (empty prompt) is evaluated at the same guidance only for the "
                     "eps ratio")
    return notes
