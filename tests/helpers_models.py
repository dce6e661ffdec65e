"""Tiny, seeded diffusers UNets built in-process, and a writer for bare safetensors checkpoints.

Every builder returns a model in eval mode with ``sample_size=8`` and one output channel; the
global torch RNG is left untouched (the seed only drives the weight initialisation).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Optional, Union

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from diffusers import UNet2DConditionModel, UNet2DModel  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

_SMALL = dict(
    sample_size=8,
    out_channels=1,
    block_out_channels=(8, 16),
    layers_per_block=1,
    norm_num_groups=4,
)


def _seeded(seed: int, build):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build().eval()


def tiny_class_unet(num_classes: int = 10, null: bool = True, seed: int = 0) -> UNet2DModel:
    """Class-conditional ``UNet2DModel`` (~42k params); with ``null`` the id ``num_classes`` is the null class."""
    return _seeded(
        seed,
        lambda: UNet2DModel(
            in_channels=1,
            down_block_types=("DownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "UpBlock2D"),
            num_class_embeds=num_classes + (1 if null else 0),
            **_SMALL,
        ),
    )


def tiny_concat_unet(cond_channels: int = 1, seed: int = 0) -> UNet2DModel:
    """``UNet2DModel`` taking ``[x_t, cond]`` concatenated on channels (``in_channels = 1 + cond_channels``)."""
    return _seeded(
        seed,
        lambda: UNet2DModel(
            in_channels=1 + cond_channels,
            down_block_types=("DownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "UpBlock2D"),
            **_SMALL,
        ),
    )


def tiny_crossattn_unet(cross_dim: int = 16, seed: int = 0) -> UNet2DConditionModel:
    """Cross-attention ``UNet2DConditionModel`` (~50k params) with ``encoder_hidden_states`` of width ``cross_dim``."""
    return _seeded(
        seed,
        lambda: UNet2DConditionModel(
            in_channels=1,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=cross_dim,
            attention_head_dim=4,
            **_SMALL,
        ),
    )


def model_config_json(model: torch.nn.Module) -> str:
    """The model's diffusers config as a JSON string with ``_class_name`` set (tuples become lists)."""
    cfg = {k: v for k, v in dict(model.config).items() if k != "_use_default_values"}
    cfg["_class_name"] = type(model).__name__
    return json.dumps(cfg)


def save_bare_safetensors(
    model: torch.nn.Module,
    path: Union[str, "os.PathLike[str]"],
    scheduler_config: Optional[Mapping[str, Any]] = None,
    *,
    key_prefix: str = "",
    with_config: bool = True,
) -> Path:
    """Write ``model``'s state dict to one ``.safetensors`` file with its config in the metadata.

    Metadata keys: ``config`` (the diffusers model config, JSON) unless ``with_config`` is False, and
    ``scheduler_config`` (JSON) when given. ``key_prefix`` is prepended to every key (e.g. ``"module."``).
    """
    path = Path(path)
    metadata = {}
    if with_config:
        metadata["config"] = model_config_json(model)
    if scheduler_config is not None:
        metadata["scheduler_config"] = json.dumps(dict(scheduler_config))
    state = {key_prefix + k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata=metadata)
    return path
