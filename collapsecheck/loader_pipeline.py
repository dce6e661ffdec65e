"""Stable-Diffusion-style pipeline folders (``model_index.json``): prompts and the VAE.

A pipeline folder holds ``unet/`` and ``scheduler/`` (loaded by :mod:`checkpoint` like any folder
holding ``unet/``), and here the rest:

* ``text_encoder/`` + ``tokenizer/``: transformers' ``CLIPTextModel`` and ``CLIPTokenizer``, loaded
  with ``local_files_only=True``, encode ``--prompts`` (one per line) into the UNet's
  ``encoder_hidden_states``; the null condition is the empty prompt or ``--negative-prompt``;
* SD3 (``StableDiffusion3Pipeline``, ``transformer/``): the pipeline's own ``encode_prompt`` (two CLIP
  encoders, T5 when present) gives embeddings and pooled embeddings, packed into one row per prompt;
* ``vae/``: ``AutoencoderKL`` whose decoder turns sampled latents into images in [-1, 1]
  (``latents / scaling_factor + shift_factor``, as diffusers' pipelines do) before any measure.

transformers is imported lazily; it comes with the ``pipelines`` extra.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from .conditions import ConditionSet  # noqa: E402
from .errors import LoadError, UsageError  # noqa: E402

#: pipelines whose UNet needs more than one text encoder's hidden states (not supported yet)
UNSUPPORTED_PIPELINES = ("StableDiffusionXLPipeline", "StableDiffusionXLImg2ImgPipeline")


def pipeline_root(path: Path) -> Optional[Path]:
    """The folder holding ``model_index.json`` for ``path`` (itself, or above ``unet/``), or None."""
    candidates = [path] if path.is_dir() else []
    if path.name in ("unet", "unet_ema", "transformer") or (
        path.is_file() and path.parent.name in ("unet", "unet_ema", "transformer")
    ):
        candidates.append(path.parent if path.is_dir() else path.parent.parent)
    return next((c for c in candidates if (c / "model_index.json").is_file()), None)


def read_model_index(root: Path) -> Dict[str, Any]:
    path = root / "model_index.json"
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise LoadError(f"{path} is not valid JSON ({str(exc).splitlines()[0]})") from None
    if not isinstance(index, dict):
        raise LoadError(f"{path} is not a JSON object")
    name = index.get("_class_name")
    if name in UNSUPPORTED_PIPELINES:
        raise LoadError(f"{root}: {name} is not supported yet (its UNet needs more than one text encoder); "
                        "scan its unet/ with --cond embeddings instead")
    return index


def _transformers():
    try:
        import transformers
    except ImportError:
        raise UsageError("--prompts needs transformers to run the pipeline's text encoder: "
                         "pip install 'collapsecheck[pipelines]'") from None
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    return transformers


def read_prompts(path: str) -> List[str]:
    """One prompt per line; blank lines are skipped."""
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"--prompts {file} does not exist; pass a text file with one prompt per line")
    try:
        prompts = [line.strip() for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--prompts {file} cannot be read as UTF-8 text ({str(exc).splitlines()[0]})") from None
    if not prompts:
        raise UsageError(f"--prompts {file} holds no prompt; write one prompt per line")
    return prompts


def encode_prompts(
    root: Path, prompts_file: str, negative_prompt: Optional[str], cross_attention_dim: int
) -> Tuple[ConditionSet, List[str]]:
    """Encode the prompts (and the null prompt) with the pipeline's own tokenizer and text encoder."""
    missing = [name for name in ("text_encoder", "tokenizer") if not (root / name).is_dir()]
    if missing:
        raise UsageError(f"--prompts needs the pipeline's {' and '.join(m + '/' for m in missing)} in {root}; "
                         "or pass precomputed embeddings with --cond FILE")
    prompts = read_prompts(prompts_file)
    tf = _transformers()
    try:
        tokenizer = tf.CLIPTokenizer.from_pretrained(str(root / "tokenizer"), local_files_only=True)
    except Exception as exc:
        raise LoadError(f"cannot load the CLIP tokenizer in {root / 'tokenizer'}: {_one_line(exc)}") from None
    try:
        encoder = tf.CLIPTextModel.from_pretrained(str(root / "text_encoder"), local_files_only=True)
    except Exception as exc:
        raise LoadError(f"cannot load the CLIP text encoder in {root / 'text_encoder'}: {_one_line(exc)}") from None
    encoder = encoder.float().eval().requires_grad_(False)
    width = int(encoder.config.hidden_size)
    if width != cross_attention_dim:
        raise LoadError(f"{root / 'text_encoder'} gives {width}-wide embeddings, the UNet's cross_attention_dim is "
                        f"{cross_attention_dim}: the folders do not belong together")
    null_text = "" if negative_prompt is None else negative_prompt
    length = int(tokenizer.model_max_length)
    if length > 100_000:  # tokenizers saved without a limit report a huge sentinel
        length = int(encoder.config.max_position_embeddings)
    texts = prompts + [null_text]
    ids = tokenizer(texts, padding="max_length", max_length=length, truncation=True, return_tensors="pt").input_ids
    full = tokenizer(texts, truncation=False).input_ids
    notes = []
    cut = [t for t, f in zip(texts, full) if len(f) > length]
    if cut:
        notes.append(f"{len(cut)} prompt(s) longer than {length} tokens were truncated, as the pipeline would "
                     f"(e.g. '{cut[0][:40]}')")
    with torch.inference_mode():
        hidden = encoder(ids)[0].float()
    null_source = "the empty prompt" if negative_prompt is None else f"--negative-prompt '{negative_prompt}'"
    conds = ConditionSet(
        kind="cross_attn",
        values=hidden[:-1].clone(),
        null=hidden[-1:].clone(),
        labels=tuple(prompts),
        source=f"--prompts {prompts_file} encoded by {root / 'text_encoder'} ({type(encoder).__name__})",
        null_source=null_source,
        notes=tuple(notes),
    )
    return conds, notes


