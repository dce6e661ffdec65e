"""The diffusers configs of an original-LDM single file's UNet and VAE.

The UNet config comes from ``--config``, else ``--base`` (its ``unet/config.json``), else an original LDM config
built from the tensor shapes and mapped by diffusers' own ``create_unet_diffusers_config_from_ldm``. What shapes
cannot tell (the attention head count, the image size) comes from the ``modelspec.*`` metadata or SD's defaults,
and every such assumption is written into ``notes``.
"""
from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch

from ..errors import LoadError, UsageError
from . import ldm_sdxl
from .files import json_in, read_json
from .ldm_file import UNET_PREFIX, VAE_PREFIX, LdmFile, why_sdxl

LDM_VAE_SCALING_FACTOR = 0.18215


def config_path(config: Optional[Any], base: Optional[Path]) -> Optional[Path]:
    """The UNet config file ``--config`` or ``--base`` names, or None (then it is built from the shapes)."""
    if config is not None:
        return json_in(Path(config), "config.json", "--config")
    if base is None:
        return None
    for candidate in (base / "unet" / "config.json", base / "config.json"):
        if candidate.is_file():
            return candidate
    raise UsageError(f"--base {base} holds neither unet/config.json nor config.json; "
                     "pass a pipeline folder or --config CONFIG.json")


def read_unet_config(path: Path, config: Optional[Any], notes: List[str]) -> Tuple[Dict[str, Any], str]:
    """The UNet config at ``path`` (from ``--config`` when ``config`` is given, else ``--base``) and its label."""
    flag = "--config" if config is not None else "--base"
    cfg = read_json(path, UsageError, flag)
    if "_class_name" not in cfg:
        cfg["_class_name"] = "UNet2DConditionModel"
    elif cfg["_class_name"] != "UNet2DConditionModel":
        raise UsageError(f"{flag} {path} is a {cfg['_class_name']} config; "
                         "an LDM single file holds a UNet2DConditionModel")
    notes.append(f"UNet config taken from {flag} {path}")
    return cfg, f"{flag} {path}"


