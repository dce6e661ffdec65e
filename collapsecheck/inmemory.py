"""``scan_model(model, scheduler, ...) -> ScanResult``: the scan of a network a training loop holds in memory.

It takes a diffusers network (``UNet2DModel``, ``UNet2DConditionModel``, a DiT / PixArt / SD3 transformer) with
its scheduler (an object or its config dict), or a whole ``DiffusionPipeline`` (its network, scheduler, VAE, and
text encoders for ``prompts``), plus the conditions, builds a
:class:`~collapsecheck.load.loaded.LoadedCheckpoint` from the objects themselves
(:mod:`collapsecheck.load.memory`, no weight written or copied) and runs the stages of
:func:`collapsecheck.run.scan_loaded`, the same ones ``scan(path)`` runs after loading.

The caller's world is left as it was found (:func:`collapsecheck.preserve.caller_state`): the modules' device,
dtype, ``training`` flags, ``requires_grad`` and values; the random states; ``os.environ``; logging. Errors name
the Python arguments (``scan_model(seeds=...): ...``). Never prints, never exits.
"""
from __future__ import annotations

import copy
import dataclasses
import time
from typing import Any, Mapping, Optional, Sequence, Union

import torch

from .config import DTYPES, FIELDS, ScanConfig, check_keywords, check_threshold_names, options_config, with_python_names
from .errors import UsageError
from .load.conditions import ConditionSet, Tensors
from .load.loaded import LoadedCheckpoint
from .load.memory import (
    IN_MEMORY,
    control_in_memory,
    fixed_text,
    is_controlnet,
    is_pipeline,
    loaded_in_memory,
    network_of,
    pipeline_parts,
    pipeline_prompt_conditions,
    text_encoder_conditions,
)
from .model.build import denoiser_for
from .model.denoiser import Denoiser, condition_config
from .preserve import caller_state
from .result import ScanResult
from .run import ProgressFactory, resolve_conditions, scan_loaded
from .thresholds import Thresholds, thresholds_with

__all__ = ["scan_model", "SETTINGS"]

#: ScanConfig fields that name files or loaders: scan_model takes the objects instead
NOT_IN_MEMORY = ("checkpoint", "model_config", "scheduler", "weights", "base", "lora", "lora_scale", "model", "cond", "prompts", "negative_prompt", "classes", "null_class",
                 "reference")  # a base model on disk scanned at the in-memory conditions: not supported
#: the keyword settings scan_model passes on to the scan (those of ``make_config`` that are not about files)
SETTINGS = tuple(f for f in FIELDS if f not in NOT_IN_MEMORY)

ClassSpec = Union[None, str, int, Sequence[int]]
CondSpec = Union[None, torch.Tensor, Mapping[str, torch.Tensor]]


def scan_model(
    model: Any,
    scheduler: Any = None,
    *,
    classes: ClassSpec = None,
    null_class: Optional[int] = None,
    prompts: Union[None, str, Sequence[str]] = None,
    negative_prompt: Optional[str] = None,
    cond: CondSpec = None,
    null: Optional[torch.Tensor] = None,
    vae: Optional[torch.nn.Module] = None,
    text_encoder: Optional[torch.nn.Module] = None,
    tokenizer: Any = None,
    unet: Optional[torch.nn.Module] = None,
    progress: Optional[ProgressFactory] = None,
    **settings: Any,
) -> ScanResult:
    """Scan a network held in memory and return its :class:`ScanResult`.

    Args:
        model: a diffusers network, or a ``DiffusionPipeline`` (its ``unet`` / ``transformer``, ``scheduler``,
            ``vae`` and text encoders are used). DDP and ``torch.compile`` wrappers are looked through.
        scheduler: a diffusers scheduler or its config dict (default: the pipeline's, else diffusers'
            ``DDPMScheduler()`` defaults, noted).
        classes: class ids to scan (a list, ``"0-9,12"`` or ``"all"``; default: every class but the null class,
            or an evenly spaced 32 of them when there are more than 32);
            ``null_class`` as ``--null-class``.
        prompts: a prompt or a list, encoded by the pipeline's ``encode_prompt`` (``model`` a pipeline), or for a
            Stable Diffusion 1.x/2.x UNet by ``text_encoder`` and ``tokenizer`` (a CLIP text model and its tokenizer,
            as a training loop holds them); ``negative_prompt``: the null condition's text (default: the empty
            prompt).
        cond: conditions as a tensor: embeddings (N, L, D), images concatenated to x_t (N, C, H, W), or a dict
            with ``cond`` and ``pooled`` (SD3, SDXL; ``null`` and ``null_pooled`` optional); ``null``: its null
            condition (default zeros).
        vae: the decoder of a latent network's samples (default: the pipeline's).
        unet: a ``ControlNetModel`` ``model``'s base UNet (a ControlNet pipeline has its own); its conditions are
            hint images in [0, 1] as ``cond`` (N, C, H, W), its one fixed prompt ``prompts`` (default empty).
        progress: as :func:`collapsecheck.scan`'s.
        settings: any of :data:`SETTINGS` (``seeds``, ``steps``, ``mode``, ``device``, ``dtype``, ``lpips``,
            ``thresholds`` as a :class:`Thresholds` or a dict, ...); ``device`` and ``dtype`` default to the network's.

    Raises:
        UsageError: a bad argument, named as a Python argument.
        LoadError: an unsupported network, or one that fails while it is evaluated.
    """
    started = time.perf_counter()
    check_keywords("scan_model", settings, SETTINGS)
    parts = _parts(model, scheduler, vae, unet, text_encoder, tokenizer)
    config = _config(parts["net"], classes, null_class, settings)
    _check_conditions(classes, prompts, cond, parts)
    with caller_state(parts["modules"]):
        for module in parts["modules"]:
            module.eval().requires_grad_(False)
        return with_python_names("scan_model", _scan, parts, config, prompts, negative_prompt, cond, null,
                                 progress, started)