def encode_sd3_prompts(
    root: Path, prompts_file: str, negative_prompt: Optional[str], transformer: torch.nn.Module
) -> ConditionSet:
    """Encode the prompts (and the null prompt) with a StableDiffusion3Pipeline folder's own ``encode_prompt``
    (its CLIP encoders, and T5 when the folder has it), packed with the pooled embeddings per condition."""
    from .conditions import pack_pooled

    prompts = read_prompts(prompts_file)
    _transformers()
    from diffusers import StableDiffusion3Pipeline
    from diffusers.utils import logging as diffusers_logging

    level, bars = diffusers_logging.get_verbosity(), diffusers_logging.is_progress_bar_enabled()
    diffusers_logging.set_verbosity_error()
    diffusers_logging.disable_progress_bar()
    absent = {name: None for name in ("text_encoder_3", "tokenizer_3") if not (root / name).is_dir()}
    try:  # the transformer is passed in: encode_prompt reads its joint_attention_dim when T5 is absent
        pipe = StableDiffusion3Pipeline.from_pretrained(str(root), transformer=transformer, vae=None,
                                                        image_encoder=None, feature_extractor=None,
                                                        local_files_only=True, **absent)
    except Exception as exc:
        raise LoadError(f"cannot load the text encoders of {root} (StableDiffusion3Pipeline): {_one_line(exc)}") from None
    finally:
        diffusers_logging.set_verbosity(level)
        if bars:
            diffusers_logging.enable_progress_bar()
    null_text = "" if negative_prompt is None else negative_prompt
    with torch.inference_mode():
        embeds, null, pooled, null_pooled = pipe.encode_prompt(
            prompts, None, None, device=torch.device("cpu"), do_classifier_free_guidance=True,
            negative_prompt=[null_text] * len(prompts))
    notes = [] if pipe.text_encoder_3 is not None else [
        f"{root} has no text_encoder_3 (T5): its tokens are zeros, as the pipeline does without it"]
    return ConditionSet(
        kind="cross_attn",
        values=pack_pooled(embeds.float(), pooled.float()),
        null=pack_pooled(null[:1].float(), null_pooled[:1].float()),
        labels=tuple(prompts),
        source=f"--prompts {prompts_file} encoded by {root} (StableDiffusion3Pipeline.encode_prompt)",
        null_source="the empty prompt" if negative_prompt is None else f"--negative-prompt '{negative_prompt}'",
        notes=tuple(notes),
    )


@dataclass
class LatentDecoder:
    """``decode(latents) -> images in [-1, 1]`` with a diffusers ``AutoencoderKL``; kept in float32."""

    vae: torch.nn.Module
    scaling_factor: float
    shift_factor: float
    source: str

    def __call__(self, latents: torch.Tensor) -> torch.Tensor:
        device = next(self.vae.parameters()).device
        z = latents.to(device=device, dtype=torch.float32) / self.scaling_factor + self.shift_factor
        return self.vae.decode(z).sample.float().clamp(-1.0, 1.0).to(latents.device)

    def to(self, device: torch.device | str) -> "LatentDecoder":
        self.vae.to(device=device)
        return self


def load_vae(root: Path, latent_shape: Sequence[int]) -> Tuple[LatentDecoder, Dict[str, Any]]:
    """The pipeline's VAE as a :class:`LatentDecoder`, and a JSON-ready description of it."""
    folder = root / "vae"
    from diffusers import AutoencoderKL
    from diffusers.utils import logging as diffusers_logging

    level = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()
    try:
        vae = AutoencoderKL.from_pretrained(str(folder), local_files_only=True, low_cpu_mem_usage=False)
    except Exception as exc:
        raise LoadError(f"cannot load the VAE in {folder} (AutoencoderKL): {_one_line(exc)}") from None
    finally:
        diffusers_logging.set_verbosity(level)
    vae = vae.float().eval().requires_grad_(False)
    cfg = vae.config
    channels = int(latent_shape[0])
    if int(cfg.latent_channels) != channels:
        raise LoadError(f"{folder} has {cfg.latent_channels} latent channels, the UNet samples {channels}: "
                        "the folders do not belong together")
    scaling = float(cfg.scaling_factor if cfg.scaling_factor is not None else 0.18215)
    shift = float(getattr(cfg, "shift_factor", None) or 0.0)
    factor = 2 ** (len(cfg.block_out_channels) - 1)
    image_shape = [int(cfg.out_channels), int(latent_shape[1]) * factor, int(latent_shape[2]) * factor]
    info = {
        "source": str(folder),
        "class": type(vae).__name__,
        "scaling_factor": scaling,
        "shift_factor": shift,
        "latent_shape": [int(d) for d in latent_shape],
        "image_shape": image_shape,
    }
    return LatentDecoder(vae=vae, scaling_factor=scaling, shift_factor=shift, source=str(folder)), info


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line if len(line) <= 200 else line[:197] + "..."
