"""The last loading step: a pipeline's parts attached to the network a format loaded.

When a format found the network inside (or beside, with ``--base``) a pipeline folder, it names that folder in
:attr:`LoadedCheckpoint.pipeline`; here ``--prompts`` are encoded by the pipeline's text encoder(s) (with the
LoRA's text-encoder layers) and its VAE becomes the decoder of latent samples.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from ..errors import UsageError
from .configs import latent_shape, pooled_dims, text_width
from .loaded import LoadedCheckpoint
from .options import LoadOptions
from .pipeline import encode_pooled_prompts, encode_prompts, read_model_index
from .vae import decoder_note, load_vae

#: the text encoder ``--prompts`` runs, by network class (SD3 and SDXL use their pipeline's ``encode_prompt``)
TEXT_ENCODERS = {"UNet2DConditionModel": "clip", "PixArtTransformer2DModel": "t5"}


def attach_pipeline(ckpt: LoadedCheckpoint, options: LoadOptions) -> LoadedCheckpoint:
    """``ckpt`` with the conditions of ``--prompts`` and the decoder of its pipeline (``ckpt.pipeline``), if any."""
    root = ckpt.pipeline
    if root is None:
        return ckpt
    index = read_model_index(root)
    notes = list(ckpt.notes)
    conditions = None
    if options.prompts is not None:
        conditions = prompt_conditions(ckpt, root, str(options.prompts), options.negative_prompt)
    decoder, info = pipeline_decoder(root, index, ckpt.model_config, notes)
    return replace(ckpt, notes=tuple(notes), conditions=conditions, decoder=decoder, decoder_info=info)


def prompt_conditions(ckpt: LoadedCheckpoint, root: Path, prompts: str, negative_prompt: Optional[str]) -> Any:
    """The prompts encoded by the pipeline's own text encoder(s), as a ConditionSet."""
    cfg = ckpt.model_config
    dims = pooled_dims(ckpt.model_class, cfg)
    if ckpt.model_class == "FluxTransformer2DModel":  # T5 tokens and the CLIP pooled embedding
        from .flux import encode_flux_prompts

        return encode_flux_prompts(root, prompts, negative_prompt, ckpt.model, dims)
    if dims is not None:  # SD3, SDXL: embeddings and pooled embeddings from the pipeline's own encode_prompt
        return encode_pooled_prompts(root, prompts, negative_prompt, ckpt.model, ckpt.model_class, dims, ckpt.lora)
    if ckpt.model_class not in TEXT_ENCODERS:
        raise UsageError(f"--prompts is for cross-attention UNets, PixArt, SD3 and Flux transformers; {root} holds "
                         f"a {ckpt.model_class}")
    conditions, _ = encode_prompts(root, prompts, negative_prompt, text_width(cfg),
                                   text_encoder=TEXT_ENCODERS[ckpt.model_class], lora=ckpt.lora)
    return conditions


def pipeline_decoder(
    root: Path, index: Dict[str, Any], model_config: Dict[str, Any], notes: List[str]
) -> Tuple[Optional[Any], Optional[Dict[str, Any]]]:
    """The pipeline's VAE as the decoder of the network's latents (noted), or (None, None) without one."""
    if (root / "vae").is_dir() and "vae" in index:
        decoder, info = load_vae(root, latent_shape(model_config))
        notes.append(decoder_note(info))
        return decoder, info
    if "vae" in index:
        notes.append(f"{root} names a VAE but has no vae/ folder: measures run on the latents")
    return None, None
