"""Tiny original-LDM single files written in-process, as SD training tools (kohya, the CompVis scripts) save them.

The diffusers -> LDM key mapping follows the tables of diffusers'
``scripts/convert_diffusers_to_original_stable_diffusion.py`` (generalised from SD's 4 levels x 2 res blocks
to any level count, and to today's ``to_q``/``to_out.0`` VAE attention names) and, for SDXL,
``scripts/convert_diffusers_to_original_sdxl.py`` (``label_emb.0`` for the added embedding; the CLIP ViT-L encoder
under ``conditioner.embedders.0.transformer.``; the OpenCLIP one under ``conditioner.embedders.1.model.`` with
q/k/v joined into ``in_proj_*``). It is written independently of the LDM -> diffusers code the loader uses, so a
round trip through both is a real check.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Dict, List, Optional, Tuple

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from helpers_models import _seeded  # noqa: E402

SD1_METADATA = {
    "modelspec.sai_model_spec": "1.0.1",
    "modelspec.architecture": "stable-diffusion-v1",
    "modelspec.implementation": "https://github.com/Stability-AI/generative-models",
    "modelspec.title": "tiny-finetune",
    "modelspec.resolution": "16x16",
    "modelspec.prediction_type": "epsilon",
}


def tiny_sd1_unet(seed: int = 0, cross_dim: int = 16):
    """SD 1.x's layout in miniature: 8 heads, conv proj_in, attention in all but the last level
    (LDM normalises with 32 groups, hence 32 channels at least)."""
    from diffusers import UNet2DConditionModel

    return _seeded(seed, lambda: UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64, 64), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=cross_dim,
        attention_head_dim=8,
    ))


def tiny_sd2_unet(seed: int = 0, cross_dim: int = 32):
    """SD 2.x's layout in miniature: 64 channels per head, linear proj_in, two res blocks per level."""
    from diffusers import UNet2DConditionModel

    return _seeded(seed, lambda: UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(64, 128), layers_per_block=2,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=cross_dim,
        attention_head_dim=[1, 2], use_linear_projection=True,
    ))


SDXL_METADATA = {
    "modelspec.sai_model_spec": "1.0.0",
    "modelspec.architecture": "stable-diffusion-xl-v1-base",
    "modelspec.implementation": "https://github.com/Stability-AI/generative-models",
    "modelspec.title": "tiny-sdxl-finetune",
    "modelspec.resolution": "16x16",
}
SDXL_TIME_DIM = 256  # SDXL's addition_time_embed_dim, which a single file's shapes cannot tell


def tiny_sdxl_unet(seed: int = 0, cross_dim: int = 16, pooled_dim: int = 8):
    """SDXL's layout in miniature: no attention in the first level, per-level transformer depth (1, 2 here, SDXL:
    2, 10), 64 channels per head, linear proj_in, two res blocks per level, the pooled embedding and the 6 size
    time ids added to the timestep embedding (text_time)."""
    from diffusers import UNet2DConditionModel

    return _seeded(seed, lambda: UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(64, 64, 128), layers_per_block=2,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=cross_dim,
        attention_head_dim=[1, 1, 2], use_linear_projection=True, transformer_layers_per_block=[1, 1, 2],
        addition_embed_type="text_time", addition_time_embed_dim=SDXL_TIME_DIM,
        projection_class_embeddings_input_dim=pooled_dim + 6 * SDXL_TIME_DIM,
    ))


def tiny_ldm_vae(seed: int = 0):
    """An AutoencoderKL with LDM's 32-group normalisation: 4 latent channels, one downsampling (x2)."""
    from diffusers import AutoencoderKL

    return _seeded(seed, lambda: AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"), block_out_channels=(32, 32), layers_per_block=1,
        latent_channels=4, sample_size=16,
    ))


# ---------------------------------------------------------------------------------------- UNet

_UNET_TOP = [  # (stable-diffusion, HF Diffusers)
    ("time_embed.0.weight", "time_embedding.linear_1.weight"),
    ("time_embed.0.bias", "time_embedding.linear_1.bias"),
    ("time_embed.2.weight", "time_embedding.linear_2.weight"),
    ("time_embed.2.bias", "time_embedding.linear_2.bias"),
    ("input_blocks.0.0.weight", "conv_in.weight"),
    ("input_blocks.0.0.bias", "conv_in.bias"),
    ("out.0.weight", "conv_norm_out.weight"),
    ("out.0.bias", "conv_norm_out.bias"),
    ("out.2.weight", "conv_out.weight"),
    ("out.2.bias", "conv_out.bias"),
    # SDXL's added embedding (pooled text and size time ids); absent from SD 1.x/2.x UNets
    ("label_emb.0.0.weight", "add_embedding.linear_1.weight"),
    ("label_emb.0.0.bias", "add_embedding.linear_1.bias"),
    ("label_emb.0.2.weight", "add_embedding.linear_2.weight"),
    ("label_emb.0.2.bias", "add_embedding.linear_2.bias"),
]
_UNET_RESNET = [
    ("in_layers.0", "norm1"),
    ("in_layers.2", "conv1"),
    ("out_layers.0", "norm2"),
    ("out_layers.3", "conv2"),
    ("emb_layers.1", "time_emb_proj"),
    ("skip_connection", "conv_shortcut"),
]


