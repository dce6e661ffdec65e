"""Networks held in memory (a training loop's UNet, a ``DiffusionPipeline``) as a :class:`LoadedCheckpoint`.

:func:`loaded_in_memory` takes the objects themselves: a diffusers network (unwrapped from DDP or
``torch.compile``), its scheduler (a diffusers scheduler object or its config dict), a VAE; nothing is written
to disk and no weight is copied: :attr:`LoadedCheckpoint.model` is the caller's own module (the scan that uses
it saves and restores its state, :mod:`collapsecheck.preserve`). :func:`pipeline_parts` takes a pipeline
apart; :func:`pipeline_prompt_conditions` encodes prompts with the pipeline's own ``encode_prompt`` (its text
encoders and tokenizers), as its ``__call__`` does.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch

from ..errors import UsageError
from .build import SUPPORTED_MODEL_CLASSES, plain
from .conditions import ConditionSet, pack_pooled
from .configs import latent_shape, pooled_dims, text_width
from .layout import CONTROLNET_CLASS
from .loaded import ControlParts, LoadedCheckpoint
from .scheduler import DEFAULT_SCHEDULER_CONFIG, DEFAULT_SCHEDULER_SOURCE, apply_prediction_type
from .vae import decoder_note, latent_decoder

#: what the result's ``checkpoint.path`` says of a network scanned in memory
IN_MEMORY = "<in memory>"


def network_of(model: Any) -> torch.nn.Module:
    """The diffusers network inside DDP / accelerate (``.module``) and ``torch.compile`` (``._orig_mod``) wrappers."""
    seen = 0
    while seen < 8 and isinstance(model, torch.nn.Module) and type(model).__name__ in (
            "DistributedDataParallel", "DataParallel", "OptimizedModule"):
        model = getattr(model, "module", None) or getattr(model, "_orig_mod")
        seen += 1
    return model


def model_class_of(net: Any) -> str:
    """The supported diffusers class ``net`` is (or derives from); a UsageError naming what it is otherwise."""
    if not isinstance(net, torch.nn.Module) or not hasattr(net, "config"):
        raise UsageError(f"scan_model(model=...): expected a diffusers network or a DiffusionPipeline, got a "
                         f"{type(net).__name__}; for another network, use the --model plug-in (docs/usage.md)")
    for cls in type(net).__mro__:
        if cls.__name__ in SUPPORTED_MODEL_CLASSES:
            return cls.__name__
    raise UsageError(f"scan_model(model=...): a {type(net).__name__} is not supported; supported: "
                     f"{', '.join(SUPPORTED_MODEL_CLASSES)}")


def model_config_of(net: torch.nn.Module, model_class: str) -> Dict[str, Any]:
    """The network's diffusers config as a plain JSON-compatible dict with ``_class_name``."""
    cfg = {k: v for k, v in plain(dict(net.config)).items() if k != "_use_default_values"}
    cfg["_class_name"] = model_class
    return cfg


def scheduler_config_of(scheduler: Any, prediction_type: Optional[str], notes: List[str]) -> Tuple[Dict[str, Any], str]:
    """A scheduler object's or dict's config (``prediction_type`` applied) and where it came from; diffusers'
    ``DDPMScheduler()`` defaults, noted, without one."""
    if scheduler is None:
        notes.append(f"no scheduler passed; {DEFAULT_SCHEDULER_SOURCE} (pass scheduler=... to set it)")
        cfg, source = dict(DEFAULT_SCHEDULER_CONFIG), DEFAULT_SCHEDULER_SOURCE
    elif isinstance(scheduler, Mapping):
        cfg, source = plain(dict(scheduler)), "the scheduler config passed in"
    elif hasattr(scheduler, "config") and isinstance(scheduler.config, Mapping):
        cfg = {k: v for k, v in plain(dict(scheduler.config)).items() if k != "_use_default_values"}
        cfg["_class_name"] = type(scheduler).__name__
        source = f"{type(scheduler).__name__} (in memory)"
    else:
        raise UsageError(f"scan_model(scheduler=...): expected a diffusers scheduler or its config dict, got a "
                         f"{type(scheduler).__name__}")
    return apply_prediction_type(cfg, source, prediction_type, notes), source


