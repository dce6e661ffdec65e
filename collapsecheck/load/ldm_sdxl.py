"""SDXL single files (kohya's sd-scripts, A1111): what the LDM single-file loading (:mod:`collapsecheck.load.ldm_load`)
adds for them.

An SDXL base file holds ``model.diffusion_model.*`` (a UNet whose ``label_emb.0`` embeds the pooled text embedding
and the 6 size time ids), ``first_stage_model.*`` (the VAE), ``conditioner.embedders.0.transformer.*`` (CLIP ViT-L,
transformers' layout) and ``conditioner.embedders.1.model.*`` (OpenCLIP ViT-bigG with its text projection); kohya
adds ``modelspec.architecture: stable-diffusion-xl-v1-base``. Here:

* (detection and the refiner refusal are in :mod:`collapsecheck.load.ldm_file`);
* what the shapes cannot tell of the UNet config (``addition_time_embed_dim`` 256, 64 channels per head), read into
  diffusers' ``text_time`` config;
* ``--prompts``: the file's two text encoders converted with diffusers' ``convert_ldm_clip_checkpoint`` and
  ``convert_open_clip_checkpoint`` into ``--base``'s ``text_encoder/`` and ``text_encoder_2/`` configs, then encoded
  by :func:`~collapsecheck.load.pipeline.encode_pooled_prompts` (the pipeline's own ``encode_prompt``).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Tuple

import torch

from ..errors import LoadError, UsageError
from .build import check_keys
from .configs import pooled_dims
from .ldm_file import SDXL_CLIP_PREFIX, SDXL_OPEN_CLIP_PREFIX, LdmFile, why_sdxl
from .pipeline import quiet_transformers

if TYPE_CHECKING:
    from .conditions import ConditionSet

#: SDXL's VAE latent scale (diffusers' SDXL vae/config.json), used when --base gives none
SDXL_VAE_SCALING_FACTOR = 0.13025
#: the width of each of the 6 size time ids' sinusoidal embedding (SDXL: adm_in_channels 2816 = 1280 + 6 x 256)
SDXL_TIME_EMBED_DIM = 256
SDXL_IMAGE_SIZE = 1024
SDXL_HEAD_CHANNELS = 64


def unet_params(sd: Mapping[str, torch.Tensor], params: Dict[str, Any], path: Path, fix: str) -> Dict[str, Any]:
    """The SDXL entries of an original LDM ``unet_config.params``: ``num_classes: sequential``, ``adm_in_channels``
    (the input width of ``label_emb.0.0``: the pooled embedding and the 6 size time ids)."""
    if "label_emb.0.0.weight" not in sd:
        raise LoadError(f"{path} is an SDXL file but its UNet has no label_emb.0.0 (the pooled-text and size "
                        f"embedding); {fix}")
    adm = int(sd["label_emb.0.0.weight"].shape[1])
    if adm == 2560 and params["context_dim"] == 1280:
        raise LoadError(f"{path}: the UNet takes 2560 added features and 1280-wide text, an SDXL refiner's "
                        "(5 time ids with an aesthetic score): refiners are not supported; scan the SDXL base model")
    if adm <= 6 * SDXL_TIME_EMBED_DIM:
        raise LoadError(f"{path}: label_emb.0.0 takes {adm} features, no room for a pooled embedding beside 6 size "
                        f"time ids of {SDXL_TIME_EMBED_DIM} (SDXL's); {fix}")
    return {"num_classes": "sequential", "adm_in_channels": adm}


def check_config(cfg: Mapping[str, Any], label: str, ldm: LdmFile) -> None:
    """A config from ``--config`` or ``--base`` for an SDXL file must be an SDXL (``text_time``) UNet's."""
    if cfg.get("addition_embed_type") != "text_time":
        raise LoadError(f"{ldm.path} is an SDXL file ({why_sdxl(ldm)}), but the UNet config from {label} is not an "
                        "SDXL UNet's (no addition_embed_type 'text_time'); pass an SDXL pipeline folder as --base, "
                        "or no --config to build it from the file's shapes")


def text_time_config(cfg: Dict[str, Any], params: Mapping[str, Any], notes: List[str]) -> None:
    """diffusers' SDXL ``text_time`` entries in ``cfg`` (built by ``create_unet_diffusers_config_from_ldm``, which
    picks them only for SDXL's context widths 2048 and 1280; set here whatever the width)."""
    adm = int(params["adm_in_channels"])
    cfg.update(class_embed_type=None, addition_embed_type="text_time", addition_time_embed_dim=SDXL_TIME_EMBED_DIM,
               projection_class_embeddings_input_dim=adm)
    notes.append(f"SDXL UNet: addition_time_embed_dim {SDXL_TIME_EMBED_DIM} assumed (SDXL's; the shapes cannot tell), "
                 f"so the {adm} added features are a {adm - 6 * SDXL_TIME_EMBED_DIM}-wide pooled embedding and 6 size "
                 "time ids")