def _parts(model: Any, scheduler: Any, vae: Any, unet: Any, text_encoder: Any, tokenizer: Any) -> dict:
    """The network (the base UNet of a ControlNet), ControlNet, scheduler, VAE, pipeline, text encoder and
    tokenizer, and every module of what the caller passed."""
    if is_pipeline(model):
        parts = pipeline_parts(model)
        parts.update(scheduler=scheduler if scheduler is not None else parts["scheduler"],
                     vae=vae if vae is not None else parts["vae"], pipeline=model)
    elif is_controlnet(network_of(model)):
        if unet is None:
            raise UsageError("scan_model(unet=...): a ControlNet runs on the UNet it was trained for: pass it as unet=...")
        parts = dict(model=unet, controlnet=network_of(model), scheduler=scheduler, vae=vae, modules=[], pipeline=None)
    else:
        parts = dict(model=model, controlnet=None, scheduler=scheduler, vae=vae, modules=[], pipeline=None)
    parts["net"] = network_of(parts["model"])
    parts["text"] = (text_encoder, tokenizer) if text_encoder is not None and tokenizer is not None else None
    candidates = [parts["net"], parts["controlnet"], parts["vae"], text_encoder, *parts["modules"]]
    parts["modules"] = [m for i, m in enumerate(candidates) if isinstance(m, torch.nn.Module)
                        and not any(m is o for o in candidates[:i])]
    return parts


def _scan(parts: dict, config: ScanConfig, prompts, negative_prompt, cond, null,
          progress: Optional[ProgressFactory], started: float) -> ScanResult:
    ckpt = _loaded(parts, config, prompts)
    denoiser = denoiser_for(ckpt, config.concat_order)
    conds = _conditions(ckpt, denoiser, config, parts, prompts, negative_prompt, cond, null)
    if conds is not None:
        ckpt = dataclasses.replace(ckpt, conditions=conds)
    return scan_loaded(config, ckpt, denoiser, progress, started)


def _loaded(parts: dict, config: ScanConfig, prompts) -> LoadedCheckpoint:
    """The caller's networks as a LoadedCheckpoint (copies only where a cast to ``config.dtype`` would lose bits)."""
    nets = [n for n in (parts["net"], parts["controlnet"]) if n is not None]
    copied = any(_lossy_cast(n, config.dtype) for n in nets)
    net, controlnet = [copy.deepcopy(n) if copied else n for n in nets] + [None] * (2 - len(nets))
    ckpt = loaded_in_memory(net, parts["scheduler"], vae=parts["vae"], prediction_type=config.prediction_type)
    if controlnet is not None:
        prompt = ([prompts] if isinstance(prompts, str) else list(prompts or [""]))[0]
        text = fixed_text(parts["pipeline"], parts["text"], prompt)
        ckpt = control_in_memory(controlnet, ckpt, text, config.controlnet_scale, prompt)
    if copied:
        ckpt = dataclasses.replace(ckpt, notes=ckpt.notes + (
            f"evaluated a {config.dtype} copy of the network (casting the caller's module to {config.dtype} and "
            "back would not be exact)",))
    return ckpt


