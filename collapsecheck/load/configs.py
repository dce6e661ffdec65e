"""Model configs: where a checkpoint's config comes from, and the facts the rest of the scan reads off it.

Facts (pure functions of a diffusers config dict): :func:`latent_shape`, :func:`text_width`,
:func:`pooled_dims`, :func:`is_text_time`, :func:`text_time_pooled_width`. Resolution
(:func:`resolve_model_config`, :func:`base_sources`): ``--config``, else the folder's ``config.json``
(model folders) or the safetensors metadata (bare files), else ``config.json`` beside the file; ``--base``
supplies a config and scheduler a bare weight file lacks.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Tuple

from ..errors import LoadError, UsageError
from .files import is_safetensors, json_in, json_metadata, read_json

if TYPE_CHECKING:
    from .layout import Located

#: SDXL's time ids: original size (2), crop top-left (2), target size (2)
SDXL_TIME_IDS = 6
#: the latent side of FluxPipeline's default image (default_sample_size 128: 1024 px through an 8x VAE); a Flux
#: transformer config has no sample_size (one written into it sets the scanned size)
FLUX_LATENT_SIZE = 128


def _size(value) -> Tuple[int, int]:
    if isinstance(value, (list, tuple)):
        return int(value[0]), int(value[1])
    return int(value), int(value)


def latent_shape(config: dict) -> Tuple[int, int, int]:
    """(C, H, W) of the samples a network without concatenated conditions draws, from its config: the fewer of
    its input and output channels (a learned-variance output is twice the input), at ``sample_size``; a Flux
    transformer's (packed 2x2) latents have a quarter of its input channels, at :data:`FLUX_LATENT_SIZE`."""
    if config.get("_class_name") == "FluxTransformer2DModel":  # 2x2 patches packed into 4 C channels
        height, width = _size(config.get("sample_size", FLUX_LATENT_SIZE))
        return int(config["in_channels"]) // 4, height, width
    height, width = _size(config.get("sample_size", 64))
    in_channels = int(config["in_channels"])
    return min(in_channels, int(config.get("out_channels") or in_channels)), height, width


def text_width(config: dict) -> int:
    """Width of the text embeddings the model takes: a UNet's cross_attention_dim, a PixArt's caption_channels."""
    dim = config.get("caption_channels") or config.get("cross_attention_dim")
    return int(dim[0] if isinstance(dim, (list, tuple)) else dim)


def is_text_time(config: dict) -> bool:
    """An SDXL-style UNet: a pooled text embedding and size time ids are added to the timestep embedding."""
    return config.get("addition_embed_type") == "text_time"


def text_time_pooled_width(config: dict) -> int:
    """The pooled embedding width of an SDXL-style UNet: what its added embedding takes besides the 6 time ids.

    A refiner-style UNet takes 5 (an aesthetic score instead of the target size); the config alone cannot tell,
    so its pooled width reads as ``addition_time_embed_dim`` too small."""
    width = int(config["projection_class_embeddings_input_dim"]) - SDXL_TIME_IDS * int(config["addition_time_embed_dim"])
    if width <= 0:
        raise UsageError(f"this text_time UNet's projection_class_embeddings_input_dim "
                         f"({config['projection_class_embeddings_input_dim']}) leaves no room for a pooled embedding "
                         f"beside {SDXL_TIME_IDS} time ids of addition_time_embed_dim {config['addition_time_embed_dim']}; "
                         "only SDXL base-style UNets are supported (not refiners, which take 5 time ids)")
    return width


def pooled_dims(model_class: str, config: dict) -> Optional[Tuple[int, int]]:
    """(token width, pooled width) for models that take a pooled text embedding (SD3 transformers, SDXL UNets),
    else None."""
    if model_class in ("SD3Transformer2DModel", "FluxTransformer2DModel"):
        return int(config["joint_attention_dim"]), int(config["pooled_projection_dim"])
    if is_text_time(config):
        return text_width(config), text_time_pooled_width(config)
    return None


# ---------------------------------------------------------------------------------------- resolution


def base_sources(
    root: Path, base: Optional[Any], config: Optional[Any], scheduler: Optional[Any]
) -> Tuple[Optional[Any], Optional[Any], str]:
    """(config, scheduler, the flag that names the config in messages): ``--base`` supplies the model config and
    scheduler of ``root`` (unless given explicitly, or ``root`` is the base itself)."""
    if base is None or root == Path(base):
        return config, scheduler, "--config"
    base = Path(base)
    flag = "--config" if config is not None else f"--base {base}:"
    if config is None:
        config = _first_file(base / "unet" / "config.json", base / "transformer" / "config.json", base / "config.json")
        if config is None:
            raise UsageError(f"--base {base} holds none of unet/config.json, transformer/config.json and config.json; "
                             "pass --config CONFIG.json")
    if scheduler is None:
        scheduler = _first_file(base / "scheduler" / "scheduler_config.json", base / "scheduler_config.json")
    return config, scheduler, flag


def _first_file(*candidates: Path) -> Optional[Path]:
    return next((c for c in candidates if c.is_file()), None)


def resolve_model_config(
    config: Optional[Any], located: "Located", metadata: Mapping[str, str], notes: List[str],
    flag: str = "--config",
) -> Tuple[Dict[str, Any], str]:
    """The model config and a label saying where it came from (``flag``: --config or --base)."""
    has_json = located.config_json.is_file()
    if config is not None:
        cfg_path = json_in(Path(config), "config.json", flag)
        if has_json or "config" in metadata:
            notes.append(f"model config taken from {flag} {cfg_path}, overriding the one stored with the weights")
        else:
            notes.append(f"model config taken from {flag} {cfg_path}")
        return read_json(cfg_path, UsageError, flag), f"{flag} {cfg_path}"
    if located.config_json_first and has_json:
        return read_json(located.config_json, LoadError, "model config"), str(located.config_json)
    stored = json_metadata(dict(metadata), "config", located.files[0])
    if stored is not None:
        notes.append("model config taken from the safetensors metadata")
        return stored, "the safetensors metadata"
    if has_json:
        notes.append(f"model config taken from {located.config_json_label}")
        return read_json(located.config_json, LoadError, "model config"), located.config_json_label
    where = "the file's metadata and " if is_safetensors(located.files[0]) else ""
    raise UsageError(
        f"{located.source}: no model config found (looked in {where}for config.json beside it); "
        "pass --config CONFIG.json, or --base PIPELINE_OR_UNET_FOLDER to take the config (and scheduler) from there"
    )