def original_unet_params(unet: Mapping[str, torch.Tensor], path: Path, is_sdxl: bool = False) -> Dict[str, Any]:
    """``unet_config.params`` of an original LDM config, read off the tensor shapes (SDXL's with ``is_sdxl``)."""
    sd = {k[len(UNET_PREFIX):]: v for k, v in unet.items()}
    fix = "pass --config UNET_CONFIG.json or --base PIPELINE_FOLDER"
    if "label_emb.weight" in sd or ("label_emb.0.0.weight" in sd and not is_sdxl):
        raise LoadError(f"{path}: the UNet has a class or size embedding (label_emb); its config cannot be built "
                        f"from shapes: {fix}")
    conv_in = sd["input_blocks.0.0.weight"]
    model_channels = int(conv_in.shape[0])
    blocks = sorted({int(k.split(".")[1]) for k in sd if k.startswith("input_blocks.")})
    levels: List[List[int]] = [[]]
    for i in blocks[1:]:
        if f"input_blocks.{i}.0.op.weight" in sd:
            levels.append([])
        else:
            levels[-1].append(i)
    counts = {len(level) for level in levels}
    if len(counts) != 1 or 0 in counts:
        raise LoadError(f"{path}: the UNet's levels hold different numbers of res blocks; {fix}")
    mult, attention, depth = [], [], []
    for index, level in enumerate(levels):
        channels = int(sd[f"input_blocks.{level[0]}.0.out_layers.3.weight"].shape[0])
        if channels % model_channels:
            raise LoadError(f"{path}: level {index} has {channels} channels, not a multiple of {model_channels}; {fix}")
        mult.append(channels // model_channels)
        has = [any(k.startswith(f"input_blocks.{i}.1.") for k in sd) for i in level]
        if any(has) != all(has):
            raise LoadError(f"{path}: level {index} has attention in some res blocks only; {fix}")
        if all(has):
            attention.append(2 ** index)
            prefix = f"input_blocks.{level[0]}.1.transformer_blocks."
            depth.append(len({k[len(prefix):].split(".")[0] for k in sd if k.startswith(prefix)}))
        else:
            depth.append(1)
    first = next((i for level in levels for i in level if f"input_blocks.{i}.1.proj_in.weight" in sd), None)
    if first is None:
        raise LoadError(f"{path}: the UNet has no cross-attention transformer; {fix}")
    context_dim = int(sd[f"input_blocks.{first}.1.transformer_blocks.0.attn2.to_k.weight"].shape[1])
    params = {
        "in_channels": int(conv_in.shape[1]),
        "out_channels": int(sd["out.2.weight"].shape[0]),
        "model_channels": model_channels,
        "channel_mult": mult,
        "num_res_blocks": len(levels[0]),
        "attention_resolutions": attention,
        "transformer_depth": depth[0] if len(set(depth)) == 1 else depth,
        "context_dim": context_dim,
        "use_linear_in_transformer": sd[f"input_blocks.{first}.1.proj_in.weight"].ndim == 2,
    }
    if is_sdxl:
        params.update(ldm_sdxl.unet_params(sd, params, path, fix))
    return params


def head_params(ldm: LdmFile, params: Mapping[str, Any], notes: List[str]) -> Dict[str, int]:
    """``num_heads`` (SD 1.x) or ``num_head_channels`` (SD 2.x): from the architecture, else the context width."""
    arch = ldm.architecture.lower()
    dim = params["context_dim"]
    if ldm.sdxl:
        choice, why = {"num_head_channels": ldm_sdxl.SDXL_HEAD_CHANNELS}, why_sdxl(ldm)
    elif arch.startswith("stable-diffusion-v1"):
        choice, why = {"num_heads": 8}, f"modelspec.architecture '{arch}'"
    elif arch.startswith("stable-diffusion-v2"):
        choice, why = {"num_head_channels": 64}, f"modelspec.architecture '{arch}'"
    elif dim == 768:
        choice, why = {"num_heads": 8}, "cross-attention width 768 (SD 1.x-like; no modelspec.architecture)"
    elif dim == 1024:
        choice, why = {"num_head_channels": 64}, "cross-attention width 1024 (SD 2.x-like; no modelspec.architecture)"
    else:
        raise LoadError(
            f"{ldm.path}: the attention head count cannot be read off the shapes (cross-attention width {dim} is "
            "neither SD 1.x's 768 nor SD 2.x's 1024, and the file has no modelspec.architecture); "
            "pass --config UNET_CONFIG.json or --base PIPELINE_FOLDER"
        )
    widths = [params["model_channels"] * m for m in params["channel_mult"]]
    if "num_head_channels" in choice and any(w % 64 for w in widths):
        raise LoadError(f"{ldm.path}: block widths {widths} are not multiples of SD 2.x's and SDXL's 64 channels "
                        "per head; pass --config UNET_CONFIG.json or --base PIPELINE_FOLDER")
    what = "8 attention heads (SD 1.x)" if "num_heads" in choice else (
        f"64 channels per attention head ({'SDXL' if ldm.sdxl else 'SD 2.x'})")
    notes.append(f"assumed {what} from {why}; pass --config or --base if that is wrong")
    return choice


def ldm_image_size(ldm: LdmFile, factor: int, notes: List[str]) -> int:
    """The image height from ``modelspec.resolution`` ("WxH"), else SD's 512 (768 for -768-v), noted."""
    resolution = ldm.metadata.get("modelspec.resolution", "")
    match = re.fullmatch(r"\s*(\d+)\s*[x,]\s*(\d+)\s*", resolution)
    if match:
        return int(match.group(2))
    size = ldm_sdxl.SDXL_IMAGE_SIZE if ldm.sdxl else 768 if ldm.architecture.lower().endswith("-768-v") else 512
    side = size // factor
    notes.append(f"image size {size} assumed (no modelspec.resolution): the scan samples {side}x{side} latents")
    return size


def vae_params(vae: Mapping[str, torch.Tensor]) -> Dict[str, Any]:
    """``ddconfig`` of an original LDM AutoencoderKL, read off the tensor shapes."""
    sd = {k[len(VAE_PREFIX):]: v for k, v in vae.items()}
    ch = int(sd["encoder.conv_in.weight"].shape[0])
    levels = sorted({int(k.split(".")[2]) for k in sd if k.startswith("encoder.down.")})
    blocks = {int(k.split(".")[4]) for k in sd if k.startswith("encoder.down.0.block.")}
    return {
        "ch": ch,
        "ch_mult": [int(sd[f"encoder.down.{i}.block.0.conv2.weight"].shape[0]) // ch for i in levels],
        "num_res_blocks": len(blocks),
        "in_channels": int(sd["encoder.conv_in.weight"].shape[1]),
        "out_ch": int(sd["decoder.conv_out.weight"].shape[0]),
        "z_channels": int(sd["decoder.conv_in.weight"].shape[1]),
    }


def vae_config_from_shapes(
    vae: Mapping[str, torch.Tensor], base: Optional[Path], ldm: LdmFile, notes: List[str]
) -> Dict[str, Any]:
    """The diffusers AutoencoderKL config of the file's VAE, with the base's scaling factor or SD's."""
    from diffusers.loaders.single_file_utils import create_vae_diffusers_config_from_ldm

    scaling, where = LDM_VAE_SCALING_FACTOR, "the LDM default"
    if ldm.sdxl:
        scaling, where = ldm_sdxl.SDXL_VAE_SCALING_FACTOR, "SDXL's, assumed (pass --base for its vae/config.json)"
    base_cfg = None if base is None else base / "vae" / "config.json"
    if base_cfg is not None and base_cfg.is_file():
        stored = read_json(base_cfg, LoadError, "VAE config").get("scaling_factor")
        if stored is not None:
            scaling, where = float(stored), str(base_cfg)
    try:
        ddconfig = vae_params(vae)
    except (KeyError, ValueError, IndexError) as exc:
        raise LoadError(
            f"{ldm.path}: the first_stage_model.* tensors are not an LDM AutoencoderKL (no {exc})") from None
    original = {"model": {"params": {"first_stage_config": {"params": {"ddconfig": ddconfig}}}}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # image_size is deprecated there; we set sample_size anyway
        cfg = create_vae_diffusers_config_from_ldm(original, {}, image_size=256, scaling_factor=scaling)
    notes.append(f"VAE config built from the tensor shapes (block widths {cfg['block_out_channels']}), "
                 f"scaling_factor {scaling:g} from {where}")
    return cfg


def unet_config_from_shapes(
    ldm: LdmFile, unet: Mapping[str, torch.Tensor], vae_cfg: Optional[Mapping[str, Any]], notes: List[str]
) -> Tuple[Dict[str, Any], str]:
    """A diffusers UNet config from an original LDM config built from the shapes (diffusers' own mapping)."""
    from diffusers.loaders.single_file_utils import create_unet_diffusers_config_from_ldm

    params = original_unet_params(unet, ldm.path, ldm.sdxl)
    params.update(head_params(ldm, params, notes))
    if vae_cfg is not None:
        ch_mult = [w // vae_cfg["block_out_channels"][0] for w in vae_cfg["block_out_channels"]]
    else:
        ch_mult = [1, 2, 4, 4]
        notes.append("no VAE in the file: a latent downsampling factor of 8 assumed for the image size")
    image_size = ldm_image_size(ldm, 2 ** (len(ch_mult) - 1), notes)
    original = {"model": {"params": {"unet_config": {"params": params},
                                     "first_stage_config": {"params": {"ddconfig": {"ch_mult": ch_mult}}}}}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        cfg = create_unet_diffusers_config_from_ldm(original, {}, image_size=image_size)
    if ldm.sdxl:
        ldm_sdxl.text_time_config(cfg, params, notes)
    if "num_head_channels" in params and not params["use_linear_in_transformer"]:
        cfg["attention_head_dim"] = [params["model_channels"] * m // 64 for m in params["channel_mult"]]
    cfg["_class_name"] = "UNet2DConditionModel"
    shown = {k: params[k] for k in ("model_channels", "channel_mult", "num_res_blocks", "attention_resolutions",
                                    "transformer_depth", "context_dim", "use_linear_in_transformer",
                                    "adm_in_channels") if k in params}
    notes.append("UNet config built from the tensor shapes: " + ", ".join(f"{k} {v}" for k, v in shown.items()))
    return cfg, "the config built from the file's tensor shapes"
