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

(prompt, hint) pairs (:func:`~collapsecheck.load.conditions.pair_hints_with_prompts`): with P > 1 prompts each
condition is the hint with one more channel, its prompt's index into ``text`` (P, L, D); its null keeps the index
with a NaN hint, so each condition's null is the base UNet with its own prompt. CADS noise touches the hint only.
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
    #: the prompts' encoder hidden states (P, L, D): one fixed prompt, or the prompts of (prompt, hint) pairs
    text: Optional[torch.Tensor] = None
    prompts: tuple = ("",)
    conditioning_scale: float = 1.0
    #: the hint shape the ControlNet takes (channels, H, W): the latent size times its downsampling
    hint_shape: tuple = (3, 64, 64)

    def __call__(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, perturb=None,
                 strength: Optional[torch.Tensor] = None) -> torch.Tensor:
        x = x.to(self.dtype)
        cond, text = self._hint_and_text(cond, x.shape[0])
        if perturb is not None:  # CADS noise on the hint (the null rows stay NaN: gamma 1, noise 0)
            gamma, noise = perturb
            cond = cads_mix(cond, (gamma, noise[:, : cond.shape[1]]))
        off = torch.isnan(cond.flatten(1)).any(1)
        hint = torch.nan_to_num(cond.float(), nan=0.0).to(self.dtype)
        scale = (~off).to(self.dtype) * self.conditioning_scale
        if strength is not None:
            scale = scale * strength.to(self.dtype)
        down, mid = self.controlnet(x, t, encoder_hidden_states=text, controlnet_cond=hint,
                                    conditioning_scale=1.0, return_dict=False)
        s = scale.view(-1, 1, 1, 1)
        out = self.model(x, t, encoder_hidden_states=text, down_block_additional_residuals=[d * s for d in down],
                         mid_block_additional_residual=mid * s).sample
        return out[:, : self.sample_shape[0]].float()

    def _hint_and_text(self, cond: torch.Tensor, batch: int) -> tuple:
        """The hints and each row's text: the one fixed prompt, or the prompt whose index the pair carries."""
        if cond.shape[1] == self.hint_shape[0] + 1:  # (prompt, hint) pairs: the last channel is the prompt index
            index = cond[:, -1, 0, 0].float().round().long().clamp(0, self.text.shape[0] - 1)
            return cond[:, :-1], self.text[index]
        return cond, self.text.expand((batch,) + tuple(self.text.shape[1:]))

    def condition_spread(self, conds) -> float:
        """The hints' standard deviation (pairs: without their prompt-index channel)."""
        values = conds.values
        if values.shape[1] == self.hint_shape[0] + 1:
            values = values[:, :-1]
        return float(values.float().std())

    def to(self, device, dtype) -> "ControlDenoiser":
        super().to(device, dtype)
        if self.controlnet is not None:
            self.controlnet.to(device=device, dtype=dtype)
        if self.text is not None:  # moved once here, not per call: a pageable copy in the step loop would sync
            self.text = self.text.to(device=device, dtype=dtype)
        return self
