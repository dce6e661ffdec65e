"""ControlNets: a ``ControlNetModel`` folder on the Stable-Diffusion pipeline it was trained for.

Accepted as CHECKPOINT, always with the base pipeline's UNet, scheduler, VAE and text encoder:

* a ControlNet folder (``config.json`` with ``_class_name: ControlNetModel`` + weights), as
  ``train_controlnet.py`` writes its output folder, with ``--base SD_PIPELINE``;
* a training checkpoint ``checkpoint-N/`` holding ``controlnet/``, with ``--base``;
* a ControlNet pipeline folder (``model_index.json``, ``controlnet/``, ``unet/``, ...), its own base.

The hints come from ``--cond`` (see :func:`conditions.hint_conditions`); the text is one prompt from
``--prompts`` (a file of one line) or the empty prompt. :mod:`denoiser_control` explains the null.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import List, Optional

from ..errors import LoadError, UsageError

CONTROLNET_CLASS = "ControlNetModel"


def controlnet_folder(root: Path) -> Optional[Path]:
    """The ControlNet model folder ``root`` is or holds (``controlnet/``), or None."""
    for folder in (root, root / "controlnet"):
        config = folder / "config.json"
        if folder.is_dir() and config.is_file():
            try:
                name = json.loads(config.read_text(encoding="utf-8")).get("_class_name")
            except (OSError, ValueError, AttributeError):
                continue  # not ours to judge: the general loader reports a bad config.json
            if name == CONTROLNET_CLASS:
                return folder
    return None


def load_controlnet(
    root: Path,
    folder: Path,
    *,
    base: Optional[Path],
    scheduler=None,
    weights: str = "auto",
    prediction_type: Optional[str] = None,
    lora=None,
    prompts=None,
    negative_prompt: Optional[str] = None,
    conditioning_scale: float = 1.0,
):
    """The ControlNet in ``folder`` on its base UNet, as a LoadedCheckpoint with a ready ControlDenoiser."""
    from dataclasses import replace

    from .dispatch import _build_model, _hash_files, _model_folder_files, _read_state_dict, _read_json, _strip_prefixes, load_checkpoint
    from ..model.denoiser import latent_shape, text_width
    from ..model.control import ControlDenoiser
    from .pipeline import encode_texts, pipeline_root, read_prompts

    if base is None:
        if pipeline_root(root) is None or not (root / "unet").is_dir():
            raise UsageError(f"{folder} is a ControlNet: pass the Stable Diffusion pipeline it was trained on "
                             "with --base SD_PIPELINE_FOLDER")
        base = root
    if pipeline_root(base) is None:
        raise UsageError(f"--base {base} is not a pipeline folder (model_index.json); a ControlNet needs the "
                         "pipeline's UNet, scheduler, VAE and text encoder")
    if weights != "auto":
        raise UsageError(f"--weights {weights} selects a UNet folder; a ControlNet scan takes the UNet of --base")
    if negative_prompt is not None:
        raise UsageError("--negative-prompt does not apply to a ControlNet scan: its null condition is the "
                         "ControlNet switched off (the base model with the same prompt)")
    texts = read_prompts(str(prompts)) if prompts is not None else [""]
    if len(texts) != 1:
        raise UsageError(f"--prompts {prompts} holds {len(texts)} prompts; a ControlNet scan takes one fixed "
                         "prompt (the conditions are the hints of --cond): write one line")
    if lora is not None:
        raise UsageError("--lora with a ControlNet scan is not supported: fuse the LoRA into the base pipeline "
                         "(pipe.fuse_lora(); pipe.save_pretrained(...)) and pass that as --base")
    if conditioning_scale <= 0:
        raise UsageError(f"--controlnet-scale must be above 0, but got {conditioning_scale:g}")

    notes: List[str] = []
    files = _model_folder_files(folder)
    if files is None:
        raise UsageError(f"{folder} holds no diffusion_pytorch_model.safetensors or .bin")
    cfg = _read_json(folder / "config.json", LoadError, "ControlNet config")
    state = _strip_prefixes(_read_state_dict(files), notes)
    controlnet, cn_cfg = _build_model(cfg, str(folder / "config.json"), state, notes, allowed=(CONTROLNET_CLASS,))

    unet_path = base / "unet" if (base / "unet").is_dir() else base
    ckpt = load_checkpoint(unet_path, scheduler=scheduler, prediction_type=prediction_type)
    if ckpt.model_class != "UNet2DConditionModel":
        raise LoadError(f"--base {base} holds a {ckpt.model_class}; a ControlNet needs a UNet2DConditionModel")
    ucfg = ckpt.model_config
    if ucfg.get("addition_embed_type") == "text_time":
        raise LoadError(f"--base {base} holds an SDXL UNet (text_time size conditions): SDXL ControlNets are not "
                        "supported yet")
    mismatch = [k for k in ("in_channels", "cross_attention_dim", "block_out_channels")
                if _plain(ucfg.get(k)) != _plain(cn_cfg.get(k))]
    if mismatch:
        raise LoadError(f"the ControlNet in {folder} does not fit the UNet of {base} (they differ in "
                        f"{', '.join(mismatch)}): is --base the pipeline it was trained on?")
    text, text_source, _ = encode_texts(pipeline_root(base), texts, text_width(ucfg))

    channels, height, width = latent_shape(ucfg)
    factor = 2 ** (len(cn_cfg.get("conditioning_embedding_out_channels") or (16, 32, 96, 256)) - 1)
    hint_shape = (int(cn_cfg.get("conditioning_channels", 3)), height * factor, width * factor)
    denoiser = ControlDenoiser(
        model=ckpt.model, kind="control", sample_shape=(channels, height, width), decoder=ckpt.decoder,
        controlnet=controlnet, text=text, conditioning_scale=float(conditioning_scale), hint_shape=hint_shape,
    )
    prompt = texts[0]
    notes.append(
        f"ControlNet {folder} on the UNet of {base} at conditioning scale {conditioning_scale:g}; the text is "
        + (f"the prompt '{prompt}'" if prompt else "the empty prompt")
        + f" ({text_source}); the null condition is the ControlNet switched off, so guidance w scales what the "
        "ControlNet adds to the base model"
    )
    digest = hashlib.sha256((_hash_files(files) + ckpt.content_hash).encode()).hexdigest()[:16]
    return replace(
        ckpt,
        model=controlnet,
        model_class=CONTROLNET_CLASS,
        model_config={**cn_cfg, "base_unet": ucfg},
        source=f"{folder} on {ckpt.source}",
        notes=tuple(notes) + ckpt.notes,
        content_hash=digest,
        denoiser=denoiser,
    )


def _plain(value):
    return list(value) if isinstance(value, (list, tuple)) else value