def _unet_layer_map(config) -> List[Tuple[str, str]]:
    levels = len(config.block_out_channels)
    per = config.layers_per_block
    down_attn = ["CrossAttn" in t for t in config.down_block_types]
    up_attn = ["CrossAttn" in t for t in config.up_block_types]
    pairs = []
    for i in range(levels):
        for j in range(per):
            pairs.append((f"input_blocks.{(per + 1) * i + j + 1}.0.", f"down_blocks.{i}.resnets.{j}."))
            if down_attn[i]:
                pairs.append((f"input_blocks.{(per + 1) * i + j + 1}.1.", f"down_blocks.{i}.attentions.{j}."))
        for j in range(per + 1):
            pairs.append((f"output_blocks.{(per + 1) * i + j}.0.", f"up_blocks.{i}.resnets.{j}."))
            if up_attn[i]:
                pairs.append((f"output_blocks.{(per + 1) * i + j}.1.", f"up_blocks.{i}.attentions.{j}."))
        if i < levels - 1:
            pairs.append((f"input_blocks.{(per + 1) * (i + 1)}.0.op.", f"down_blocks.{i}.downsamplers.0.conv."))
            upsample = f"output_blocks.{(per + 1) * i + per}.{2 if up_attn[i] else 1}."
            pairs.append((upsample, f"up_blocks.{i}.upsamplers.0."))
    pairs.append(("middle_block.1.", "mid_block.attentions.0."))
    for j in range(2):
        pairs.append((f"middle_block.{2 * j}.", f"mid_block.resnets.{j}."))
    return pairs


def unet_to_ldm(unet) -> Dict[str, torch.Tensor]:
    state = unet.state_dict()
    mapping = {k: k for k in state}
    for sd_name, hf_name in _UNET_TOP:
        if hf_name in state:
            mapping[hf_name] = sd_name
    for k, v in mapping.items():
        if "resnets" in k:
            for sd_part, hf_part in _UNET_RESNET:
                v = v.replace(hf_part, sd_part)
            mapping[k] = v
    layer_map = _unet_layer_map(unet.config)
    for k, v in mapping.items():
        for sd_part, hf_part in layer_map:
            v = v.replace(hf_part, sd_part)
        mapping[k] = v
    return {"model.diffusion_model." + v: state[k].clone() for k, v in mapping.items()}


# ---------------------------------------------------------------------------------------- VAE


def vae_to_ldm(vae) -> Dict[str, torch.Tensor]:
    levels = len(vae.config.block_out_channels)
    per = vae.config.layers_per_block
    pairs = [("nin_shortcut", "conv_shortcut"), ("norm_out", "conv_norm_out"),
             ("mid.attn_1.", "mid_block.attentions.0.")]
    for i in range(levels):
        for j in range(per):
            pairs.append((f"encoder.down.{i}.block.{j}.", f"encoder.down_blocks.{i}.resnets.{j}."))
        if i < levels - 1:
            pairs.append((f"down.{i}.downsample.", f"down_blocks.{i}.downsamplers.0."))
            pairs.append((f"up.{levels - 1 - i}.upsample.", f"up_blocks.{i}.upsamplers.0."))
        for j in range(per + 1):  # up blocks are numbered in reverse in LDM
            pairs.append((f"decoder.up.{levels - 1 - i}.block.{j}.", f"decoder.up_blocks.{i}.resnets.{j}."))
    for i in range(2):
        pairs.append((f"mid.block_{i + 1}.", f"mid_block.resnets.{i}."))
    attn = [("norm.", "group_norm."), ("q.", "to_q."), ("k.", "to_k."), ("v.", "to_v."), ("proj_out.", "to_out.0.")]
    state = vae.state_dict()
    out = {}
    for k, tensor in state.items():
        v = k
        for sd_part, hf_part in pairs:
            v = v.replace(hf_part, sd_part)
        if "attentions" in k:
            for sd_part, hf_part in attn:
                v = v.replace(hf_part, sd_part)
        tensor = tensor.clone()
        if any(f"mid.attn_1.{w}.weight" in v for w in ("q", "k", "v", "proj_out")):
            tensor = tensor.reshape(*tensor.shape, 1, 1)  # LDM's attention is 1x1 convolutions
        out["first_stage_model." + v] = tensor
    return out