# ---------------------------------------------------------------------------------------- prompts


def encode_prompts(
    state: Mapping[str, torch.Tensor], base: Path, path: Path, prompts: str, negative_prompt: Optional[str],
    model: torch.nn.Module, cfg: Mapping[str, Any], notes: List[str], lora: Optional[Tuple[Path, float]] = None,
) -> "ConditionSet":
    """``--prompts`` for an SDXL UNet from a single file: the file's own text encoders (those it holds; else the
    base's), through ``StableDiffusionXLPipeline.encode_prompt`` with ``--base``'s tokenizers."""
    from .pipeline import encode_pooled_prompts

    need = ("tokenizer", "tokenizer_2", "text_encoder", "text_encoder_2")
    missing = [n + "/" for n in need if not (base / n).is_dir()]
    if missing or not (base / "model_index.json").is_file():
        what = ", ".join(missing) if missing else "model_index.json"
        raise UsageError(f"--prompts for an SDXL single file needs --base an SDXL pipeline folder (model_index.json, "
                         f"tokenizer/, tokenizer_2/, text_encoder/, text_encoder_2/); {base} lacks {what}")
    encoders = text_encoders(state, base, path, notes)
    dims = pooled_dims("UNet2DConditionModel", dict(cfg))
    return encode_pooled_prompts(base, prompts, negative_prompt, model, "UNet2DConditionModel", dims, lora,
                                 text_encoders=encoders, encoders_source=f"{path} (conditioner.embedders.*)")


@quiet_transformers
def text_encoders(state: Mapping[str, torch.Tensor], base: Path, path: Path, notes: List[str]) -> Dict[str, Any]:
    """The file's CLIP (``text_encoder``) and OpenCLIP (``text_encoder_2``) encoders, converted by diffusers into
    ``--base``'s configs; an encoder the file lacks is left out (the pipeline then loads the base's)."""
    from diffusers.loaders.single_file_utils import convert_ldm_clip_checkpoint, convert_open_clip_checkpoint

    from .pipeline import import_transformers

    tf = import_transformers()
    built: Dict[str, Any] = {}
    clip = {k: v for k, v in state.items() if k.startswith(SDXL_CLIP_PREFIX) and not k.endswith("position_ids")}
    if clip:
        model = tf.CLIPTextModel(_config(tf, base, "text_encoder"))
        _load(model, convert_ldm_clip_checkpoint(clip), base / "text_encoder", "CLIP ViT-L (conditioner.embedders.0)")
        built["text_encoder"] = model
    if any(k.startswith(SDXL_OPEN_CLIP_PREFIX) for k in state):
        model = tf.CLIPTextModelWithProjection(_config(tf, base, "text_encoder_2"))
        converted = convert_open_clip_checkpoint(model, dict(state), prefix=SDXL_OPEN_CLIP_PREFIX)
        _load(model, converted, base / "text_encoder_2", "OpenCLIP (conditioner.embedders.1)")
        built["text_encoder_2"] = model
    for name in ("text_encoder", "text_encoder_2"):
        if name in built:
            notes.append(f"--prompts: {name} is the file's own, converted into {base / name / 'config.json'}")
        else:
            notes.append(f"--prompts: the file holds no {name}; {base / name} encodes")
    notes.append(f"--prompts are tokenized by {base / 'tokenizer'} and {base / 'tokenizer_2'}")
    return built


def _config(tf: Any, base: Path, name: str) -> Any:
    config = base / name / "config.json"
    if not config.is_file():
        raise UsageError(f"--prompts with the file's own text encoders needs their configs: --base {base} has no "
                         f"{name}/config.json; pass an SDXL pipeline folder")
    return tf.CLIPTextConfig.from_pretrained(str(base / name), local_files_only=True)


def _load(model: torch.nn.Module, converted: Dict[str, torch.Tensor], folder: Path, what: str) -> None:
    if not hasattr(model, "text_model"):  # CLIPTextModel is flat in transformers >= 5.6
        converted = {k.removeprefix("text_model."): v for k, v in converted.items()}
    try:
        check_keys(model.state_dict(), converted, f"--base {folder}")
    except LoadError as exc:
        raise LoadError(f"the file's {what}: {exc}") from None
    model.load_state_dict(converted, strict=True)
    model.eval().requires_grad_(False)
