"""The loaders at the sizes people have: published configs, random weights, written to disk, loaded back.

For each model the published ``config.json`` is typed in below (no download). A model is built from it with
seeded random weights (all-zero initialised layers, such as a ControlNet's zero convolutions, are filled with
noise too, so every weight is exercised), rounded to float16 so that float16 files on disk hold the same values,
and written as people have it on disk:

* ``sd15-ldm-*``, ``sd21-ldm-*``: an original-LDM single file (UNet + VAE, and for SD 1.5 the CLIP text encoder)
  in float16, written by the independent diffusers -> LDM converter of ``tests/helpers_ldm.py``, once with kohya's
  ``modelspec.*`` metadata and once without; loaded from the tensor shapes alone;
* ``controlnet-sd15``: a ControlNet folder (``sd-controlnet-canny``'s config) and an SD 1.5 base pipeline folder
  (UNet in float16, CLIP-L text encoder, a small BPE tokenizer padded to 77 tokens, scheduler); compared with
  ``StableDiffusionControlNetPipeline``'s own prompt encoding and its controlnet -> unet call at conditioning
  scale 0.7;
* ``dit-xl-2-256``, ``pixart-xl-2-512``: transformer folders whose config.json is the published one, which names
  the legacy class ``Transformer2DModel`` (as on the Hub);
* ``sd3-medium``: an ``SD3Transformer2DModel`` folder in float16;
* ``sd35-medium``: SD3.5 medium's ``SD3Transformer2DModel`` (``qk_norm``, dual attention in 13 blocks) in float16;
* ``flux-dev``: FLUX.1-dev's ``FluxTransformer2DModel`` (``guidance_embeds``) in float16, its forward checked against
  FluxPipeline's own packing, position ids and guidance input (12 B parameters: skipped under ``--max-rss-gb``
  below 72 GB);
* ``sdxl-ldm-*``: SDXL base (UNet + VAE + CLIP-L + OpenCLIP bigG) as one float16 original-LDM single file, written
  with the SDXL mapping of ``tests/helpers_ldm.py``, with and without kohya's ``modelspec.*`` metadata; its forward
  gets the pooled embedding and the size time ids (``added_cond_kwargs``). The encoders are not loaded (no
  ``--prompts``) and not compared; without metadata they are what marks the file as SDXL.

Each model is loaded with ``collapsecheck.load.dispatch.load_checkpoint`` in a fresh process (so that the peak RSS is
that of the load alone), then checked: the config it resolved against the published one, every weight against the
original's, and one denoiser forward (``build_denoiser`` or the ControlNet's ``ControlDenoiser``) against the
original model called directly on the same input. One table is printed at the end.

Run from the repository root (takes minutes and GBs of disk; one model in memory at a time)::

    HF_HUB_OFFLINE=1 python benchmarks/check_real_sizes.py [--cases sd15,sd21,controlnet,dit,pixart,sd3,sd35,flux,sdxl]
        [--workdir DIR] [--keep] [--max-rss-gb 10] [--smoke]

``--smoke`` shrinks every config (fewer layers and channels) to check the script itself in a minute.
``--max-rss-gb``: a case whose load is predicted to need more (float32 weights + the file) is skipped, and the
table says so.
"""
from __future__ import annotations

import argparse
import gc
import inspect
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # helpers_ldm (the diffusers -> LDM writer), helpers_pipeline (tokenizer)

# ---------------------------------------------------------------------------------------- published configs

_SD_DOWN = ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"]
_SD_UP = ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"]

