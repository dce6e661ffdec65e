"""Converting an original-LDM single file's parts: the UNet and VAE weights (diffusers' own conversion code,
``diffusers.loaders.single_file_utils``, never ``from_single_file``, which may download configs), the text encoder,
and the scheduler and prediction type the file or SD's defaults give.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch

from ..errors import LoadError, UsageError
from .build import check_keys
from .configs import latent_shape
from .files import examples, read_json
from .ldm_file import CLIP_PREFIX, OPEN_CLIP_PREFIX, LdmFile
from .pipeline import import_transformers, quiet_transformers
from .scheduler import scheduler_flag
from .vae import decoder_note, latent_decoder, load_vae

#: The LDM default schedule (SD 1.x / 2.x ``scheduler_config.json``): scaled-linear betas 0.00085..0.012.
LDM_SCHEDULER_CONFIG: Mapping[str, Any] = {
    "_class_name": "DDIMScheduler",
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "trained_betas": None,
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "timestep_spacing": "leading",
}
LDM_SCHEDULER_SOURCE = "assumed LDM default: scaled_linear betas 0.00085..0.012, 1000 steps"
_PREDICTION_NAMES = {"epsilon": "epsilon", "eps": "epsilon", "v": "v_prediction", "v_prediction": "v_prediction"}


def convert_unet(unet: Mapping[str, torch.Tensor], cfg: Mapping[str, Any], path: Path) -> Dict[str, torch.Tensor]:
    """The file's UNet tensors in diffusers' layout for ``cfg``; LoadError when any tensor finds no place."""
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    try:
        converted = convert_ldm_unet_checkpoint(dict(unet), dict(cfg))
    except (KeyError, ValueError, TypeError) as exc:
        raise LoadError(f"{path}: cannot convert the LDM UNet with this config ({exc!r}); "
                        "pass --config UNET_CONFIG.json or --base PIPELINE_FOLDER that matches the file") from None
    used = {id(v) for v in converted.values()}
    unused = sorted(k for k, v in unet.items() if id(v) not in used)
    if unused:
        raise LoadError(f"{path}: {len(unused)} UNet tensors have no place in the converted UNet "
                        f"({examples(unused)}); "
                        "pass --config UNET_CONFIG.json or --base PIPELINE_FOLDER that matches the file")
    return converted


def ldm_scheduler(scheduler: Optional[Any], base: Optional[Path], notes: List[str]) -> Tuple[Dict[str, Any], str]:
    """``--scheduler``, else ``--base``'s scheduler, else the LDM default (noted)."""
    if scheduler is not None:
        return scheduler_flag(scheduler)
    if base is not None:
        for path in (base / "scheduler" / "scheduler_config.json", base / "scheduler_config.json"):
            if path.is_file():
                return read_json(path, LoadError, "scheduler config"), str(path)
    notes.append(f"no scheduler config; {LDM_SCHEDULER_SOURCE} (pass --scheduler or --base to set it)")
    return dict(LDM_SCHEDULER_CONFIG), LDM_SCHEDULER_SOURCE


def prediction_from_metadata(
    ldm: LdmFile, cfg: Dict[str, Any], source: str, flag: Optional[str], notes: List[str]
) -> Dict[str, Any]:
    """``modelspec.prediction_type``, else the architecture's default when the schedule is assumed."""
    if flag is not None:
        return cfg  # --prediction-type wins; apply_prediction_type notes it
    cfg = dict(cfg)
    stored = ldm.metadata.get("modelspec.prediction_type")
    if stored is not None:
        value = _PREDICTION_NAMES.get(stored.strip().lower())
        if value is None:
            raise LoadError(f"{ldm.path}: modelspec.prediction_type '{stored}' is neither 'epsilon' nor 'v'; "
                            "pass --prediction-type epsilon|v_prediction|sample")
        if cfg.get("prediction_type") not in (None, value) and source != LDM_SCHEDULER_SOURCE:
            notes.append(f"prediction_type '{value}' from modelspec.prediction_type overrides "
                         f"'{cfg['prediction_type']}' in {source}")
        else:
            notes.append(f"prediction_type '{value}' from modelspec.prediction_type")
        cfg["prediction_type"] = value
    elif source == LDM_SCHEDULER_SOURCE:
        arch = ldm.architecture.lower()
        value = "v_prediction" if arch.endswith("-v") else "epsilon"
        why = f"the default of modelspec.architecture '{arch}'" if arch else "no modelspec.prediction_type"
        notes.append(f"prediction_type '{value}' assumed ({why}); pass --prediction-type if that is wrong")
        cfg["prediction_type"] = value
    return cfg