def loaded_in_memory(
    model: torch.nn.Module, scheduler: Any = None, *, vae: Optional[torch.nn.Module] = None,
    prediction_type: Optional[str] = None, source: Optional[str] = None,
) -> LoadedCheckpoint:
    """The caller's network (not a copy), its configs, and its VAE as the decoder of its latents."""
    net = network_of(model)
    model_class = model_class_of(net)
    notes: List[str] = []
    model_config = model_config_of(net, model_class)
    scheduler_config, scheduler_source = scheduler_config_of(scheduler, prediction_type, notes)
    decoder = info = None
    if vae is not None:
        decoder, info = latent_decoder(vae, latent_shape(model_config), f"{type(vae).__name__} (in memory)")
        notes.append(decoder_note(info))
    return LoadedCheckpoint(
        model=net, model_class=model_class, model_config=model_config, scheduler_config=scheduler_config,
        scheduler_source=scheduler_source, source=source or f"{model_class} in memory (scan_model)",
        notes=tuple(notes), decoder=decoder, decoder_info=info,
    )


def is_pipeline(obj: Any) -> bool:
    """A diffusers ``DiffusionPipeline`` (without importing diffusers when it is not one)."""
    return any(cls.__name__ == "DiffusionPipeline" for cls in type(obj).__mro__)


def pipeline_parts(pipe: Any) -> Dict[str, Any]:
    """The network (``unet`` or ``transformer``), scheduler and VAE of a pipeline, and every module it holds."""
    components = dict(pipe.components)
    controlnet = components.get("controlnet")
    if controlnet is not None and not is_controlnet(controlnet):
        raise UsageError(f"scan_model(model=...): a {type(controlnet).__name__} (several ControlNets) is not supported; "
                         "scan each ControlNet on its own")
    net = components.get("unet") if components.get("unet") is not None else components.get("transformer")
    if net is None:
        raise UsageError(f"scan_model(model=...): the {type(pipe).__name__} holds no unet or transformer")
    modules = [m for m in components.values() if isinstance(m, torch.nn.Module)]
    return {"model": net, "scheduler": components.get("scheduler"), "vae": components.get("vae"), "modules": modules,
            "controlnet": controlnet}


def is_controlnet(obj: Any) -> bool:
    return isinstance(obj, torch.nn.Module) and any(c.__name__ == CONTROLNET_CLASS for c in type(obj).__mro__)


def control_in_memory(controlnet: torch.nn.Module, base: LoadedCheckpoint, text: torch.Tensor, scale: float,
                      prompt: str) -> LoadedCheckpoint:
    """A ControlNet on the base UNet ``base`` holds (its scheduler and VAE), with the fixed ``text`` (1, L, D)."""
    from .controlnet import _hint_shape

    ucfg = base.model_config
    if base.model_class != "UNet2DConditionModel" or ucfg.get("addition_embed_type") == "text_time":
        raise UsageError(f"scan_model(unet=...): a ControlNet runs on a Stable Diffusion 1.x/2.x UNet2DConditionModel, "
                         f"not a {base.model_class}{' (SDXL)' if ucfg.get('addition_embed_type') else ''}")
    cn_cfg = model_config_of(controlnet, CONTROLNET_CLASS)
    mismatch = [k for k in ("in_channels", "cross_attention_dim", "block_out_channels")
                if plain(ucfg.get(k)) != plain(cn_cfg.get(k))]
    if mismatch:
        raise UsageError(f"scan_model(model=...): the ControlNet does not fit the UNet (they differ in "
                         f"{', '.join(mismatch)})")
    if scale <= 0:
        raise UsageError(f"scan_model(controlnet_scale=...): must be above 0, but got {scale:g}")
    shape = latent_shape(ucfg)
    control = ControlParts(base_model=base.model, sample_shape=shape, text=text, conditioning_scale=float(scale),
                           hint_shape=_hint_shape(cn_cfg, shape))
    note = (f"ControlNet (in memory) on the UNet at conditioning scale {scale:g}; the text is "
            + (f"the prompt '{prompt}'" if prompt else "the empty prompt")
            + "; the null condition is the ControlNet switched off, so guidance w scales what the ControlNet adds "
            "to the base model")
    return replace(base, model=controlnet, model_class=CONTROLNET_CLASS, model_config={**cn_cfg, "base_unet": ucfg},
                   source=f"{CONTROLNET_CLASS} on {base.source}", notes=(note,) + base.notes, control=control)