#: runwayml/stable-diffusion-v1-5 unet/config.json
SD15_UNET = {
    "_class_name": "UNet2DConditionModel", "_diffusers_version": "0.6.0", "act_fn": "silu",
    "attention_head_dim": 8, "block_out_channels": [320, 640, 1280, 1280], "center_input_sample": False,
    "cross_attention_dim": 768, "down_block_types": _SD_DOWN, "downsample_padding": 1, "flip_sin_to_cos": True,
    "freq_shift": 0, "in_channels": 4, "layers_per_block": 2, "mid_block_scale_factor": 1, "norm_eps": 1e-05,
    "norm_num_groups": 32, "out_channels": 4, "sample_size": 64, "up_block_types": _SD_UP,
}
#: stabilityai/stable-diffusion-2-1 unet/config.json (v-prediction, linear projections, 64 channels per head)
SD21_UNET = {
    "_class_name": "UNet2DConditionModel", "_diffusers_version": "0.10.0.dev0", "act_fn": "silu",
    "attention_head_dim": [5, 10, 20, 20], "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False, "cross_attention_dim": 1024, "down_block_types": _SD_DOWN,
    "downsample_padding": 1, "dual_cross_attention": False, "flip_sin_to_cos": True, "freq_shift": 0,
    "in_channels": 4, "layers_per_block": 2, "mid_block_scale_factor": 1, "norm_eps": 1e-05, "norm_num_groups": 32,
    "num_class_embeds": None, "only_cross_attention": False, "out_channels": 4, "sample_size": 96,
    "up_block_types": _SD_UP, "upcast_attention": True, "use_linear_projection": True,
}
#: runwayml/stable-diffusion-v1-5 vae/config.json (stable-diffusion-2-1's differs in sample_size 768 only)
SD_VAE = {
    "_class_name": "AutoencoderKL", "_diffusers_version": "0.6.0", "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512], "down_block_types": ["DownEncoderBlock2D"] * 4, "in_channels": 3,
    "latent_channels": 4, "layers_per_block": 2, "norm_num_groups": 32, "out_channels": 3, "sample_size": 512,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
}
#: runwayml/stable-diffusion-v1-5 text_encoder/config.json (openai/clip-vit-large-patch14's text tower)
CLIP_L = {
    "vocab_size": 49408, "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
    "num_attention_heads": 12, "max_position_embeddings": 77, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-05,
    "projection_dim": 768, "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1,
}
#: lllyasviel/sd-controlnet-canny config.json
CONTROLNET_CANNY = {
    "_class_name": "ControlNetModel", "_diffusers_version": "0.14.0.dev0", "act_fn": "silu",
    "attention_head_dim": 8, "block_out_channels": [320, 640, 1280, 1280], "class_embed_type": None,
    "conditioning_embedding_out_channels": [16, 32, 96, 256], "controlnet_conditioning_channel_order": "rgb",
    "cross_attention_dim": 768, "down_block_types": _SD_DOWN, "downsample_padding": 1, "flip_sin_to_cos": True,
    "freq_shift": 0, "in_channels": 4, "layers_per_block": 2, "mid_block_scale_factor": 1, "norm_eps": 1e-05,
    "norm_num_groups": 32, "num_class_embeds": None, "only_cross_attention": False,
    "projection_class_embeddings_input_dim": None, "resnet_time_scale_shift": "default", "upcast_attention": False,
    "use_linear_projection": False,
}
#: facebook/DiT-XL-2-256 transformer/config.json (the legacy class name, as published)
DIT_XL_2_256 = {
    "_class_name": "Transformer2DModel", "_diffusers_version": "0.12.0.dev0", "activation_fn": "gelu-approximate",
    "attention_bias": True, "attention_head_dim": 72, "cross_attention_dim": None, "dropout": 0.0, "in_channels": 4,
    "norm_elementwise_affine": False, "norm_num_groups": 32, "norm_type": "ada_norm_zero", "num_attention_heads": 16,
    "num_embeds_ada_norm": 1000, "num_layers": 28, "num_vector_embeds": None, "only_cross_attention": False,
    "out_channels": 8, "patch_size": 2, "sample_size": 32, "upcast_attention": False, "use_linear_projection": False,
}
#: PixArt-alpha/PixArt-XL-2-512x512 transformer/config.json (the legacy class name, as published)
PIXART_XL_2_512 = {
    "_class_name": "Transformer2DModel", "_diffusers_version": "0.22.0.dev0", "activation_fn": "gelu-approximate",
    "attention_bias": True, "attention_head_dim": 72, "attention_type": "default", "caption_channels": 4096,
    "cross_attention_dim": 1152, "double_self_attention": False, "dropout": 0.0, "in_channels": 4,
    "norm_elementwise_affine": False, "norm_eps": 1e-06, "norm_num_groups": 32, "norm_type": "ada_norm_single",
    "num_attention_heads": 16, "num_embeds_ada_norm": 1000, "num_layers": 28, "num_vector_embeds": None,
    "only_cross_attention": False, "out_channels": 8, "patch_size": 2, "sample_size": 64, "upcast_attention": False,
    "use_linear_projection": False,
}
#: stabilityai/stable-diffusion-3-medium-diffusers transformer/config.json
SD3_MEDIUM = {
    "_class_name": "SD3Transformer2DModel", "_diffusers_version": "0.29.0.dev0", "attention_head_dim": 64,
    "caption_projection_dim": 1536, "in_channels": 16, "joint_attention_dim": 4096, "num_attention_heads": 24,
    "num_layers": 24, "out_channels": 16, "patch_size": 2, "pooled_projection_dim": 2048, "pos_embed_max_size": 192,
    "sample_size": 128,
}
#: stabilityai/stable-diffusion-3.5-medium transformer/config.json (MMDiT-X: dual attention in the first 13 blocks)
SD35_MEDIUM = {
    "_class_name": "SD3Transformer2DModel", "_diffusers_version": "0.31.0.dev0", "attention_head_dim": 64,
    "caption_projection_dim": 1536, "dual_attention_layers": list(range(13)), "in_channels": 16,
    "joint_attention_dim": 4096, "num_attention_heads": 24, "num_layers": 24, "out_channels": 16, "patch_size": 2,
    "pooled_projection_dim": 2048, "pos_embed_max_size": 384, "qk_norm": "rms_norm", "sample_size": 128,
}
#: black-forest-labs/FLUX.1-dev transformer/config.json (12 B parameters: 24 GB in bfloat16)
FLUX_DEV = {
    "_class_name": "FluxTransformer2DModel", "_diffusers_version": "0.30.0.dev0", "attention_head_dim": 128,
    "guidance_embeds": True, "in_channels": 64, "joint_attention_dim": 4096, "num_attention_heads": 24,
    "num_layers": 19, "num_single_layers": 38, "patch_size": 1, "pooled_projection_dim": 768,
}

#: stabilityai/stable-diffusion-xl-base-1.0 unet/config.json
SDXL_UNET = {
    "_class_name": "UNet2DConditionModel", "_diffusers_version": "0.19.0.dev0", "act_fn": "silu",
    "addition_embed_type": "text_time", "addition_embed_type_num_heads": 64, "addition_time_embed_dim": 256,
    "attention_head_dim": [5, 10, 20], "block_out_channels": [320, 640, 1280], "center_input_sample": False,
    "class_embed_type": None, "class_embeddings_concat": False, "conv_in_kernel": 3, "conv_out_kernel": 3,
    "cross_attention_dim": 2048, "cross_attention_norm": None,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"], "downsample_padding": 1,
    "dual_cross_attention": False, "encoder_hid_dim": None, "encoder_hid_dim_type": None, "flip_sin_to_cos": True,
    "freq_shift": 0, "in_channels": 4, "layers_per_block": 2, "mid_block_only_cross_attention": None,
    "mid_block_scale_factor": 1, "mid_block_type": "UNetMidBlock2DCrossAttn", "norm_eps": 1e-05,
    "norm_num_groups": 32, "num_attention_heads": None, "num_class_embeds": None, "only_cross_attention": False,
    "out_channels": 4, "projection_class_embeddings_input_dim": 2816, "resnet_out_scale_factor": 1.0,
    "resnet_skip_time_act": False, "resnet_time_scale_shift": "default", "sample_size": 128,
    "time_cond_proj_dim": None, "time_embedding_act_fn": None, "time_embedding_dim": None,
    "time_embedding_type": "positional", "timestep_post_act": None, "transformer_layers_per_block": [1, 2, 10],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"], "upcast_attention": None,
    "use_linear_projection": True,
}
#: stabilityai/stable-diffusion-xl-base-1.0 text_encoder_2/config.json (OpenCLIP ViT-bigG's text tower)
OPEN_CLIP_BIGG = {
    "vocab_size": 49408, "hidden_size": 1280, "intermediate_size": 5120, "num_hidden_layers": 32,
    "num_attention_heads": 20, "max_position_embeddings": 77, "hidden_act": "gelu", "layer_norm_eps": 1e-05,
    "projection_dim": 1280, "bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1,
}
#: stabilityai/stable-diffusion-xl-base-1.0 vae/config.json (SD's VAE layout; the latent scale differs)
SDXL_VAE = {**SD_VAE, "_diffusers_version": "0.20.0.dev0", "force_upcast": True, "sample_size": 1024,
            "scaling_factor": 0.13025}