def ldm_decoder(
    vae_sd: Mapping[str, torch.Tensor], vae_cfg: Optional[Dict[str, Any]], base: Optional[Path],
    unet_cfg: Mapping[str, Any], path: Path, notes: List[str],
) -> Tuple[Optional[Any], Optional[Dict[str, Any]]]:
    """The file's VAE (converted) or the base's as the decoder of latent samples; (None, None) without one."""
    latent = latent_shape(dict(unet_cfg))
    if vae_cfg is not None:
        from diffusers import AutoencoderKL
        from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

        converted = convert_ldm_vae_checkpoint(dict(vae_sd), vae_cfg)
        if len(converted) != len(vae_sd):
            raise LoadError(f"{path}: {len(vae_sd) - len(converted)} first_stage_model.* tensors have no place in "
                            "the converted VAE; is it an LDM AutoencoderKL?")
        vae = AutoencoderKL.from_config(vae_cfg)
        check_keys(vae.state_dict(), converted, "the VAE config built from the file's shapes")
        vae.load_state_dict(converted, strict=True)
        decoder, info = latent_decoder(vae, latent, f"{path} (first_stage_model.*)")
        if base is not None and (base / "vae").is_dir():
            notes.append(f"the file's own VAE decodes the latents, not {base / 'vae'}")
    elif base is not None and (base / "vae").is_dir():
        decoder, info = load_vae(base, latent)
        notes.append(f"the file holds no VAE; {base / 'vae'} decodes the latents")
    else:
        notes.append("the file holds no VAE and no --base gives one: the measures run on the latents")
        return None, None
    notes.append(decoder_note(info))
    return decoder, info


@quiet_transformers
def ldm_text_encoder(
    state: Mapping[str, torch.Tensor], base: Path, path: Path, notes: List[str]
) -> Tuple[Optional[torch.nn.Module], Optional[str]]:
    """The file's own CLIP / OpenCLIP text encoder, converted into ``--base``'s text_encoder config; or None
    (then :func:`~collapsecheck.load.pipeline.encode_prompts` loads the base's)."""
    clip = {k: v for k, v in state.items() if k.startswith(CLIP_PREFIX) and not k.endswith("position_ids")}
    open_clip = any(k.startswith(OPEN_CLIP_PREFIX) for k in state)
    if not clip and not open_clip:
        notes.append(f"the file holds no text encoder; --prompts are encoded by {base / 'text_encoder'}")
        return None, None
    config = base / "text_encoder" / "config.json"
    if not config.is_file():
        raise UsageError(f"--prompts with the file's text encoder needs its config: --base {base} has no "
                         "text_encoder/config.json; pass a pipeline folder of the same model family")
    from diffusers.loaders.single_file_utils import convert_ldm_clip_checkpoint, convert_open_clip_checkpoint

    tf = import_transformers()
    model = tf.CLIPTextModel(tf.CLIPTextConfig.from_pretrained(str(base / "text_encoder"), local_files_only=True))
    if clip:
        converted = convert_ldm_clip_checkpoint(clip)
    else:
        converted = convert_open_clip_checkpoint(model, dict(state), prefix=OPEN_CLIP_PREFIX)
    if not hasattr(model, "text_model"):  # CLIPTextModel is flat in transformers >= 5.6
        converted = {k.removeprefix("text_model."): v for k, v in converted.items()}
    expected = model.state_dict()
    converted = {k: v for k, v in converted.items() if k in expected or not k.startswith("text_projection")}
    check_keys(expected, converted, f"--base {base / 'text_encoder'}")
    model.load_state_dict(converted, strict=True)
    kind = "CLIP" if clip else "OpenCLIP"
    notes.append(f"--prompts are encoded by the file's own {kind} text encoder (config from {config}), "
                 f"tokenized by {base / 'tokenizer'}")
    return model, f"{path} (cond_stage_model.*)"