def fixed_text(pipe: Any, text_parts: Optional[Tuple[Any, Any]], prompt: str) -> torch.Tensor:
    """A ControlNet scan's one prompt (1, L, D), by the pipeline's ``encode_prompt`` or the loop's CLIP encoder."""
    from .pipeline import quiet_transformers

    if pipe is not None:
        with torch.inference_mode():
            embeds = quiet_transformers(pipe.encode_prompt)([prompt], _device_of(pipe), 1, False)[0]
        return embeds[:1].float().cpu()
    if text_parts is None:
        raise UsageError("scan_model(model=...): a ControlNet scan encodes its fixed prompt: pass text_encoder=... and "
                         "tokenizer=..., or the ControlNet pipeline as model")
    return quiet_transformers(_clip_hidden)(*text_parts, [prompt])


def _device_of(pipe: Any) -> torch.device:
    encoder = getattr(pipe, "text_encoder", None) or getattr(pipe, "text_encoder_2", None)
    try:
        return next(encoder.parameters()).device
    except (AttributeError, StopIteration, TypeError):
        return torch.device("cpu")


def pipeline_prompt_conditions(pipe: Any, ckpt: LoadedCheckpoint, prompts: Sequence[str],
                               negative_prompt: Optional[str]) -> ConditionSet:
    """``prompts`` (and the null prompt: ``negative_prompt``, else the pipeline's empty prompt) encoded by the
    pipeline's own ``encode_prompt``, as the conditions of its network."""
    from .pipeline import quiet_transformers

    name = type(pipe).__name__
    null_source = "the empty prompt" if negative_prompt is None else f"negative_prompt '{negative_prompt}'"
    notes: List[str] = []
    values, null = quiet_transformers(_encode)(pipe, ckpt, list(prompts), negative_prompt, notes)
    if name == "StableDiffusionXLPipeline" and negative_prompt is None and pipe.config.force_zeros_for_empty_prompt:
        null_source = "zeros (the empty prompt under the pipeline's force_zeros_for_empty_prompt)"
    return ConditionSet(kind="cross_attn", values=values, null=null, labels=tuple(prompts),
                        source=f"prompts encoded by {name}.encode_prompt (in memory)", null_source=null_source,
                        notes=tuple(notes))