#: kohya sd-scripts' metadata on an SDXL base save
SDXL_KOHYA_METADATA = {
    "modelspec.sai_model_spec": "1.0.0", "modelspec.architecture": "stable-diffusion-xl-v1-base",
    "modelspec.implementation": "https://github.com/Stability-AI/generative-models", "modelspec.title": "random-sdxl",
    "modelspec.resolution": "1024x1024", "modelspec.prediction_type": "epsilon",
}

#: the config keys compared with the published config (after diffusers fills its defaults into both)
UNET_KEYS = ("in_channels", "out_channels", "sample_size", "block_out_channels", "layers_per_block",
             "down_block_types", "up_block_types", "cross_attention_dim", "heads", "transformer_layers_per_block",
             "use_linear_projection", "upcast_attention", "norm_num_groups", "norm_eps", "flip_sin_to_cos",
             "freq_shift", "act_fn", "downsample_padding", "mid_block_scale_factor", "only_cross_attention",
             "num_class_embeds", "class_embed_type", "addition_embed_type", "time_embedding_type")
VAE_KEYS = ("in_channels", "out_channels", "latent_channels", "block_out_channels", "layers_per_block",
            "down_block_types", "up_block_types", "norm_num_groups", "scaling_factor")
CONTROLNET_KEYS = UNET_KEYS[:2] + UNET_KEYS[3:] + ("conditioning_embedding_out_channels", "conditioning_channels")
DIT_KEYS = ("num_attention_heads", "attention_head_dim", "in_channels", "out_channels", "num_layers", "patch_size",
            "sample_size", "num_embeds_ada_norm", "norm_type", "norm_elementwise_affine", "norm_eps",
            "activation_fn", "attention_bias", "upcast_attention")
PIXART_KEYS = DIT_KEYS + ("cross_attention_dim", "caption_channels", "interpolation_scale",
                          "use_additional_conditions")
SD3_KEYS = tuple(k for k in SD3_MEDIUM if not k.startswith("_"))
SD35_KEYS = tuple(k for k in SD35_MEDIUM if not k.startswith("_"))
FLUX_KEYS = tuple(k for k in FLUX_DEV if not k.startswith("_"))
SDXL_KEYS = UNET_KEYS + ("addition_time_embed_dim", "projection_class_embeddings_input_dim", "mid_block_type")

CASES = {  # group -> the loads checked in it
    "sd15": ["sd15-ldm-kohya", "sd15-ldm-plain"],
    "sd21": ["sd21-ldm-kohya", "sd21-ldm-plain"],
    "controlnet": ["controlnet-sd15"],
    "dit": ["dit-xl-2-256"],
    "pixart": ["pixart-xl-2-512"],
    "sd3": ["sd3-medium"],
    "sd35": ["sd35-medium"],
    "flux": ["flux-dev"],
    "sdxl": ["sdxl-ldm-kohya", "sdxl-ldm-plain"],
}
SEED = 0
CN_SCALE = 0.7


# ---------------------------------------------------------------------------------------- small helpers


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2  # KiB on Linux


def _available_gb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024 ** 2
    return float("nan")


def _quiet():
    import warnings

    from diffusers.utils import logging as dlog

    dlog.set_verbosity_error()
    warnings.filterwarnings("ignore", category=FutureWarning)
    try:
        import transformers

        transformers.utils.logging.set_verbosity_error()
    except ImportError:
        pass


