"""Format: a ``ControlNetModel`` folder on the Stable-Diffusion pipeline it was trained for.

Accepted as CHECKPOINT, always with the base pipeline's UNet, scheduler, VAE and text encoder:

* a ControlNet folder (``config.json`` with ``_class_name: ControlNetModel`` + weights), as
  ``train_controlnet.py`` writes its output folder, with ``--base SD_PIPELINE``;
* a training checkpoint ``checkpoint-N/`` holding ``controlnet/``, with ``--base``;
* a ControlNet pipeline folder (``model_index.json``, ``controlnet/``, ``unet/``, ...), its own base.

The hints come from ``--cond`` (see :func:`conditions.hint_conditions`); the text is one prompt from
``--prompts`` (a file of one line) or the empty prompt, or, as ``train_controlnet.py``'s validation sets, N prompts
paired with N hints (or with one hint), each condition a (prompt, hint) pair
(:func:`conditions.pair_hints_with_prompts`). The loaded checkpoint's ``model`` is the ControlNet;
its ``control`` parts (the base UNet, the text, the scales) make the denoiser in
:mod:`collapsecheck.model.control`, which explains the null.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import List, Tuple

import torch

from ..errors import LoadError, UsageError
from .attach import pipeline_decoder
from .build import build_model, plain, strip_prefixes
from .configs import latent_shape, text_width
from .files import combined_hash, hash_files, read_json, read_state_dict
from .layout import CONTROLNET_CLASS, controlnet_folder, model_folder_files
from .loaded import ControlParts, LoadedCheckpoint
from .options import LoadOptions
from .pipeline import encode_texts, pipeline_root, read_model_index, read_prompts
from .weights import load_weights

NAME = "ControlNet folder (ControlNetModel config, or controlnet/ inside)"


def detect(path: Path, options: LoadOptions) -> bool:
    """A folder whose ``config.json`` (or ``controlnet/config.json``) names ``ControlNetModel``."""
    return path.is_dir() and controlnet_folder(path) is not None


def load(path: Path, options: LoadOptions) -> LoadedCheckpoint:
    """The ControlNet in ``path`` on its base UNet: the ControlNet as ``model``, the rest in ``control``."""
    folder = controlnet_folder(path)
    base = control_base(path, folder, options)
    prompts = _check_control_options(options)
    notes: List[str] = []
    controlnet, cn_cfg, files = _load_controlnet(folder, notes)
    unet = _load_base_unet(base, options)
    ucfg = unet.model_config
    _check_fit(folder, base, ucfg, cn_cfg)
    text, text_source, _ = encode_texts(pipeline_root(base), prompts, text_width(ucfg))
    notes.append(
        f"ControlNet {folder} on the UNet of {base} at conditioning scale {options.controlnet_scale:g}; "
        + _text_note(prompts) + f" ({text_source}); the null condition is the ControlNet switched off, so guidance "
        "w scales what the ControlNet adds to the base model"
    )
    sample_shape = latent_shape(ucfg)
    control = ControlParts(base_model=unet.model, sample_shape=sample_shape, text=text,
                           conditioning_scale=float(options.controlnet_scale),
                           hint_shape=_hint_shape(cn_cfg, sample_shape), prompts=tuple(prompts))
    return replace(unet, model=controlnet, model_class=CONTROLNET_CLASS, model_config={**cn_cfg, "base_unet": ucfg},
                   source=f"{folder} on {unet.source}", notes=tuple(notes) + unet.notes,
                   content_hash=combined_hash(hash_files(files), unet.content_hash), control=control)


def control_base(root: Path, folder: Path, options: LoadOptions) -> Path:
    """The pipeline folder the ControlNet runs on: ``--base``, else ``root`` when it is a ControlNet pipeline."""
    base = options.base_path
    if base is None:
        if pipeline_root(root) is None or not (root / "unet").is_dir():
            raise UsageError(f"{folder} is a ControlNet: pass the Stable Diffusion pipeline it was trained on "
                             "with --base SD_PIPELINE_FOLDER")
        base = root
    if pipeline_root(base) is None:
        raise UsageError(f"--base {base} is not a pipeline folder (model_index.json); a ControlNet needs the "
                         "pipeline's UNet, scheduler, VAE and text encoder")
    return base


def _text_note(prompts: List[str]) -> str:
    """What the text is: the one prompt, the empty prompt, or the prompts of (prompt, hint) pairs."""
    if len(prompts) > 1:
        return f"each condition is a (prompt, hint) pair of the {len(prompts)} prompts of --prompts"
    return "the text is " + (f"the prompt '{prompts[0]}'" if prompts[0] else "the empty prompt")


def _check_control_options(options: LoadOptions) -> List[str]:
    """UsageError for options that do not apply to a ControlNet scan; returns its prompts (one, or one per hint)."""
    if options.weights != "auto":
        raise UsageError(f"--weights {options.weights} selects a UNet folder; a ControlNet scan takes the UNet of "
                         "--base")
    if options.negative_prompt is not None:
        raise UsageError("--negative-prompt does not apply to a ControlNet scan: its null condition is the "
                         "ControlNet switched off (the base model with the same prompt)")
    texts = read_prompts(str(options.prompts)) if options.prompts is not None else [""]
    if options.lora is not None:
        raise UsageError("--lora with a ControlNet scan is not supported: fuse the LoRA into the base pipeline "
                         "(pipe.fuse_lora(); pipe.save_pretrained(...)) and pass that as --base")
    if options.controlnet_scale <= 0:
        raise UsageError(f"--controlnet-scale must be above 0, but got {options.controlnet_scale:g}")
    return texts


def _load_controlnet(folder: Path, notes: List[str]) -> Tuple[torch.nn.Module, dict, List[Path]]:
    """The ControlNet network, its config and its weight files."""
    files = model_folder_files(folder)
    if files is None:
        raise UsageError(f"{folder} holds no diffusion_pytorch_model.safetensors or .bin")
    cfg = read_json(folder / "config.json", LoadError, "ControlNet config")
    state = strip_prefixes(read_state_dict(files), notes)
    controlnet, cn_cfg = build_model(cfg, str(folder / "config.json"), state, notes, allowed=(CONTROLNET_CLASS,))
    return controlnet, cn_cfg, files


def _load_base_unet(base: Path, options: LoadOptions) -> LoadedCheckpoint:
    """The base pipeline's UNet (its scheduler, ``--scheduler``, ``--prediction-type``) with the pipeline's VAE."""
    unet_path = base / "unet" if (base / "unet").is_dir() else base
    unet = load_weights(unet_path, LoadOptions(scheduler=options.scheduler, prediction_type=options.prediction_type))
    if unet.model_class != "UNet2DConditionModel":
        raise LoadError(f"--base {base} holds a {unet.model_class}; a ControlNet needs a UNet2DConditionModel")
    if unet.pipeline is None:
        return unet
    notes = list(unet.notes)
    decoder, info = pipeline_decoder(unet.pipeline, read_model_index(unet.pipeline), unet.model_config, notes)
    return replace(unet, notes=tuple(notes), decoder=decoder, decoder_info=info, pipeline=None)


def _check_fit(folder: Path, base: Path, ucfg: dict, cn_cfg: dict) -> None:
    """LoadError unless the ControlNet was built for this (non-SDXL) UNet."""
    if ucfg.get("addition_embed_type") == "text_time":
        raise LoadError(f"--base {base} holds an SDXL UNet (text_time size conditions): SDXL ControlNets are not "
                        "supported yet")
    mismatch = [k for k in ("in_channels", "cross_attention_dim", "block_out_channels")
                if plain(ucfg.get(k)) != plain(cn_cfg.get(k))]
    if mismatch:
        raise LoadError(f"the ControlNet in {folder} does not fit the UNet of {base} (they differ in "
                        f"{', '.join(mismatch)}): is --base the pipeline it was trained on?")


def _hint_shape(cn_cfg: dict, sample_shape: Tuple[int, int, int]) -> Tuple[int, int, int]:
    """(channels, H, W) of the hints: the latent size times the ControlNet's conditioning downsampling."""
    factor = 2 ** (len(cn_cfg.get("conditioning_embedding_out_channels") or (16, 32, 96, 256)) - 1)
    return int(cn_cfg.get("conditioning_channels", 3)), sample_shape[1] * factor, sample_shape[2] * factor