# ---------------------------------------------------------------------------------------- text encoder


def clip_to_ldm(encoder) -> Dict[str, torch.Tensor]:
    """SD 1.x layout: transformers' CLIPTextModel keys under ``cond_stage_model.transformer.text_model.``,
    with the ``position_ids`` buffer older transformers saved."""
    state = {k.removeprefix("text_model."): v for k, v in encoder.state_dict().items()}
    out = {"cond_stage_model.transformer.text_model." + k: v.clone() for k, v in state.items()}
    positions = encoder.config.max_position_embeddings
    out["cond_stage_model.transformer.text_model.embeddings.position_ids"] = torch.arange(positions)[None]
    return out


_OPEN_CLIP_NAMES = [  # (OpenCLIP, transformers), as convert_diffusers_to_original_sdxl.py's textenc_conversion_lst
    ("transformer.resblocks.", "text_model.encoder.layers."),
    ("ln_1", "layer_norm1"),
    ("ln_2", "layer_norm2"),
    (".c_fc.", ".fc1."),
    (".c_proj.", ".fc2."),
    (".attn", ".self_attn"),
    ("ln_final.", "text_model.final_layer_norm."),
    ("token_embedding.weight", "text_model.embeddings.token_embedding.weight"),
    ("positional_embedding", "text_model.embeddings.position_embedding.weight"),
]


def _open_clip_name(name: str) -> str:
    for ldm_part, hf_part in _OPEN_CLIP_NAMES:
        name = name.replace(hf_part, ldm_part)
    return name


def open_clip_to_ldm(encoder, prefix: str = "conditioner.embedders.1.model.") -> Dict[str, torch.Tensor]:
    """SDXL's second encoder (a ``CLIPTextModelWithProjection``) in OpenCLIP's layout: q/k/v joined into
    ``attn.in_proj_weight``/``_bias`` (order q, k, v), and ``text_projection`` stored as OpenCLIP multiplies by it,
    ``x @ P`` (the transpose of the Linear weight; the diffusers script leaves ``text_projection.weight`` as it is,
    which no SDXL file holds)."""
    state = {k if k.startswith(("text_model.", "text_projection")) else "text_model." + k: v
             for k, v in encoder.state_dict().items()}
    out, qkv = {}, {}
    for k, v in state.items():
        joined = re.fullmatch(r"(.*\.self_attn)\.([qkv])_proj\.(weight|bias)", k)
        if k == "text_projection.weight":
            out["text_projection"] = v.t().clone()
        elif joined:
            qkv.setdefault((joined[1], joined[3]), [None] * 3)["qkv".index(joined[2])] = v
        else:
            out[_open_clip_name(k)] = v.clone()
    for (k_pre, kind), tensors in qkv.items():
        out[f"{_open_clip_name(k_pre)}.in_proj_{kind}"] = torch.cat(tensors)
    out["logit_scale"] = torch.tensor(4.6052)  # OpenCLIP's, stored in SDXL files and not used by the text tower
    return {prefix + k: v for k, v in out.items()}


def write_ldm_file(
    path: Path, unet, vae=None, text_encoder=None, metadata: Optional[Dict[str, str]] = None, extra=None,
    text_encoder_2=None,
) -> Path:
    """One LDM single file: ``.safetensors`` (with ``metadata``) or ``.ckpt`` (a Lightning-style dict).

    SDXL (``text_encoder_2`` given, or a ``text_time`` UNet): ``text_encoder`` goes under
    ``conditioner.embedders.0.transformer.`` and ``text_encoder_2`` under ``conditioner.embedders.1.model.``."""
    state = unet_to_ldm(unet)
    xl = text_encoder_2 is not None or unet.config.addition_embed_type == "text_time"
    if vae is not None:
        state.update(vae_to_ldm(vae))
    if text_encoder is not None:
        clip = clip_to_ldm(text_encoder)
        if xl:
            clip = {k.replace("cond_stage_model.", "conditioner.embedders.0.", 1): v for k, v in clip.items()}
        state.update(clip)
    if text_encoder_2 is not None:
        state.update(open_clip_to_ldm(text_encoder_2))
    state.update(extra or {})
    state = {k: v.contiguous() for k, v in state.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".ckpt":
        torch.save({"epoch": 3, "global_step": 1200, "pytorch-lightning_version": "1.4.2", "state_dict": state}, path)
    else:
        from safetensors.torch import save_file

        save_file(state, str(path), metadata=metadata)
    return path