def _encode(pipe: Any, ckpt: LoadedCheckpoint, prompts: List[str], negative_prompt: Optional[str],
            notes: List[str]) -> Tuple[torch.Tensor, torch.Tensor]:
    """(conditions, null) rows from the pipeline's ``encode_prompt``, in the layout the denoiser takes."""
    if not hasattr(pipe, "encode_prompt"):
        raise UsageError(f"scan_model(prompts=...): the {type(pipe).__name__} has no encode_prompt")
    device, dims = _device_of(pipe), pooled_dims(ckpt.model_class, ckpt.model_config)
    with torch.inference_mode():
        if ckpt.model_class == "FluxTransformer2DModel":  # no negative prompt: the null is encoded on its own
            from .flux import FLUX_MAX_SEQUENCE_LENGTH as length

            embeds, pooled, _ = pipe.encode_prompt(prompt=prompts, prompt_2=None, device=device, max_sequence_length=length)
            null, null_pooled, _ = pipe.encode_prompt(prompt=[negative_prompt or ""], prompt_2=None, device=device,
                                                      max_sequence_length=length)
            return (pack_pooled(embeds.float().cpu(), pooled.float().cpu()),
                    pack_pooled(null.float().cpu(), null_pooled.float().cpu()))
        if dims is not None:  # SD3, SDXL: embeddings and pooled embeddings, packed into one row per condition
            negative = None if negative_prompt is None else [negative_prompt] * len(prompts)
            extra = {"prompt_2": None, "prompt_3": None} if ckpt.model_class == "SD3Transformer2DModel" else {}
            embeds, null, pooled, null_pooled = pipe.encode_prompt(
                prompt=prompts, device=device, do_classifier_free_guidance=True, negative_prompt=negative, **extra)
            return (pack_pooled(embeds.float().cpu(), pooled.float().cpu()),
                    pack_pooled(null[:1].float().cpu(), null_pooled[:1].float().cpu()))
        if ckpt.model_class == "PixArtTransformer2DModel":
            from .pipeline import T5_MAX_LENGTH

            length = T5_MAX_LENGTH.get(type(pipe).__name__, 120)
            embeds, mask, null, null_mask = pipe.encode_prompt(
                prompts, do_classifier_free_guidance=True, negative_prompt=negative_prompt or "", device=device,
                clean_caption=False, max_sequence_length=length)
            notes.append(f"prompts padded to {length} tokens as {type(pipe).__name__} encodes them; the padding is "
                         "masked out of the transformer's cross-attention")
            return ((embeds.float() * mask[..., None]).cpu(), (null[:1].float() * null_mask[:1, :, None]).cpu())
        if ckpt.model_class == "UNet2DConditionModel":
            negative = None if negative_prompt is None else [negative_prompt] * len(prompts)
            embeds, null = pipe.encode_prompt(prompts, device, 1, True, negative_prompt=negative)
            return embeds.float().cpu(), null[:1].float().cpu()
    raise UsageError(f"scan_model(prompts=...): prompts are for cross-attention UNets, PixArt, SD3 and Flux transformers; "
                     f"this pipeline runs a {ckpt.model_class}")


def text_encoder_conditions(text_encoder: torch.nn.Module, tokenizer: Any, ckpt: LoadedCheckpoint,
                            prompts: Sequence[str], negative_prompt: Optional[str]) -> ConditionSet:
    """``prompts`` through a CLIP text encoder and its tokenizer held by a training loop, as
    ``StableDiffusionPipeline.encode_prompt`` runs them: padded to the tokenizer's length, no attention mask."""
    from .pipeline import quiet_transformers

    if ckpt.model_class != "UNet2DConditionModel" or pooled_dims(ckpt.model_class, ckpt.model_config) is not None:
        raise UsageError("scan_model(text_encoder=..., tokenizer=...): they encode prompts for Stable Diffusion "
                         "1.x/2.x UNets; for SDXL, SD3 and PixArt pass the DiffusionPipeline as model")
    texts = list(prompts) + ["" if negative_prompt is None else negative_prompt]
    hidden = quiet_transformers(_clip_hidden)(text_encoder, tokenizer, texts)
    width = text_width(ckpt.model_config)
    if int(hidden.shape[-1]) != width:
        raise UsageError(f"scan_model(text_encoder=...): it gives {int(hidden.shape[-1])}-wide embeddings, the "
                         f"network takes {width}")
    null_source = "the empty prompt" if negative_prompt is None else f"negative_prompt '{negative_prompt}'"
    return ConditionSet(kind="cross_attn", values=hidden[:-1].clone(), null=hidden[-1:].clone(), labels=tuple(prompts),
                        source=f"prompts encoded by {type(text_encoder).__name__} (in memory)", null_source=null_source)


def _clip_hidden(text_encoder: torch.nn.Module, tokenizer: Any, texts: List[str]) -> torch.Tensor:
    length = int(tokenizer.model_max_length)
    if length > 100_000:  # tokenizers saved without a limit report a huge sentinel
        length = int(text_encoder.config.max_position_embeddings)
    device = next(text_encoder.parameters()).device
    ids = tokenizer(texts, padding="max_length", max_length=length, truncation=True, return_tensors="pt").input_ids
    with torch.inference_mode():
        return text_encoder(ids.to(device))[0].float().cpu()