def _config(net: torch.nn.Module, classes: ClassSpec, null_class: Optional[int], settings: dict) -> ScanConfig:
    """The scan's settings, checked, with the network's own device and dtype by default."""
    settings = dict(settings)
    seeds = settings.get("seeds")
    if seeds is not None and (isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 2):
        raise UsageError(f"scan_model(seeds=...): must be an int of at least 2 (seeds to compare), got {seeds!r}")
    param = next(iter(net.parameters()), None) if isinstance(net, torch.nn.Module) else None
    if settings.get("device") is None:
        settings["device"] = str(param.device) if param is not None and param.device.type in ("cuda", "mps") else "cpu"
    if settings.get("dtype") is None:
        own = str(param.dtype).replace("torch.", "") if param is not None else "float32"
        settings["dtype"] = own if own in DTYPES else "float32"
    if isinstance(settings.get("thresholds"), Mapping):
        settings["thresholds"] = thresholds_with(Thresholds(), check_threshold_names(settings["thresholds"],
                                                                                      "scan_model(thresholds=...)"))
    return with_python_names("scan_model", options_config, checkpoint=IN_MEMORY, classes=_class_spec(classes),
                             null_class=null_class, **settings)


def _class_spec(classes: ClassSpec) -> Optional[str]:
    """Class ids as the ``--classes`` spec the scan reads (``"0,3,7"``)."""
    if classes is None or isinstance(classes, str):
        return classes
    if isinstance(classes, int) and not isinstance(classes, bool):
        return str(classes)
    try:
        ids = [int(c) for c in classes]
    except (TypeError, ValueError):
        raise UsageError(f"scan_model(classes=...): expected class ids (a list of ints or '0-9,12'), got {classes!r}") \
            from None
    if not ids:
        raise UsageError("scan_model(classes=...): the list is empty; pass class ids, or leave it out for every class")
    return ",".join(str(c) for c in ids)


def _check_conditions(classes: ClassSpec, prompts, cond: CondSpec, parts: dict) -> None:
    """One kind of condition, of the right type, and what encodes the prompts; a ControlNet's one prompt is its
    fixed text beside the hints."""
    control = parts["controlnet"] is not None
    given = [name for name, value in (("classes", classes), ("prompts", prompts), ("cond", cond))
             if value is not None and not (control and name == "prompts")]
    if len(given) > 1:
        raise UsageError(f"scan_model({', '.join(g + '=...' for g in given)}): pass one kind of condition")
    texts = [prompts] if isinstance(prompts, str) else prompts
    if texts is not None and (not texts or not all(isinstance(p, str) for p in texts)):
        raise UsageError("scan_model(prompts=...): expected a prompt or a non-empty list of prompts (strings)")
    if control and texts is not None and len(texts) != 1:
        raise UsageError(f"scan_model(prompts=...): a ControlNet scan takes one fixed prompt (its conditions are the "
                         f"hints in cond=...), got {len(texts)}")
    if cond is not None and not isinstance(cond, (torch.Tensor, Mapping)):
        raise UsageError(f"scan_model(cond=...): expected a tensor or a dict of tensors, got {type(cond).__name__}")
    if texts is not None and not control and parts["pipeline"] is None and parts["text"] is None:
        raise UsageError("scan_model(prompts=...): prompts are encoded by a pipeline's text encoders; pass the "
                         "DiffusionPipeline as model, text_encoder=... and tokenizer=..., or the encoded embeddings "
                         "as cond=...")


def _conditions(ckpt: LoadedCheckpoint, denoiser: Denoiser, config: ScanConfig, parts: dict, prompts, negative_prompt,
                cond: CondSpec, null: Optional[torch.Tensor]) -> Optional[ConditionSet]:
    """The conditions built from Python objects; None for class ids (the scan resolves those from the config)."""
    if prompts is not None and ckpt.control is None:
        texts = [prompts] if isinstance(prompts, str) else list(prompts)
        if parts["pipeline"] is not None:
            return pipeline_prompt_conditions(parts["pipeline"], ckpt, texts, negative_prompt)
        return text_encoder_conditions(*parts["text"], ckpt, texts, negative_prompt)
    if cond is None:
        return None
    tensors = dict(cond) if isinstance(cond, Mapping) else {"cond": cond}
    if null is not None:
        tensors["null"] = null
    with_tensors = dataclasses.replace(config, cond=Tensors(tensors))
    return resolve_conditions(with_tensors, denoiser, condition_config(ckpt.model_class, ckpt.model_config))


def _lossy_cast(net: torch.nn.Module, dtype: str) -> bool:
    """Whether casting the network to ``dtype`` and back would change a value (a downcast)."""
    target = getattr(torch, dtype)
    exact = {target} | ({torch.float16, torch.bfloat16} if target == torch.float32 else set())
    return any(p.is_floating_point() and p.dtype not in exact for p in net.parameters())
