"""Loading an original-LDM single file (SD 1.x / 2.x / XL base) as a diffusers UNet, the steps both single-file
formats share (:mod:`~collapsecheck.load.singlefile`, :mod:`~collapsecheck.load.singlefile_sdxl`).

The UNet config comes from ``--config``, else ``--base`` (a pipeline folder, which also gives the scheduler and the
tokenizer ``--prompts`` needs), else an original LDM config built from the tensor shapes
(:mod:`~collapsecheck.load.ldm_config`); the weights are converted with diffusers' own conversion code
(:mod:`~collapsecheck.load.ldm_parts`). The file's VAE (else the base's) decodes the latents; its text encoders
(else the base's) encode ``--prompts``. Every assumption is written into ``notes``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch

from ..errors import UsageError
from . import ldm_sdxl
from .build import build_model
from .configs import is_text_time, text_width
from .files import hash_files, is_safetensors, read_safetensors, read_torch
from .ldm_config import config_path, read_unet_config, unet_config_from_shapes, vae_config_from_shapes
from .ldm_file import SDXL_PREFIX, UNET_PREFIX, VAE_PREFIX, LdmFile, note_other_keys, refuse_unsupported
from .ldm_parts import convert_unet, ldm_decoder, ldm_scheduler, ldm_text_encoder, prediction_from_metadata
from .loaded import LoadedCheckpoint
from .lora import with_lora
from .options import LoadOptions, refuse_controlnet_scale
from .scheduler import apply_prediction_type


def load_ldm(ldm: LdmFile, options: LoadOptions) -> LoadedCheckpoint:
    """Convert and load ``ldm`` into a :class:`LoadedCheckpoint` with its decoder and prompt conditions."""
    path, base = ldm.path, options.base_path
    check_ldm_options(ldm, options)
    notes: List[str] = [
        f"single-file LDM checkpoint: {' + '.join(ldm.parts)}"
        + (f"; modelspec.architecture '{ldm.architecture}'" if ldm.architecture else "; no modelspec metadata")
    ]
    state = read_safetensors(path) if is_safetensors(path) else read_torch(path)
    unet_sd = {k: v for k, v in state.items() if k.startswith(UNET_PREFIX)}
    vae_sd = {k: v for k, v in state.items() if k.startswith(VAE_PREFIX)}
    note_other_keys(state, notes)
    vae_cfg = vae_config_from_shapes(vae_sd, base, ldm, notes) if vae_sd else None
    cfg, label = _unet_config(ldm, options, unet_sd, vae_cfg, notes)
    model, clean_cfg = build_model(cfg, label, convert_unet(unet_sd, cfg, path), notes)
    sched_cfg, sched_source = ldm_scheduler(options.scheduler, base, notes)
    sched_cfg = prediction_from_metadata(ldm, sched_cfg, sched_source, options.prediction_type, notes)
    sched_cfg = apply_prediction_type(sched_cfg, sched_source, options.prediction_type, notes)
    source, content_hash = with_lora(model, clean_cfg["_class_name"], options.text_lora,
                                     f"{path} (single-file LDM checkpoint)", hash_files([path]), notes,
                                     text_encoder=options.prompts is not None)
    decoder, info = ldm_decoder(vae_sd, vae_cfg, base, clean_cfg, path, notes)
    conditions = _prompt_conditions(state, path, options, model, clean_cfg, notes)
    return LoadedCheckpoint.built(model, clean_cfg, (sched_cfg, sched_source), source, notes, content_hash,
                                  conditions=conditions, decoder=decoder, decoder_info=info, lora=options.text_lora)


def check_ldm_options(ldm: LdmFile, options: LoadOptions) -> None:
    """LoadError for unsupported files, UsageError for options that do not apply to a single file."""
    refuse_controlnet_scale(ldm.path, options)
    refuse_unsupported(ldm)
    if options.weights != "auto":
        raise UsageError(f"--weights {options.weights} applies to a folder holding unet/ or unet_ema/; {ldm.path} is "
                         "a single file")
    if options.prompts is not None and options.base is None:
        raise UsageError(
            f"--prompts needs a tokenizer, which the single file {ldm.path.name} does not hold: pass --base "
            "PIPELINE_FOLDER (its tokenizer/ (and tokenizer_2/ for SDXL), and its text encoders when the file has "
            "none); "
            "or pass encoded prompts with --cond FILE"
        )


def _unet_config(
    ldm: LdmFile, options: LoadOptions, unet_sd: Mapping[str, torch.Tensor], vae_cfg: Optional[Dict[str, Any]],
    notes: List[str],
) -> Tuple[Dict[str, Any], str]:
    """The UNet config from ``--config`` or ``--base`` (checked for SDXL files), else built from the shapes."""
    cfg_path = config_path(options.model_config, options.base_path)
    if cfg_path is None:
        return unet_config_from_shapes(ldm, unet_sd, vae_cfg, notes)
    cfg, label = read_unet_config(cfg_path, options.model_config, notes)
    if ldm.sdxl:
        ldm_sdxl.check_config(cfg, label, ldm)
    return cfg, label


def _prompt_conditions(
    state: Mapping[str, torch.Tensor], path: Path, options: LoadOptions, model: torch.nn.Module,
    cfg: Dict[str, Any], notes: List[str],
) -> Optional[Any]:
    """``--prompts`` encoded by the file's own text encoder(s) (else the base's), with the base's tokenizers."""
    base = options.base_path
    if options.prompts is not None and is_text_time(cfg):  # SDXL: two text encoders, the pipeline's encode_prompt
        return ldm_sdxl.encode_prompts(state, base, path, str(options.prompts), options.negative_prompt, model, cfg,
                                       notes, lora=options.text_lora)
    if options.prompts is not None:
        from .pipeline import encode_prompts

        encoder, encoder_source = ldm_text_encoder(state, base, path, notes)
        conditions, _ = encode_prompts(base, str(options.prompts), options.negative_prompt, text_width(cfg),
                                       encoder=encoder, encoder_source=encoder_source, lora=options.text_lora)
        return conditions
    if any(k.startswith(("cond_stage_model.", SDXL_PREFIX)) for k in state):
        notes.append("the file's text encoder is not used (no --prompts): conditions come from --cond embeddings")
    return None