def _seeded(seed: int, build):
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def _prepare(model, seed: int):
    """Fill all-zero parameters with noise (zero convolutions would hide a wrong mapping), round every weight and
    saved buffer to float16 values (float16 files then hold exactly the original), eval mode, no grad."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.is_floating_point() and not p.any():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.02)
            p.copy_(p.half().float())
        stored = model.state_dict()
        for name, b in model.named_buffers():  # SD3's position embedding is saved; DiT's is rebuilt at load
            if name in stored and b.is_floating_point():
                b.copy_(b.half().float())
    return model.eval().requires_grad_(False)


def _shrink(cfg: Dict[str, Any], smoke: bool) -> Dict[str, Any]:
    """``--smoke``: the same architecture with few layers and channels (widths keep SD 2's 64-channel heads)."""
    if not smoke:
        return dict(cfg)
    cfg = dict(cfg)
    if "num_layers" in cfg:
        cfg["num_layers"] = 1
    if cfg.get("_class_name") in ("UNet2DConditionModel", "ControlNetModel"):
        levels = len(cfg["down_block_types"])
        widths = [64, 128, 128, 128] if cfg.get("use_linear_projection") else [32, 64, 64, 64]
        cfg["block_out_channels"] = widths[:levels]
        if isinstance(cfg["attention_head_dim"], list):
            cfg["attention_head_dim"] = [w // 64 for w in cfg["block_out_channels"]]
        if isinstance(cfg.get("transformer_layers_per_block"), list):  # SDXL's (1, 2, 10)
            cfg["transformer_layers_per_block"] = [1, 2, 1][:levels]
        cfg["layers_per_block"] = 1
    if cfg.get("_class_name") == "AutoencoderKL":
        cfg["block_out_channels"], cfg["layers_per_block"] = [32, 64, 64, 64], 1
    if "num_hidden_layers" in cfg:
        cfg["num_hidden_layers"], cfg["intermediate_size"] = 1, 64
    if cfg.get("dual_attention_layers"):  # SD3.5 medium: the one block left keeps its dual attention
        cfg["dual_attention_layers"] = [0]
    if "num_single_layers" in cfg:  # Flux: one double and one single block, two heads
        cfg["num_single_layers"], cfg["num_attention_heads"] = 1, 2
    return cfg


def _init_kwargs(cls, cfg: Dict[str, Any]) -> Dict[str, Any]:
    names = set(inspect.signature(cls.__init__).parameters)
    return {k: v for k, v in cfg.items() if k in names}


def _save_state(path: Path, state, metadata: Optional[Dict[str, str]] = None, half: bool = True) -> None:
    from safetensors.torch import save_file

    out = {k: (v.half() if half and v.is_floating_point() else v).contiguous() for k, v in state.items()}
    save_file(out, str(path), metadata=metadata)


def _write_json(path: Path, data) -> None:
    path.write_text(json.dumps(data, indent=1, default=str))


def _plain(v):
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def _full_config(cls, cfg: Dict[str, Any]) -> Dict[str, Any]:
    """The published config with diffusers' defaults filled in (what ``from_config`` makes of it)."""
    signature = inspect.signature(cls.__init__).parameters
    full = {k: p.default for k, p in signature.items() if p.default is not inspect.Parameter.empty}
    full.update({k: v for k, v in cfg.items() if k in signature})
    return {k: _plain(v) for k, v in full.items()}


def _heads(cfg: Dict[str, Any]) -> List[int]:
    """A UNet's heads per block: diffusers' ``num_attention_heads``, else its misnamed ``attention_head_dim``."""
    heads = cfg.get("num_attention_heads") or cfg.get("attention_head_dim")
    n = len(cfg["block_out_channels"])
    return list(heads) if isinstance(heads, (list, tuple)) else [heads] * n


def _per_block(value, n: int):
    return list(value) if isinstance(value, (list, tuple)) else [value] * n


def _diff_keys(got: Dict[str, Any], want: Dict[str, Any], keys, prefix: str = "") -> List[str]:
    out = []
    for key in keys:
        if key == "heads":
            a, b = _heads(got), _heads(want)
        elif key == "transformer_layers_per_block":
            n = len(want["block_out_channels"])
            a, b = _per_block(got.get(key, 1), n), _per_block(want.get(key, 1), n)
        else:
            a, b = _plain(got.get(key)), _plain(want.get(key))
        if key == "upcast_attention":  # SDXL publishes null, which diffusers reads as False
            a, b = bool(a), bool(b)
        if isinstance(a, float) or isinstance(b, float):
            same = a is not None and b is not None and abs(float(a) - float(b)) <= 1e-12 * max(1.0, abs(float(b)))
        else:
            same = a == b
        if not same:
            out.append(f"{prefix}{key} {a!r} vs {b!r}")
    return out


def _weights_diff(model, path: Path) -> float:
    """Largest |loaded - original| over every tensor of ``path``; the key sets must be equal."""
    from safetensors import safe_open

    state = model.state_dict()
    worst = 0.0
    with safe_open(str(path), framework="pt") as f:
        keys = set(f.keys())
        if keys != set(state):
            missing, extra = sorted(keys - set(state)), sorted(set(state) - keys)
            raise AssertionError(f"key sets differ: missing {missing[:3]}, extra {extra[:3]}")
        for key in keys:
            worst = max(worst, (state[key].float() - f.get_tensor(key).float()).abs().max().item())
    return worst


def _file_gb(paths) -> float:
    total = 0
    for p in paths:
        p = Path(p)
        total += sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.is_dir() else p.stat().st_size
    return total / 1024 ** 3


# ---------------------------------------------------------------------------------------- inputs


def _inputs(kind: str, cfg: Dict[str, Any]):
    """The seeded input of the forward check (batch 2, two timesteps; latents at a size that keeps CPU time low)."""
    import torch

    g = torch.Generator().manual_seed(1234)
    if kind == "unet":
        return {"x": torch.randn(2, 4, 64, 64, generator=g), "t": torch.tensor([20, 700]),
                "cond": torch.randn(2, 77, cfg["cross_attention_dim"], generator=g)}
    if kind == "sdxl":  # the pooled embedding's width is what the 6 size time ids leave of the added features
        pooled = cfg["projection_class_embeddings_input_dim"] - 6 * cfg["addition_time_embed_dim"]
        size = cfg["sample_size"] * 8  # StableDiffusionXLPipeline's default: original = target size, crop 0, 0
        return {"x": torch.randn(2, 4, 64, 64, generator=g), "t": torch.tensor([20, 700]),
                "cond": torch.randn(2, 77, cfg["cross_attention_dim"], generator=g),
                "pooled": torch.randn(2, pooled, generator=g),
                "time_ids": torch.tensor([[size, size, 0, 0, size, size]], dtype=torch.float32).repeat(2, 1)}
    if kind == "controlnet":
        return {"x": torch.randn(1, 4, 64, 64, generator=g), "t": torch.tensor([500]),
                "hint": torch.rand(1, 3, 512, 512, generator=g)}
    if kind == "dit":
        return {"x": torch.randn(2, 4, 32, 32, generator=g), "t": torch.tensor([50, 700]),
                "labels": torch.tensor([207, cfg["num_embeds_ada_norm"]])}  # a class and the null class
    if kind == "pixart":
        cond = torch.randn(2, 120, cfg["caption_channels"], generator=g)
        cond[0, 20:] = 0  # T5 padding, stored as zeros: the denoiser reads the mask back from it
        cond[1, 7:] = 0
        return {"x": torch.randn(2, 4, 64, 64, generator=g), "t": torch.tensor([50, 700]), "cond": cond}
    if kind == "flux":  # unpacked latents (in_channels / 4), 64 T5 tokens, the embedded guidance FluxPipeline uses
        return {"x": torch.randn(1, cfg["in_channels"] // 4, 32, 32, generator=g), "t": torch.tensor([500.0]),
                "cond": torch.randn(1, 64, cfg["joint_attention_dim"], generator=g),
                "pooled": torch.randn(1, cfg["pooled_projection_dim"], generator=g), "guidance": torch.tensor([3.5])}
    if kind in ("sd3", "sd35"):
        return {"x": torch.randn(1, 16, 32, 32, generator=g), "t": torch.tensor([500.0]),
                "cond": torch.randn(1, 154, cfg["joint_attention_dim"], generator=g),
                "pooled": torch.randn(1, cfg["pooled_projection_dim"], generator=g)}
    raise ValueError(kind)


# ---------------------------------------------------------------------------------------- write stage


def write_sd(wd: Path, version: str, smoke: bool) -> Dict[str, Any]:
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from safetensors.torch import save_file

    from helpers_ldm import clip_to_ldm, unet_to_ldm, vae_to_ldm

    ucfg = _shrink(SD15_UNET if version == "sd15" else SD21_UNET, smoke)
    vcfg = _shrink({**SD_VAE, "sample_size": 512 if version == "sd15" else 768}, smoke)
    unet = _prepare(_seeded(SEED, lambda: UNet2DConditionModel.from_config(ucfg)), SEED)
    vae = _prepare(_seeded(SEED + 1, lambda: AutoencoderKL.from_config(vcfg)), SEED + 1)
    encoder = None
    if version == "sd15":
        import transformers

        ccfg = transformers.CLIPTextConfig(**_shrink(CLIP_L, smoke))
        encoder = _prepare(_seeded(SEED + 2, lambda: transformers.CLIPTextModel(ccfg)), SEED + 2)
    inputs = _inputs("unet", ucfg)
    with torch.no_grad():
        out = unet(inputs["x"], inputs["t"], encoder_hidden_states=inputs["cond"]).sample
    save_file({**inputs, "out": out.contiguous()}, str(wd / "ref.safetensors"))
    _write_json(wd / "published.json", {"unet": _full_config(UNet2DConditionModel, ucfg),
                                        "vae": {**_full_config(AutoencoderKL, vcfg)},
                                        "prediction_type": "epsilon" if version == "sd15" else "v_prediction",
                                        "params": sum(p.numel() for p in unet.parameters()),
                                        "vae_params": sum(p.numel() for p in vae.parameters())})
    _save_state(wd / "orig_unet.safetensors", unet.state_dict())
    _save_state(wd / "orig_vae.safetensors", vae.state_dict())
    state = unet_to_ldm(unet)
    state.update(vae_to_ldm(vae))
    if encoder is not None:
        state.update(clip_to_ldm(encoder))
    del unet, vae, encoder
    gc.collect()
    if version == "sd15":
        meta = {"modelspec.architecture": "stable-diffusion-v1", "modelspec.resolution": "512x512",
                "modelspec.prediction_type": "epsilon"}
    else:
        meta = {"modelspec.architecture": "stable-diffusion-v2-768-v", "modelspec.resolution": "768x768",
                "modelspec.prediction_type": "v"}
    meta.update({"modelspec.sai_model_spec": "1.0.0", "modelspec.title": f"random-{version}",
                 "modelspec.implementation": "https://github.com/Stability-AI/generative-models"})
    _save_state(wd / f"{version}-ldm-kohya.safetensors", state, metadata=meta)
    _save_state(wd / f"{version}-ldm-plain.safetensors", state)
    return {}


def write_sdxl(wd: Path, smoke: bool) -> Dict[str, Any]:
    """SDXL base's UNet + VAE + two text encoders as one float16 LDM file (3.5 B parameters): each model goes to
    float16 as soon as it is no longer needed in float32, so that the float32 UNet (10.3 GB) never sits beside a copy
    of its weights."""
    import torch
    import transformers
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from safetensors.torch import save_file

    from helpers_ldm import clip_to_ldm, open_clip_to_ldm, unet_to_ldm, vae_to_ldm

    ucfg, vcfg = _shrink(SDXL_UNET, smoke), _shrink(SDXL_VAE, smoke)
    unet = _prepare(_seeded(SEED, lambda: UNet2DConditionModel.from_config(ucfg)), SEED)
    inputs = _inputs("sdxl", ucfg)
    with torch.no_grad():  # StableDiffusionXLPipeline's UNet call
        added = {"text_embeds": inputs["pooled"], "time_ids": inputs["time_ids"]}
        out = unet(inputs["x"], inputs["t"], encoder_hidden_states=inputs["cond"], added_cond_kwargs=added).sample
    save_file({**inputs, "out": out.contiguous()}, str(wd / "ref.safetensors"))
    published = {"unet": _full_config(UNet2DConditionModel, ucfg), "params": sum(p.numel() for p in unet.parameters())}
    unet.half()  # exact: _prepare rounded every weight to float16 values
    _save_state(wd / "orig_unet.safetensors", unet.state_dict())
    state = unet_to_ldm(unet)
    del unet
    gc.collect()
    vae = _prepare(_seeded(SEED + 1, lambda: AutoencoderKL.from_config(vcfg)), SEED + 1)
    published.update(vae=_full_config(AutoencoderKL, vcfg), prediction_type="epsilon",
                     vae_params=sum(p.numel() for p in vae.parameters()))
    _write_json(wd / "published.json", published)
    _save_state(wd / "orig_vae.safetensors", vae.state_dict())
    state.update(vae_to_ldm(vae))
    del vae
    gc.collect()
    clip = _prepare(_seeded(SEED + 2, lambda: transformers.CLIPTextModel(
        transformers.CLIPTextConfig(**_shrink(CLIP_L, smoke)))), SEED + 2).half()
    state.update({k.replace("cond_stage_model.", "conditioner.embedders.0.", 1): v
                  for k, v in clip_to_ldm(clip).items()})
    del clip
    big = _prepare(_seeded(SEED + 4, lambda: transformers.CLIPTextModelWithProjection(
        transformers.CLIPTextConfig(**_shrink(OPEN_CLIP_BIGG, smoke)))), SEED + 4).half()
    state.update(open_clip_to_ldm(big))
    del big
    gc.collect()
    _save_state(wd / "sdxl-ldm-kohya.safetensors", state, metadata=SDXL_KOHYA_METADATA)
    _save_state(wd / "sdxl-ldm-plain.safetensors", state)
    return {}


def _tokenizer(folder: Path):
    """A small CLIP BPE tokenizer (the tests' one) padding to the real 77 tokens."""
    import transformers

    from helpers_pipeline import write_tokenizer

    write_tokenizer(folder)
    tok = transformers.CLIPTokenizer.from_pretrained(str(folder), model_max_length=77)
    tok.save_pretrained(str(folder))
    return tok


def write_controlnet(wd: Path, smoke: bool) -> Dict[str, Any]:
    import torch
    import transformers
    from diffusers import ControlNetModel, DDIMScheduler, StableDiffusionControlNetPipeline, UNet2DConditionModel
    from safetensors.torch import save_file

    ucfg, ncfg = _shrink(SD15_UNET, smoke), _shrink(CONTROLNET_CANNY, smoke)
    base = wd / "sd15-base"
    unet = _prepare(_seeded(SEED, lambda: UNet2DConditionModel.from_config(ucfg)), SEED)
    controlnet = _prepare(_seeded(SEED + 3, lambda: ControlNetModel.from_config(ncfg)), SEED + 3)
    encoder = _prepare(_seeded(SEED + 2, lambda: transformers.CLIPTextModel(
        transformers.CLIPTextConfig(**_shrink(CLIP_L, smoke)))), SEED + 2)
    tokenizer = _tokenizer(base / "tokenizer")
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionControlNetPipeline(vae=None, text_encoder=encoder, tokenizer=tokenizer, unet=unet,
                                             controlnet=controlnet, scheduler=scheduler, safety_checker=None,
                                             feature_extractor=None, requires_safety_checker=False)
    inputs = _inputs("controlnet", ucfg)
    with torch.no_grad():  # StableDiffusionControlNetPipeline.__call__'s own steps, one denoising step
        text, _ = pipe.encode_prompt("", torch.device("cpu"), 1, False)
        down, mid = controlnet(inputs["x"], inputs["t"], encoder_hidden_states=text, controlnet_cond=inputs["hint"],
                               conditioning_scale=CN_SCALE, guess_mode=False, return_dict=False)
        out = unet(inputs["x"], inputs["t"], encoder_hidden_states=text, down_block_additional_residuals=down,
                   mid_block_additional_residual=mid).sample
    save_file({**inputs, "text": text.contiguous(), "out": out.contiguous()}, str(wd / "ref.safetensors"))
    _write_json(wd / "published.json", {"controlnet": _full_config(ControlNetModel, ncfg),
                                        "unet": _full_config(UNet2DConditionModel, ucfg),
                                        "params": sum(p.numel() for p in controlnet.parameters()),
                                        "unet_params": sum(p.numel() for p in unet.parameters())})
    _save_state(wd / "orig_controlnet.safetensors", controlnet.state_dict())
    _save_state(wd / "orig_unet.safetensors", unet.state_dict())
    controlnet.save_pretrained(str(wd / "controlnet"))  # float32, as lllyasviel/sd-controlnet-canny
    unet.half().save_pretrained(str(base / "unet"))  # float16 weights under the plain name
    encoder.save_pretrained(str(base / "text_encoder"))
    scheduler.save_pretrained(str(base / "scheduler"))
    (base / "model_index.json").write_text(json.dumps({
        "_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.6.0",
        "scheduler": ["diffusers", "DDIMScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
        "safety_checker": [None, None], "feature_extractor": [None, None]}, indent=1))
    return {}


def write_transformer(wd: Path, case: str, smoke: bool) -> Dict[str, Any]:
    import torch
    from diffusers import DiTTransformer2DModel, FluxTransformer2DModel, PixArtTransformer2DModel, SD3Transformer2DModel
    from safetensors.torch import save_file

    published = {"dit": DIT_XL_2_256, "pixart": PIXART_XL_2_512, "sd3": SD3_MEDIUM, "sd35": SD35_MEDIUM,
                 "flux": FLUX_DEV}[case]
    cls = {"dit": DiTTransformer2DModel, "pixart": PixArtTransformer2DModel, "sd3": SD3Transformer2DModel,
           "sd35": SD3Transformer2DModel, "flux": FluxTransformer2DModel}[case]
    cfg = _shrink(published, smoke)
    model = _prepare(_seeded(SEED, lambda: cls(**_init_kwargs(cls, cfg))), SEED)
    inputs = _inputs(case, cfg)
    with torch.no_grad():
        if case == "dit":
            out = model(inputs["x"], inputs["t"], class_labels=inputs["labels"]).sample
        elif case == "pixart":  # PixArtAlphaPipeline's call: the caption mask, no micro-conditions at 512
            mask = inputs["cond"].ne(0).any(-1).long()
            out = model(inputs["x"], encoder_hidden_states=inputs["cond"], encoder_attention_mask=mask,
                        timestep=inputs["t"], added_cond_kwargs={"resolution": None, "aspect_ratio": None}).sample
        elif case == "flux":
            out = _flux_reference(model, inputs)
        else:
            out = model(hidden_states=inputs["x"], encoder_hidden_states=inputs["cond"],
                        pooled_projections=inputs["pooled"], timestep=inputs["t"]).sample
    save_file({**inputs, "out": out.contiguous()}, str(wd / "ref.safetensors"))
    _write_json(wd / "published.json", {"model": _full_config(cls, cfg),
                                        "params": sum(p.numel() for p in model.parameters())})
    if case in ("sd3", "sd35", "flux"):  # float16 on disk (SD3 4 GB); DiT and PixArt in float32, as published
        model.half()  # before writing: saving a float32 model's float16 copy would hold both (12 GB for SD3)
    _save_state(wd / "orig.safetensors", model.state_dict())
    folder = wd / "transformer"
    model.save_pretrained(str(folder))
    stored = {k: v for k, v in cfg.items() if not k.startswith("_")}
    stored.update({"_class_name": published["_class_name"], "_diffusers_version": published["_diffusers_version"]})
    (folder / "config.json").write_text(json.dumps(stored, indent=2))  # the published config.json, class name too
    return {}


def _flux_reference(model, inputs):
    """FluxPipeline's transformer call, written from the pipeline's own helpers: packed latents, position ids,
    timestep / 1000, the guidance value; unpacked back."""
    import torch
    from diffusers import FluxPipeline

    x = inputs["x"]
    b, c, h, w = x.shape
    out = model(hidden_states=FluxPipeline._pack_latents(x, b, c, h, w), timestep=inputs["t"] / 1000,
                guidance=inputs["guidance"], pooled_projections=inputs["pooled"], encoder_hidden_states=inputs["cond"],
                txt_ids=torch.zeros(inputs["cond"].shape[1], 3),
                img_ids=FluxPipeline._prepare_latent_image_ids(b, h // 2, w // 2, "cpu", torch.float32)).sample
    return FluxPipeline._unpack_latents(out, h * 8, w * 8, 8)


# ---------------------------------------------------------------------------------------- load stage


def _timed_load(path: Path, **kwargs):
    from collapsecheck.load.dispatch import load_checkpoint

    start = time.perf_counter()
    ckpt = load_checkpoint(path, **kwargs)
    return ckpt, time.perf_counter() - start, _peak_rss_gb()


def _load_ldm_file(wd: Path, path: Path, unet_keys) -> Dict[str, Any]:
    """An LDM single file loaded from its shapes, against the published configs and the original weights: the
    loaded checkpoint, load seconds, peak RSS, config differences, the largest weight difference, the stored
    reference forward and collapsecheck's denoiser."""
    from safetensors.torch import load_file

    from collapsecheck.model.denoiser import build_denoiser

    published = json.loads((wd / "published.json").read_text())
    ckpt, seconds, rss = _timed_load(path)
    diffs = _diff_keys(ckpt.model_config, published["unet"], unet_keys)
    vae = ckpt.decoder.vae
    diffs += _diff_keys(dict(vae.config), published["vae"], VAE_KEYS, prefix="vae.")
    if ckpt.scheduler_config["prediction_type"] != published["prediction_type"]:
        diffs.append(f"prediction_type {ckpt.scheduler_config['prediction_type']!r} vs "
                     f"{published['prediction_type']!r}")
    weights = max(_weights_diff(ckpt.model, wd / "orig_unet.safetensors"),
                  _weights_diff(vae, wd / "orig_vae.safetensors"))
    return {"ckpt": ckpt, "published": published, "seconds": seconds, "rss": rss, "diffs": diffs,
            "weights": weights, "ref": load_file(str(wd / "ref.safetensors")),
            "den": build_denoiser(ckpt.model, ckpt.model_class, ckpt.model_config)}


def _ldm_row(loaded: Dict[str, Any], path: Path, out, what: str) -> Dict[str, Any]:
    ref, published = loaded["ref"], loaded["published"]
    return {"params": published["params"] + published["vae_params"], "file": [path], "load_s": loaded["seconds"],
            "rss": loaded["rss"], "config": loaded["diffs"], "weights": loaded["weights"],
            "forward": (out - ref["out"]).abs().max().item(), "scale": ref["out"].abs().max().item(),
            "model_class": loaded["ckpt"].model_class, "what": what}


def load_sd(wd: Path, case: str) -> Dict[str, Any]:
    import torch

    version, variant = case.split("-")[0], case.split("-")[-1]
    path = wd / f"{version}-ldm-{variant}.safetensors"
    loaded = _load_ldm_file(wd, path, UNET_KEYS)
    ref = loaded["ref"]
    with torch.no_grad():
        out = loaded["den"](ref["x"], ref["t"], ref["cond"])
    return _ldm_row(loaded, path, out, "UNet + VAE" + (" + CLIP-L" if version == "sd15" else "")
                    + " fp16, LDM single file, " + ("kohya modelspec" if variant == "kohya" else "no metadata"))


def load_sdxl(wd: Path, case: str) -> Dict[str, Any]:
    import torch

    from collapsecheck.load.conditions import pack_pooled

    variant = case.split("-")[-1]
    path = wd / f"sdxl-ldm-{variant}.safetensors"
    loaded = _load_ldm_file(wd, path, SDXL_KEYS)
    ref, den = loaded["ref"], loaded["den"]
    time_ids = den.time_ids(2, torch.device("cpu"))
    if not torch.equal(time_ids, ref["time_ids"]):
        loaded["diffs"].append(f"time_ids {time_ids[0].tolist()} vs {ref['time_ids'][0].tolist()}")
    with torch.no_grad():
        out = den(ref["x"], ref["t"], pack_pooled(ref["cond"], ref["pooled"]))
    return _ldm_row(loaded, path, out, "UNet + VAE + CLIP-L + OpenCLIP bigG fp16, LDM single file, "
                    + ("kohya modelspec" if variant == "kohya" else "no metadata"))


def load_controlnet(wd: Path, case: str) -> Dict[str, Any]:
    import torch
    from safetensors.torch import load_file

    published = json.loads((wd / "published.json").read_text())
    from collapsecheck.model.build import denoiser_for

    ckpt, seconds, rss = _timed_load(wd / "controlnet", base=wd / "sd15-base", controlnet_scale=CN_SCALE)
    den = denoiser_for(ckpt)
    diffs = _diff_keys(ckpt.model_config, published["controlnet"], CONTROLNET_KEYS)
    diffs += _diff_keys(ckpt.model_config["base_unet"], published["unet"], UNET_KEYS, prefix="unet.")
    weights = max(_weights_diff(ckpt.model, wd / "orig_controlnet.safetensors"),
                  _weights_diff(den.model, wd / "orig_unet.safetensors"))
    ref = load_file(str(wd / "ref.safetensors"))
    text = (den.text - ref["text"]).abs().max().item()
    with torch.no_grad():
        out = den(ref["x"], ref["t"], ref["hint"])
    return {"params": published["params"] + published["unet_params"],
            "file": [wd / "controlnet", wd / "sd15-base" / "unet"], "load_s": seconds, "rss": rss, "config": diffs,
            "weights": weights, "forward": (out - ref["out"]).abs().max().item(), "text": text,
            "scale": ref["out"].abs().max().item(), "model_class": ckpt.model_class,
            "what": f"ControlNet fp32 folder on an SD 1.5 pipeline (UNet fp16), scale {CN_SCALE}"}


def load_transformer(wd: Path, case: str) -> Dict[str, Any]:
    import torch
    from safetensors.torch import load_file

    from collapsecheck.load.conditions import pack_pooled
    from collapsecheck.model.denoiser import build_denoiser

    kind = case.split("-")[0]
    published = json.loads((wd / "published.json").read_text())
    ckpt, seconds, rss = _timed_load(wd / "transformer")
    keys = {"dit": DIT_KEYS, "pixart": PIXART_KEYS, "sd3": SD3_KEYS, "sd35": SD35_KEYS, "flux": FLUX_KEYS}[kind]
    diffs = _diff_keys(ckpt.model_config, published["model"], keys)
    weights = _weights_diff(ckpt.model, wd / "orig.safetensors")
    ref = load_file(str(wd / "ref.safetensors"))
    den = build_denoiser(ckpt.model, ckpt.model_class, ckpt.model_config)
    with torch.no_grad():
        if kind == "dit":
            out = den(ref["x"], ref["t"], ref["labels"])
        elif kind == "pixart":
            out = den(ref["x"], ref["t"], ref["cond"])
        elif kind == "flux":
            out = den(ref["x"], ref["t"], pack_pooled(ref["cond"], ref["pooled"]), guidance=ref["guidance"])
        else:
            out = den(ref["x"], ref["t"], pack_pooled(ref["cond"], ref["pooled"]))
    channels = out.shape[1]
    return {"params": published["params"], "file": [wd / "transformer"], "load_s": seconds, "rss": rss,
            "config": diffs, "weights": weights, "forward": (out - ref["out"][:, :channels]).abs().max().item(),
            "scale": ref["out"].abs().max().item(), "model_class": ckpt.model_class,
            "what": "transformer folder, published config.json, " + ("fp16" if kind in ("sd3", "sd35", "flux") else "fp32")}


# ---------------------------------------------------------------------------------------- driver


def _group(case: str) -> str:
    return next(g for g, cases in CASES.items() if case in cases)


def run_stage(stage: str, case: str, wd: Path, smoke: bool) -> Dict[str, Any]:
    import torch

    _quiet()
    torch.set_grad_enabled(False)
    if stage == "write":
        group = case
        if group in ("sd15", "sd21"):
            return write_sd(wd, group, smoke)
        if group == "sdxl":
            return write_sdxl(wd, smoke)
        if group == "controlnet":
            return write_controlnet(wd, smoke)
        return write_transformer(wd, group, smoke)
    group = _group(case)
    if group in ("sd15", "sd21"):
        result = load_sd(wd, case)
    elif group == "sdxl":
        result = load_sdxl(wd, case)
    elif group == "controlnet":
        result = load_controlnet(wd, case)
    else:
        result = load_transformer(wd, case)
    result["file_gb"] = _file_gb(result.pop("file"))
    result["peak_rss_all"] = _peak_rss_gb()
    return result


def _child(stage: str, case: str, wd: Path, smoke: bool) -> Dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--stage", stage, "--case", case, "--workdir", str(wd)]
    if smoke:
        cmd.append("--smoke")
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=str(ROOT))
    elapsed = time.perf_counter() - start
    result_lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not result_lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines() or ["no output"]
        return {"error": f"{stage} failed (exit {proc.returncode}): {tail[-1]}", "seconds": elapsed}
    result = json.loads(result_lines[-1][len("RESULT "):])
    result["seconds"] = elapsed
    return result


#: float32 parameters of the loaded model(s) and the file read whole, in GB: what a load needs at least
_PREDICTED_PARAMS = {"sd15": 0.98e9, "sd21": 0.95e9, "controlnet": 1.35e9, "dit": 0.68e9, "pixart": 0.61e9,
                     "sd3": 2.03e9, "sd35": 2.47e9, "flux": 11.9e9, "sdxl": 2.65e9}
_PREDICTED_FILE_BYTES_PER_PARAM = {"sd15": 2, "sd21": 2, "controlnet": 2.5, "dit": 4, "pixart": 4, "sd3": 2,
                                   "sd35": 2, "flux": 2,
                                   "sdxl": 2.62}  # SDXL: the file holds the two encoders (0.82 B) in float16 too


def _predicted_gb(group: str) -> float:
    params = _PREDICTED_PARAMS[group]
    return params * (4 + _PREDICTED_FILE_BYTES_PER_PARAM[group]) / 1e9 + 0.6


def _fmt(x: Optional[float], spec: str) -> str:
    return "-" if x is None else format(x, spec)


def table(rows: List[Dict[str, Any]]) -> str:
    head = ("| model | params | file size | load s | peak RSS | config match | max abs diff weights | "
            "max abs diff forward (max abs output) |")
    lines = [head, "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        if "skipped" in row or "error" in row:
            why = row.get("skipped") or row.get("error")
            lines.append(f"| {row['case']} | - | - | - | - | {'skipped' if 'skipped' in row else 'ERROR'}: {why} "
                         "| - | - |")
            continue
        match = "yes" if not row["config"] else "no: " + "; ".join(row["config"])
        forward = f"{row['forward']:.2e} ({row['scale']:.3g})"
        if "text" in row:
            forward += f"; prompt embedding {row['text']:.1e}"
        lines.append(f"| {row['case']} | {row['params'] / 1e6:.0f} M | {row['file_gb']:.2f} GB | {row['load_s']:.1f} "
                     f"| {row['rss']:.2f} GB | {match} | {row['weights']:.1e} | {forward} |")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated groups of {', '.join(CASES)}")
    parser.add_argument("--workdir", type=Path, default=None, help="where the files are written (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the written files")
    parser.add_argument("--smoke", action="store_true", help="shrunken configs: checks the script in a minute")
    parser.add_argument("--max-rss-gb", type=float, default=10.0, help="skip a case predicted to need more")
    parser.add_argument("--stage", choices=("write", "load"), help=argparse.SUPPRESS)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.stage:
        result = run_stage(args.stage, args.case, args.workdir, args.smoke)
        print("RESULT " + json.dumps(result, default=str))
        return 0

    groups = [g.strip() for g in args.cases.split(",") if g.strip()]
    unknown = [g for g in groups if g not in CASES]
    if unknown:
        parser.error(f"unknown cases {unknown}; choose from {', '.join(CASES)}")
    top = args.workdir or Path(tempfile.mkdtemp(prefix="collapsecheck-realsize-"))
    rows: List[Dict[str, Any]] = []
    for group in groups:
        need = _predicted_gb(group) if not args.smoke else 1.0
        if need > args.max_rss_gb:
            for case in CASES[group]:
                rows.append({"case": case, "skipped": f"a float32 load needs about {need:.1f} GB "
                                                      f"(> --max-rss-gb {args.max_rss_gb:g})"})
            print(f"[{group}] skipped: about {need:.1f} GB needed", flush=True)
            continue
        wd = top / group
        wd.mkdir(parents=True, exist_ok=True)
        print(f"[{group}] writing ({_available_gb():.1f} GB available) ...", flush=True)
        written = _child("write", group, wd, args.smoke)
        if "error" in written:
            rows += [{"case": case, "error": written["error"]} for case in CASES[group]]
            print(f"[{group}] {written['error']}", flush=True)
        else:
            print(f"[{group}] written in {written['seconds']:.0f} s", flush=True)
            for case in CASES[group]:
                row = {"case": case, **_child("load", case, wd, args.smoke)}
                rows.append(row)
                print(f"[{case}] {json.dumps(row, default=str)}", flush=True)
        if not args.keep:
            shutil.rmtree(wd, ignore_errors=True)
    if not args.keep and args.workdir is None:
        shutil.rmtree(top, ignore_errors=True)
    print()
    print(table(rows))
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
