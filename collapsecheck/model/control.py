"""A ControlNet on its base UNet, as one denoiser whose condition is the hint image.

The scanned condition is the hint (B, channels, H, W) in [0, 1], as diffusers' ControlNet pipelines
feed it; the text is one fixed prompt. The null condition is the ControlNet switched off, so the
null branch is the base UNet with the same prompt, and guidance ``w`` scales what the ControlNet adds
to the base prediction. The null hint is marked by NaN (:func:`conditions.null_hint`): every caller of the
denoiser (grid, null probe, posterior and first-step probes) then gets the base model for it without
knowing about ControlNets.

The ControlNet's residuals are computed at scale 1 and multiplied per sample by
``conditioning_scale * strength`` (``strength``: the recovery probes' multiplier), which equals
diffusers' ``conditioning_scale`` argument and lets one batch mix scales. Null samples still run
through the ControlNet (their residuals are zeroed): the batch is never split on the host.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from .denoiser import Denoiser, cads_mix


@dataclass
class ControlDenoiser(Denoiser):
    """``model`` is the base UNet; ``controlnet`` adds its residuals for the hint."""

    controlnet: Optional[torch.nn.Module] = None
    #: the fixed prompt's encoder hidden states (1, L, D)
    text: Optional[torch.Tensor] = None
    conditioning_scale: float = 1.0
    #: the hint shape the ControlNet takes (channels, H, W): the latent size times its downsampling
    hint_shape: tuple = (3, 64, 64)

    def __call__(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, perturb=None,
                 strength: Optional[torch.Tensor] = None) -> torch.Tensor:
        x = x.to(self.dtype)
        if perturb is not None:  # CADS noise on the hint (the null rows stay NaN: gamma 1, noise 0)
            cond = cads_mix(cond, perturb)
        off = torch.isnan(cond.flatten(1)).any(1)
        hint = torch.nan_to_num(cond.float(), nan=0.0).to(self.dtype)
        scale = (~off).to(self.dtype) * self.conditioning_scale
        if strength is not None:
            scale = scale * strength.to(self.dtype)
        text = self.text.expand((x.shape[0],) + tuple(self.text.shape[1:]))
        down, mid = self.controlnet(x, t, encoder_hidden_states=text, controlnet_cond=hint,
                                    conditioning_scale=1.0, return_dict=False)
        s = scale.view(-1, 1, 1, 1)
        out = self.model(x, t, encoder_hidden_states=text, down_block_additional_residuals=[d * s for d in down],
                         mid_block_additional_residual=mid * s).sample
        return out[:, : self.sample_shape[0]].float()

    def to(self, device, dtype) -> "ControlDenoiser":
        super().to(device, dtype)
        if self.controlnet is not None:
            self.controlnet.to(device=device, dtype=dtype)
        if self.text is not None:  # moved once here, not per call: a pageable copy in the step loop would sync
            self.text = self.text.to(device=device, dtype=dtype)
        return self
