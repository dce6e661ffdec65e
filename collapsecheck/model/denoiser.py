"""One call signature over the model families: ``denoiser(x_t, t, cond) -> network output``.

The output stays in the model's own parametrization (epsilon, v or sample); :mod:`schedule`
converts it. Which family a model is, and what conditions it takes, is read from its config.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Optional

import torch

from ..errors import UsageError, check_choice
from ..load.conditions import ConditionKind, unpack_pooled
from ..load.configs import SDXL_TIME_IDS, is_text_time, latent_shape, pooled_dims, text_width
from .flux import embeds_guidance, flux_forward, flux_notes, is_flux

ConcatOrder = Literal["after", "before"]


@dataclass
class Denoiser:
    """A diffusers UNet wrapped with its conditioning kind."""

    model: torch.nn.Module
    kind: ConditionKind
    sample_shape: tuple[int, int, int]
    concat_order: ConcatOrder = "after"
    #: ``decode(latents) -> images in [-1, 1]`` for latent models (a VAE); None = the samples are the images
    decoder: Optional[Any] = None
    #: True for a PixArt transformer: caption tokens that are all zeros are padding, masked as the pipeline masks them
    caption_mask: bool = False
    #: models that take a pooled text embedding beside the token embeddings (SD3 transformers, SDXL UNets):
    #: (token width, pooled width) of the packed condition rows (:func:`~collapsecheck.load.conditions.pack_pooled`);
    #: None for every other model
    pooled: Optional[tuple[int, int]] = None
    #: True for an SDXL-style UNet (``addition_embed_type == "text_time"``): the pooled embedding and the size
    #: time ids (:meth:`time_ids`) go in ``added_cond_kwargs``
    text_time: bool = False
    #: a Flux transformer: latents packed into 2x2 patches with position ids (:mod:`collapsecheck.model.flux`)
    flux: bool = False
    #: a guidance-distilled Flux transformer (``guidance_embeds``): the guidance scale is the network's embedded
    #: guidance input, given per sample as ``guidance``; there is no classifier-free guidance
    embedded_guidance: bool = False
    #: constant network inputs (PixArt's resolution, SDXL's time ids) per (name, device, dtype), built once
    _constants: dict = field(default_factory=dict, repr=False, compare=False)

    def decode_grid(self, samples: torch.Tensor, batch_size: int) -> torch.Tensor:
        """The images the measures see: ``samples`` (..., C, H, W) decoded in chunks of ``batch_size``,
        or ``samples`` itself for pixel models."""
        if self.decoder is None:
            return samples
        flat = samples.reshape((-1,) + tuple(samples.shape[-3:]))
        with torch.inference_mode():
            images = torch.cat([self.decoder(flat[i:i + batch_size]) for i in range(0, flat.shape[0], batch_size)])
        return images.float().reshape(tuple(samples.shape[:-3]) + tuple(images.shape[1:]))

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def class_tables(self) -> list:
        """The class-label embedding tables: the UNet's one, or one per DiT block (``LabelEmbedding``)."""
        if hasattr(self.model, "class_embedding"):
            return [self.model.class_embedding]
        return [m.embedding_table for m in self.model.modules() if type(m).__name__ == "LabelEmbedding"]

    def condition_feature_shape(self, conds) -> tuple[int, ...]:
        """Shape of one condition's representation that CADS noise is added to."""
        if self.kind == "class":
            return (int(self.class_tables()[0].embedding_dim),)
        return tuple(conds.values.shape[1:])

    def condition_spread(self, conds) -> float:
        """Standard deviation of the condition representation (the class embedding table for labels)."""
        if self.kind == "class":
            return float(torch.cat([t.weight.detach().float().flatten() for t in self.class_tables()]).std())
        if self.caption_mask:  # the zero padding would shrink the spread (and CADS noise) by the prompts' length
            return float(conds.values.float()[padding_mask(conds.values).bool()].std())
        return float(conds.values.float().std())

    def __call__(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, perturb=None,
                 guidance: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Network output for a batch; ``x`` in any float dtype, the result in float32.

        ``perturb``: None, or ``(gamma (B,), noise (B, *condition_feature_shape))``, which replaces the
        condition representation ``c`` by ``sqrt(gamma) c + sqrt(1 - gamma) noise`` (CADS). ``guidance``: (B,)
        embedded guidance values (:attr:`embedded_guidance` models; 1 when None).
        """
        x = x.to(self.dtype)
        mask = padding_mask(cond) if self.caption_mask else None  # read before CADS noise covers the padding
        if perturb is not None:
            if self.kind == "class":
                hooks = [table.register_forward_hook(lambda m, i, out: cads_mix(out, perturb))
                         for table in self.class_tables()]
                try:
                    return self(x, t, cond)
                finally:
                    for hook in hooks:
                        hook.remove()
            cond = cads_mix(cond, perturb)
        if self.kind == "class":
            out = self.model(x, t, class_labels=cond).sample
        elif self.kind == "concat":
            cond = cond.to(self.dtype)
            inputs = (x, cond) if self.concat_order == "after" else (cond, x)
            out = self.model(torch.cat(inputs, dim=1), t).sample
        elif self.caption_mask:
            out = self.model(x, encoder_hidden_states=cond.to(self.dtype), encoder_attention_mask=mask, timestep=t,
                             added_cond_kwargs=self._micro_conditions(x.shape[0], x.device)).sample
        elif self.pooled is not None:
            hidden, pooled = unpack_pooled(cond.to(self.dtype), *self.pooled)
            if self.flux:
                out = flux_forward(self.model, x, t, hidden, pooled, guidance)
            elif self.text_time:
                added = {"text_embeds": pooled, "time_ids": self.time_ids(x.shape[0], x.device)}
                out = self.model(x, t, encoder_hidden_states=hidden, added_cond_kwargs=added).sample
            else:
                out = self.model(hidden_states=x, encoder_hidden_states=hidden, pooled_projections=pooled,
                                 timestep=t).sample
        else:
            out = self.model(x, t, encoder_hidden_states=cond.to(self.dtype)).sample
        return out[:, : self.sample_shape[0]].float()

    def image_size(self) -> tuple[int, int]:
        """(height, width) in pixels of the images the samples decode to (8x the latents without a VAE)."""
        factor = int(getattr(self.decoder, "scale_factor", 8)) if self.decoder is not None else 8
        return self.sample_shape[1] * factor, self.sample_shape[2] * factor

    def _micro_conditions(self, batch: int, device: torch.device) -> dict:
        """PixArt-alpha 1024's resolution and aspect-ratio inputs, as its pipeline passes them at its default size."""
        if not getattr(self.model, "use_additional_conditions", False):
            return {"resolution": None, "aspect_ratio": None}
        height, width = self.image_size()
        resolution = self._constant("resolution", [[height, width]], device)
        aspect = self._constant("aspect_ratio", [[height / width]], device)
        return {"resolution": resolution.expand(batch, 2), "aspect_ratio": aspect.expand(batch, 1)}

    def _constant(self, name: str, values: list, device: torch.device) -> torch.Tensor:
        """``values`` as a tensor on ``device`` in the network's dtype, built once: a host-to-device copy on every
        call in the step loop would synchronise."""
        key = (name, str(device), self.dtype)
        if key not in self._constants:
            self._constants[key] = torch.tensor(values, dtype=self.dtype, device=device)
        return self._constants[key]

    def time_ids(self, batch: int, device: torch.device) -> torch.Tensor:
        """SDXL's size conditions (B, 6), as ``StableDiffusionXLPipeline`` passes them at its default size: the
        original size, the crop's top-left corner (0, 0) and the target size, both the decoded image size."""
        height, width = self.image_size()
        return self._constant("time_ids", [[height, width, 0, 0, height, width]], device).expand(batch, 6)

    def notes(self) -> list[str]:
        """What the denoiser feeds the network besides x_t, t and the condition, for the report."""
        if self.flux:
            return flux_notes(self.sample_shape, self.image_size(), self.embedded_guidance)
        if not self.text_time:
            return []
        height, width = self.image_size()
        scale = "the VAE's scale factor" if self.decoder is not None else "8 (no vae/)"
        return [f"SDXL size conditions (time_ids), fixed for the scan: original size {height}x{width}, crop top-left "
                f"0,0, target size {height}x{width}, the pipeline's default image size (sample_size x {scale})"]

    def to(self, device: torch.device | str, dtype: torch.dtype) -> "Denoiser":
        """Move the network; diffusers' advice about modules kept in float32 is silenced (none here)."""
        if self.device != torch.device(device) or self.dtype != dtype:
            from ..quiet import quiet_diffusers

            with quiet_diffusers():
                self.model.to(device=device, dtype=dtype)
        if self.decoder is not None and hasattr(self.decoder, "to"):
            self.decoder.to(device)  # the decoder keeps its own dtype (a VAE stays float32)
        return self


def cads_mix(c: torch.Tensor, perturb) -> torch.Tensor:
    """``sqrt(gamma) c + sqrt(1 - gamma) noise`` per sample, in ``c``'s dtype; ``perturb`` = (gamma (B,), noise)."""
    gamma, noise = perturb
    g = gamma.view((-1,) + (1,) * (noise.dim() - 1))
    return (g.sqrt() * c.float() + (1 - g).sqrt() * noise).to(c.dtype)


def padding_mask(cond: torch.Tensor) -> torch.Tensor:
    """(B, L) attention mask over caption tokens: 0 where a token's embedding is all zeros (padding).

    T5 prompts are stored zero-padded (:mod:`collapsecheck.load.pipeline`), so the mask travels inside the condition
    tensor through sampling, CADS and chunking. A condition with no nonzero token keeps every token: a
    mask of all zeros would shift every attention logit alike and change nothing anyway."""
    mask = cond.detach().flatten(2).ne(0).any(-1)
    return torch.where(mask.any(-1, keepdim=True), mask, torch.ones_like(mask)).long()


def condition_config(model_class: str, config: dict) -> dict:
    """The config as the condition resolver reads it: a DiT's class table is ``num_embeds_ada_norm`` classes
    plus the null class at index ``num_embeds_ada_norm`` (its last row)."""
    if model_class == "DiTTransformer2DModel":
        return {**config, "num_class_embeds": int(config["num_embeds_ada_norm"]) + 1}
    return config


def condition_kind(model_class: str, config: dict) -> ConditionKind:
    """Which way conditions enter the model, from its diffusers config."""
    if model_class in ("UNet2DConditionModel", "PixArtTransformer2DModel", "SD3Transformer2DModel",
                       "FluxTransformer2DModel"):
        return "cross_attn"
    if model_class == "DiTTransformer2DModel":
        if not config.get("num_embeds_ada_norm"):
            raise UsageError("this DiT has no class labels (num_embeds_ada_norm); collapsecheck needs a condition")
        return "class"
    if config.get("num_class_embeds") or config.get("class_embed_type") not in (None, "identity"):
        if not config.get("num_class_embeds"):
            raise UsageError(
                f"class_embed_type '{config.get('class_embed_type')}' takes continuous class inputs; "
                "only embedding-table class labels (num_class_embeds) are supported"
            )
        return "class"
    if int(config.get("in_channels", 0)) > int(config.get("out_channels", 0)):
        return "concat"
    raise UsageError(
        "the model takes no condition (no num_class_embeds, no extra input channels, no cross-attention); "
        "collapsecheck measures how a condition constrains the samples"
    )


def build_denoiser(model: torch.nn.Module, model_class: str, config: dict, concat_order: str = "after") -> Denoiser:
    """Wrap a loaded diffusers model, reading its conditioning kind and sample shape from the config."""
    check_choice("--concat-order", concat_order, ("after", "before"))
    kind = condition_kind(model_class, config)
    channels, height, width = latent_shape(config)
    if kind == "concat":  # the extra input channels are the condition's
        channels = int(config.get("out_channels") or config.get("in_channels"))
    return Denoiser(model=model, kind=kind, sample_shape=(channels, height, width), concat_order=concat_order,
                    caption_mask=model_class == "PixArtTransformer2DModel", pooled=pooled_dims(model_class, config),
                    text_time=is_text_time(config), flux=is_flux({**config, "_class_name": model_class}),
                    embedded_guidance=embeds_guidance({**config, "_class_name": model_class}))


#: what a wrong pooled width may mean for an SDXL-style UNet, appended to the ``--cond`` shape error
TEXT_TIME_HINT = (f" (SDXL-style UNet: the pooled width is projection_class_embeddings_input_dim - {SDXL_TIME_IDS} x "
                  "addition_time_embed_dim; refiners, with 5 time ids and an aesthetic score, are not supported)")


def expected_condition_shape(denoiser: Denoiser, config: dict) -> tuple[int, ...]:
    """The per-condition tensor shape a ``--cond`` file must have for this model."""
    if denoiser.kind == "concat":
        cond_channels = int(config["in_channels"]) - denoiser.sample_shape[0]
        return (cond_channels,) + denoiser.sample_shape[1:]
    if denoiser.kind == "cross_attn":
        return (1, text_width(config))
    return ()
