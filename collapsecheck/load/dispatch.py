"""Load a diffusion checkpoint from disk into a :class:`LoadedCheckpoint`.

Accepted inputs (see :func:`load_checkpoint`):

* a diffusers model folder (``config.json`` + ``diffusion_pytorch_model.safetensors`` / ``.bin``,
  also ``.fp16`` variants and sharded ``*.index.json`` weights), as ``save_pretrained`` writes it;
* a pipeline or training output folder holding ``unet/`` (and maybe ``unet_ema/`` and ``scheduler/``),
  including ``checkpoint-N/`` folders of the diffusers training scripts;
* a bare ``.safetensors`` file whose model config sits in its metadata, beside it, or in ``--config``;
* a ``.bin`` / ``.pt`` / ``.pth`` / ``.ckpt`` state dict, read only with ``torch.load(weights_only=True)``.
* an original-LDM single file (SD 1.x/2.x, kohya: ``model.diffusion_model.*`` keys), converted by
  :mod:`collapsecheck.load.singlefile`.

The loader is strict: weights must match the config key for key and shape for shape, every
assumption it makes is written into ``notes``, and it never writes to disk or touches the network.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from ..errors import LoadError, UsageError, check_choice  # noqa: E402
from ..model.parametrization import FLOW_SCHEDULERS  # noqa: E402

PathLike = Union[str, "os.PathLike[str]"]

SUPPORTED_MODEL_CLASSES: Tuple[str, ...] = (
    "UNet2DModel", "UNet2DConditionModel", "DiTTransformer2DModel", "PixArtTransformer2DModel",
    "SD3Transformer2DModel",
)
WEIGHT_CHOICES: Tuple[str, ...] = ("auto", "unet", "unet_ema")
PREDICTION_TYPES: Tuple[str, ...] = ("epsilon", "v_prediction", "sample")

#: The scheduler assumed when a checkpoint ships none: diffusers' ``DDPMScheduler()`` defaults.
DEFAULT_SCHEDULER_CONFIG: Mapping[str, Any] = {
    "_class_name": "DDPMScheduler",
    "num_train_timesteps": 1000,
    "beta_start": 0.0001,
    "beta_end": 0.02,
    "beta_schedule": "linear",
    "trained_betas": None,
    "variance_type": "fixed_small",
    "clip_sample": True,
    "prediction_type": "epsilon",
    "thresholding": False,
    "dynamic_thresholding_ratio": 0.995,
    "clip_sample_range": 1.0,
    "sample_max_value": 1.0,
    "timestep_spacing": "leading",
    "steps_offset": 0,
    "rescale_betas_zero_snr": False,
}
DEFAULT_SCHEDULER_SOURCE = "assumed default: DDPM linear betas 1e-4..0.02, 1000 steps, epsilon"

_WEIGHT_NAMES: Tuple[str, ...] = (
    "diffusion_pytorch_model.safetensors",
    "diffusion_pytorch_model.safetensors.index.json",
    "diffusion_pytorch_model.bin",
    "diffusion_pytorch_model.bin.index.json",
    "diffusion_pytorch_model.fp16.safetensors",
    "diffusion_pytorch_model.fp16.bin",
)
#: Legacy class names that diffusers itself maps to today's classes on load (``_CLASS_REMAPPING_DICT``), by
#: ``norm_type``: the published DiT (facebook/DiT-*) and PixArt-alpha configs still name ``Transformer2DModel``.
_LEGACY_CLASSES: Mapping[str, Mapping[str, str]] = {
    "Transformer2DModel": {"ada_norm_zero": "DiTTransformer2DModel", "ada_norm_single": "PixArtTransformer2DModel"},
}
_TORCH_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")
_STRIPPED_PREFIXES = ("_orig_mod.", "module.")
_MAX_HEADER_BYTES = 100_000_000
_CHECKPOINT_DIR = re.compile(r"^checkpoint-(\d+)$")


@dataclass(frozen=True)
class LoadedCheckpoint:
    """A network ready to evaluate, with the configs and assumptions that came with it."""

    model: torch.nn.Module
    """``UNet2DModel`` or ``UNet2DConditionModel``: eval mode, no grad, CPU, float32."""
    model_class: str
    """``"UNet2DModel"`` or ``"UNet2DConditionModel"``."""
    model_config: Dict[str, Any]
    """The model's diffusers config as a plain, JSON-compatible dict (with ``_class_name``)."""
    scheduler_config: Dict[str, Any]
    """A diffusers scheduler config; always has ``prediction_type``."""
    scheduler_source: str
    """Where ``scheduler_config`` came from, or ``"assumed default: ..."``."""
    source: str
    """Human-readable description of the weights that were loaded."""
    notes: Tuple[str, ...] = field(default_factory=tuple)
    """Every assumption the loader made, for the report."""
    content_hash: str = ""
    """First 16 hex characters of the sha256 of the weight file bytes (shards in order)."""
    conditions: Optional[Any] = None
    """A :class:`~collapsecheck.load.conditions.ConditionSet` the loader built (``--prompts``, ``--model``), or None."""
    decoder: Optional[Any] = None
    """``decode(latents) -> images in [-1, 1]`` for latent models (a pipeline's VAE), or None for pixel models."""
    decoder_info: Optional[Dict[str, Any]] = None
    """JSON-ready description of ``decoder`` (source, scaling factor, latent and image shapes)."""
    denoiser: Optional[Any] = None
    """A ready :class:`~collapsecheck.model.denoiser.Denoiser` when the loader built one (``--model``), else None."""


@dataclass
class _Located:
    """Where the weights are and where their config and scheduler may be."""

    files: List[Path]
    weights_dir: Path
    source: str
    config_json: Path
    config_json_label: str
    config_json_first: bool
    """True for model folders (config.json before metadata); False for bare files (metadata first)."""
    pipeline_roots: List[Path]


def load_checkpoint(
    path: PathLike,
    *,
    config: Optional[PathLike] = None,
    scheduler: Optional[PathLike] = None,
    weights: str = "auto",
    prediction_type: Optional[str] = None,
    base: Optional[PathLike] = None,
    lora: Optional[PathLike] = None,
    lora_scale: float = 1.0,
    prompts: Optional[PathLike] = None,
    negative_prompt: Optional[str] = None,
    model: Optional[str] = None,
    controlnet_scale: float = 1.0,
) -> LoadedCheckpoint:
    """Load the checkpoint at ``path`` (a file or folder; see the module docstring).

    Args:
        path: a diffusers model folder, a pipeline / training folder holding ``unet/``, or a weight file.
        config: a diffusers model ``config.json`` (or a folder holding one); overrides any other config.
        scheduler: a ``scheduler_config.json`` (or a folder holding one); overrides any other scheduler.
        weights: ``"auto"``, ``"unet"`` or ``"unet_ema"``: which subfolder of a pipeline folder to load.
        prediction_type: overrides the scheduler config's ``prediction_type``.
        base: a pipeline or UNet folder supplying the model config and scheduler a bare weight file lacks,
            the VAE and text encoder of a pipeline, and the weights a LoRA file (as ``path``) applies to.
        lora: LoRA weights applied to the loaded UNet, at ``lora_scale``.
        prompts: a text file of prompts, encoded by the pipeline's text encoder (a pipeline ``path`` or ``base``).
        negative_prompt: the null condition's text with ``prompts`` (default: the empty prompt).
        model: ``module:function`` or ``file.py:function`` building your own network from ``path``
            (see :mod:`collapsecheck.load.custom`); the other options then do not apply.
        controlnet_scale: the conditioning scale of a ControlNet ``path`` (see :mod:`collapsecheck.load.controlnet`).

    Raises:
        UsageError: bad arguments, a missing path, an unknown layout, no config found.
        LoadError: a corrupt or unsafe file, an unsupported model class, weights that do not match.
    """
    check_choice("--weights", weights, WEIGHT_CHOICES)
    if prediction_type is not None:
        check_choice("--prediction-type", prediction_type, PREDICTION_TYPES)
    root = Path(path)
    if not root.exists():
        raise UsageError(f"checkpoint path {root} does not exist")
    if model is not None:
        from .custom import load_custom

        return load_custom(model, str(root), prediction_type)
    base_root = None if base is None else Path(base)
    if base_root is not None and not base_root.is_dir():
        raise UsageError(f"--base {base_root} is not a folder; pass a pipeline folder or a diffusers UNet folder")
    if prompts is not None:
        from .pipeline import read_prompts

        read_prompts(str(prompts))  # a missing or empty file is a usage error before any loading
    if lora is not None and not Path(lora).is_file():
        raise UsageError(f"--lora {lora} does not exist; pass a LoRA .safetensors file")
    from .controlnet import controlnet_folder, load_controlnet

    control = controlnet_folder(root) if root.is_dir() else None
    if control is not None:
        return load_controlnet(root, control, base=base_root, scheduler=scheduler, weights=weights,
                               prediction_type=prediction_type, lora=lora, prompts=prompts,
                               negative_prompt=negative_prompt, conditioning_scale=controlnet_scale)
    if controlnet_scale != 1.0:
        raise UsageError(f"--controlnet-scale applies to a ControlNet; {root} is not one (no ControlNetModel config)")
    if base_root is not None and root.is_file() and lora is None and _is_lora_file(root):
        lora, root = root, base_root  # CHECKPOINT is a LoRA: load the base, then apply it
    if root.is_file():
        from .singlefile import detect, load_single_file

        ldm = detect(root)  # original-LDM single files (SD 1.x/2.x, kohya): the safetensors header only
        if ldm is not None:
            return load_single_file(ldm, config=config, scheduler=scheduler, weights=weights,
                                    prediction_type=prediction_type, base=base_root, lora=lora, lora_scale=lora_scale,
                                    prompts=prompts, negative_prompt=negative_prompt)
    config_flag = "--config"
    if base_root is not None and root != base_root:
        config_flag = "--config" if config is not None else f"--base {base_root}:"
        config, scheduler = _from_base(base_root, config, scheduler)
    notes: List[str] = []
    located = _locate(root, weights, notes)

    metadata: Dict[str, str] = {}
    if len(located.files) == 1 and _is_safetensors(located.files[0]):
        metadata = _safetensors_header(located.files[0]).get("__metadata__") or {}

    model_cfg, cfg_label = _resolve_model_config(config, located, metadata, notes, config_flag)
    sched_cfg, sched_source = _resolve_scheduler(scheduler, located, metadata, notes)
    sched_cfg = _apply_prediction_type(sched_cfg, sched_source, prediction_type, notes)

    state = _read_state_dict(located.files)
    state = _strip_prefixes(state, notes)
    model, clean_cfg = _build_model(model_cfg, cfg_label, state, notes)
    if getattr(model, "use_additional_conditions", False):  # PixArt-alpha 1024
        notes.append("PixArt resolution and aspect-ratio conditions: the pipeline's default image size (sample_size "
                     "x the VAE's scale factor, 8 without vae/), aspect ratio 1")
    content_hash = _hash_files(located.files)
    source = located.source
    if lora is not None:
        from .lora import apply_lora

        source, lora_hash = apply_lora(model, clean_cfg["_class_name"], Path(lora), lora_scale, notes,
                                       text_encoder=prompts is not None)
        source = f"{located.source} + LoRA {source}"
        content_hash = hashlib.sha256((content_hash + lora_hash + repr(float(lora_scale))).encode()).hexdigest()[:16]
    ckpt = LoadedCheckpoint(
        model=model,
        model_class=clean_cfg["_class_name"],
        model_config=clean_cfg,
        scheduler_config=sched_cfg,
        scheduler_source=sched_source,
        source=source,
        notes=tuple(notes),
        content_hash=content_hash,
    )
    from .pipeline import pipeline_root

    pipe = pipeline_root(root) or (pipeline_root(base_root) if base_root is not None else None)
    if pipe is not None:
        text_lora = None if lora is None else (Path(lora), float(lora_scale))
        return _attach_pipeline(ckpt, pipe, prompts, negative_prompt, text_lora)
    if prompts is not None:
        raise UsageError(
            "--prompts needs a pipeline folder (model_index.json, text_encoder/, tokenizer/) as CHECKPOINT or --base; "
            "for a UNet alone pass encoded prompts with --cond FILE"
        )
    return ckpt


def _attach_pipeline(
    ckpt: LoadedCheckpoint, root: Path, prompts: Optional[PathLike], negative_prompt: Optional[str],
    lora: Optional[Tuple[Path, float]] = None,
) -> LoadedCheckpoint:
    """Prompts encoded by the pipeline's text encoder (with the LoRA's text-encoder layers), and its VAE as
    the decoder of latent samples."""
    from dataclasses import replace

    from ..model.denoiser import latent_shape, text_width
    from .pipeline import decoder_note, encode_prompts, load_vae, read_model_index

    index = read_model_index(root)
    notes = list(ckpt.notes)
    cfg = ckpt.model_config
    conditions = None
    if prompts is not None:
        from ..model.denoiser import pooled_dims

        dims = pooled_dims(ckpt.model_class, cfg)
        if dims is not None:  # SD3, SDXL: embeddings and pooled embeddings from the pipeline's own encode_prompt
            from .pipeline import encode_pooled_prompts

            conditions = encode_pooled_prompts(root, str(prompts), negative_prompt, ckpt.model, ckpt.model_class,
                                               dims, lora)
        else:
            encoders = {"UNet2DConditionModel": "clip", "PixArtTransformer2DModel": "t5"}
            if ckpt.model_class not in encoders:
                raise UsageError(f"--prompts is for cross-attention UNets, PixArt and SD3 transformers; {root} holds "
                                 f"a {ckpt.model_class}")
            conditions, _ = encode_prompts(root, str(prompts), negative_prompt, text_width(cfg),
                                           text_encoder=encoders[ckpt.model_class], lora=lora)
    decoder = info = None
    if (root / "vae").is_dir() and "vae" in index:
        decoder, info = load_vae(root, latent_shape(cfg))
        notes.append(decoder_note(info))
    elif "vae" in index:
        notes.append(f"{root} names a VAE but has no vae/ folder: measures run on the latents")
    return replace(ckpt, notes=tuple(notes), conditions=conditions, decoder=decoder, decoder_info=info)


def _is_lora_file(path: Path) -> bool:
    """A safetensors file whose tensor names are LoRA factors (read from the header only)."""
    if not _is_safetensors(path):
        return False
    keys = [k for k in _safetensors_header(path) if k != "__metadata__"]
    return bool(keys) and all("lora" in k.lower() or k.endswith(".alpha") for k in keys)


def _from_base(
    base: Path, config: Optional[PathLike], scheduler: Optional[PathLike]
) -> Tuple[Optional[PathLike], Optional[PathLike]]:
    """The model config and scheduler ``--base`` supplies, unless given explicitly."""
    if config is None:
        for candidate in (base / "unet" / "config.json", base / "config.json"):
            if candidate.is_file():
                config = candidate
                break
        else:
            raise UsageError(f"--base {base} holds neither unet/config.json nor config.json; pass --config CONFIG.json")
    if scheduler is None:
        for candidate in (base / "scheduler" / "scheduler_config.json", base / "scheduler_config.json"):
            if candidate.is_file():
                scheduler = candidate
                break
    return config, scheduler


# ---------------------------------------------------------------------------------------- layout


def _locate(root: Path, weights: str, notes: List[str]) -> _Located:
    """Decide which layout ``root`` is and which weight file(s) to read."""
    if root.is_file():
        if weights != "auto":
            raise UsageError(
                f"--weights {weights} applies to a folder holding unet/ or unet_ema/; {root} is a weight file"
            )
        _check_file_kind(root)
        return _Located(
            files=[root],
            weights_dir=root.parent,
            source=str(root),
            config_json=root.parent / "config.json",
            config_json_label=f"config.json beside the file ({root.parent / 'config.json'})",
            config_json_first=False,
            pipeline_roots=_roots_above(root.parent),
        )
    files = _model_folder_files(root)
    if files is not None:
        if weights != "auto":
            raise UsageError(
                f"--weights {weights} applies to a folder holding unet/ or unet_ema/; "
                f"{root} is a model folder: pass it without --weights"
            )
        return _model_folder(root, files, str(root) + _shard_suffix(files), _roots_above(root), notes)
    present = [name for name in ("unet", "unet_ema") if (root / name).is_dir()]
    if not present and (root / "transformer").is_dir():  # DiT pipelines keep their network in transformer/
        if weights != "auto":
            raise UsageError(f"--weights {weights} applies to unet/ or unet_ema/; {root} holds transformer/")
        files = _model_folder_files(root / "transformer")
        if files is None:
            raise UsageError(f"{root / 'transformer'} holds no diffusion_pytorch_model.safetensors or .bin")
        return _model_folder(root / "transformer", files, str(root / "transformer") + _shard_suffix(files),
                             [root, *_checkpoint_parent(root)], notes)
    if present:
        _note_checkpoints(root, notes)
        if weights == "auto":
            choice = "unet" if "unet" in present else "unet_ema"
        elif weights not in present:
            raise UsageError(
                f"--weights {weights}: {root} has no {weights}/ folder; it has "
                + ", ".join(f"{name}/" for name in present)
            )
        else:
            choice = weights
        folder = root / choice
        if choice == "unet" and "unet_ema" in present:
            source = f"{folder} (pass --weights unet_ema to scan the EMA weights in unet_ema/)"
            if weights == "auto":
                notes.append("unet_ema/ is also present; pass --weights unet_ema to scan the EMA weights")
        elif choice == "unet_ema":
            source = f"{folder} (EMA weights"
            source += "; pass --weights unet to scan unet/)" if "unet" in present else ")"
            if weights == "auto":
                notes.append("no unet/ folder; loaded the EMA weights in unet_ema/")
        else:
            source = str(folder)
        files = _model_folder_files(folder)
        if files is None:
            raise UsageError(
                f"{folder} holds no diffusion_pytorch_model.safetensors or diffusion_pytorch_model.bin"
            )
        return _model_folder(folder, files, source + _shard_suffix(files), [root, *_checkpoint_parent(root)], notes)
    raise UsageError(_unknown_folder_message(root))


def _model_folder(
    folder: Path, files: List[Path], source: str, roots: List[Path], notes: List[str]
) -> _Located:
    if any(".fp16." in f.name for f in files):
        notes.append(f"loaded the fp16 variant {files[0].name} (no full-precision weights in {folder})")
    return _Located(
        files=files,
        weights_dir=folder,
        source=source,
        config_json=folder / "config.json",
        config_json_label=str(folder / "config.json"),
        config_json_first=True,
        pipeline_roots=roots,
    )


def _model_folder_files(folder: Path) -> Optional[List[Path]]:
    """The weight file(s) of a diffusers model folder, or ``None`` if it is not one."""
    for name in _WEIGHT_NAMES:
        candidate = folder / name
        if not candidate.is_file():
            continue
        if not name.endswith(".index.json"):
            return [candidate]
        index = _read_json(candidate, LoadError, "sharded weight index")
        weight_map = index.get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise LoadError(f"{candidate} has no weight_map; the sharded checkpoint is incomplete")
        shards = [folder / str(shard) for shard in sorted(set(weight_map.values()))]
        missing = [s.name for s in shards if not s.is_file()]
        if missing:
            raise LoadError(f"{candidate} names shards that are missing: {_examples(missing)}")
        return shards
    return None


def _shard_suffix(files: List[Path]) -> str:
    return f" ({len(files)} shards)" if len(files) > 1 else ""


def _roots_above(folder: Path) -> List[Path]:
    """Pipeline roots that may hold ``scheduler/`` for a model folder named ``unet``/``unet_ema``."""
    if folder.name in ("unet", "unet_ema", "transformer"):
        return [folder.parent, *_checkpoint_parent(folder.parent)]
    return []


def _checkpoint_parent(root: Path) -> List[Path]:
    """The training output folder above a ``checkpoint-N`` folder (it may hold ``scheduler/``)."""
    return [root.parent] if _CHECKPOINT_DIR.match(root.name) else []


def _checkpoints_in(root: Path) -> List[str]:
    found = [(int(m.group(1)), p.name) for p in root.iterdir() if p.is_dir() and (m := _CHECKPOINT_DIR.match(p.name))]
    return [name for _, name in sorted(found)]


def _note_checkpoints(root: Path, notes: List[str]) -> None:
    names = _checkpoints_in(root)
    if names:
        notes.append(
            f"{root} also holds training checkpoints ({_examples(names, 4)}); "
            "pass one of them to scan an earlier checkpoint"
        )


def _unknown_folder_message(root: Path) -> str:
    checkpoints = _checkpoints_in(root)
    if checkpoints:
        return (
            f"{root} holds training checkpoints ({_examples(checkpoints, 4)}) but no unet/ of its own; "
            f"pass one of them, e.g. {root / checkpoints[-1]}"
        )
    message = (
        f"{root} is not a checkpoint layout collapsecheck knows: looked for config.json with "
        "diffusion_pytorch_model.safetensors or .bin (a diffusers model folder) and for unet/ or "
        "unet_ema/ (a pipeline or training output folder)"
    )
    loose = sorted(p.name for p in root.iterdir() if p.is_file() and p.suffix in (".safetensors", *_TORCH_SUFFIXES))
    if loose:
        message += f"; found {_examples(loose, 3)}: pass a weight file directly, with --config CONFIG.json"
    return message


# ---------------------------------------------------------------------------------------- files


def _check_file_kind(path: Path) -> None:
    """Raise unless ``path`` is a safetensors file or has a torch state-dict suffix."""
    if path.suffix == ".safetensors" or path.suffix in _TORCH_SUFFIXES:
        return
    try:
        _parse_safetensors_header(path)
    except _NotSafetensors:
        raise UsageError(
            f"{path}: unsupported file type; pass a .safetensors file, a torch state dict "
            f"({', '.join(_TORCH_SUFFIXES)}), or a diffusers model or pipeline folder"
        ) from None


class _NotSafetensors(Exception):
    """The file does not start with a valid safetensors header."""


def _parse_safetensors_header(path: Path) -> Tuple[Dict[str, Any], int]:
    """Read only the JSON header (8-byte little-endian length prefix, then JSON) and its length."""
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            prefix = handle.read(8)
            if len(prefix) < 8:
                raise _NotSafetensors(f"only {len(prefix)} bytes long")
            (length,) = struct.unpack("<Q", prefix)
            if length > min(_MAX_HEADER_BYTES, size - 8):
                raise _NotSafetensors(f"header length {length} does not fit in a {size}-byte file")
            raw = handle.read(length)
    except OSError as exc:
        raise LoadError(f"{path}: cannot read: {_one_line(exc)}") from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise _NotSafetensors("header is not valid JSON") from None
    if not isinstance(header, dict):
        raise _NotSafetensors("header is not a JSON object")
    return header, length


def _is_safetensors(path: Path) -> bool:
    if path.suffix == ".safetensors":
        return True
    try:
        _parse_safetensors_header(path)
    except _NotSafetensors:
        return False
    return True


def _safetensors_header(path: Path) -> Dict[str, Any]:
    """The validated header of a safetensors file: LoadError if it is corrupt or truncated."""
    try:
        header, length = _parse_safetensors_header(path)
    except _NotSafetensors as exc:
        raise LoadError(f"{path} is not a valid safetensors file ({exc}); is it corrupt or truncated?") from None
    metadata = header.get("__metadata__")
    if metadata is not None and not (
        isinstance(metadata, dict) and all(isinstance(v, str) for v in metadata.values())
    ):
        raise LoadError(f"{path}: the safetensors metadata is not a map of strings; the file is corrupt")
    end = 0
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
            raise LoadError(f"{path}: the safetensors header entry '{key}' is malformed; the file is corrupt")
        end = max(end, offsets[1])
    available = path.stat().st_size - 8 - length
    if available < end:
        raise LoadError(
            f"{path} is truncated: its header promises {end} bytes of tensor data, the file holds {available}"
        )
    return header


def _read_state_dict(files: List[Path]) -> Dict[str, torch.Tensor]:
    """Merge the state dicts of all weight files (shards must not overlap)."""
    state: Dict[str, torch.Tensor] = {}
    for path in files:
        part = _read_safetensors(path) if _is_safetensors(path) else _read_torch(path)
        overlap = state.keys() & part.keys()
        if overlap:
            raise LoadError(f"{path} repeats keys of another shard: {_examples(sorted(overlap))}")
        state.update(part)
    if not state:
        raise LoadError(f"{files[0]} holds no tensors")
    return state


def _read_safetensors(path: Path) -> Dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    _safetensors_header(path)
    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # safetensors raises its own error types for corrupt data
        raise LoadError(f"{path}: cannot read the safetensors data ({_one_line(exc)}); is the file corrupt?") from None


def _read_torch(path: Path) -> Dict[str, torch.Tensor]:
    """``torch.load(weights_only=True)`` only: pickled code is refused, never run."""
    import pickle
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only load failed" not in str(exc).lower():
            raise LoadError(f"{path}: cannot read ({_one_line(exc)}); is the file corrupt?") from None
        detail = next((ln.strip() for ln in str(exc).splitlines() if "Unsupported global" in ln), "")
        detail = detail.split(" was not an allowed global")[0]
        raise LoadError(
            f"{path} holds pickled objects other than tensors ({detail or 'not loadable with weights_only=True'}); "
            "collapsecheck refuses to unpickle untrusted files: convert it to .safetensors in a trusted environment"
        ) from None
    except Exception as exc:  # truncated zip archives, garbage bytes, ...
        raise LoadError(f"{path}: cannot read as a torch state dict ({_one_line(exc)}); is the file corrupt?") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        kind = type(obj).__name__
        keys = _examples([str(k) for k in obj]) if isinstance(obj, dict) else ""
        raise LoadError(
            f"{path} is not a state dict of tensors (got a {kind}{' with keys ' + keys if keys else ''}); "
            "save model.state_dict() or use save_pretrained"
        )
    return {str(k): v for k, v in obj.items()}


def _hash_files(files: List[Path]) -> str:
    digest = hashlib.sha256()
    for path in files:
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 22), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def _read_json(path: Path, error: type, what: str) -> Dict[str, Any]:
    """Read a JSON object from ``path``; ``error`` (UsageError/LoadError) if it is missing or bad."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{what} {path} does not exist") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise error(f"{what} {path} is not valid JSON ({_one_line(exc)})") from None
    if not isinstance(data, dict):
        raise error(f"{what} {path} is not a JSON object")
    return data


# ---------------------------------------------------------------------------------------- configs


def _resolve_model_config(
    config: Optional[PathLike], located: _Located, metadata: Mapping[str, str], notes: List[str],
    flag: str = "--config",
) -> Tuple[Dict[str, Any], str]:
    """The model config and a label saying where it came from (``flag``: --config or --base)."""
    has_json = located.config_json.is_file()
    if config is not None:
        cfg_path = _json_in(Path(config), "config.json", flag)
        if has_json or "config" in metadata:
            notes.append(f"model config taken from {flag} {cfg_path}, overriding the one stored with the weights")
        else:
            notes.append(f"model config taken from {flag} {cfg_path}")
        return _read_json(cfg_path, UsageError, flag), f"{flag} {cfg_path}"
    if located.config_json_first and has_json:
        return _read_json(located.config_json, LoadError, "model config"), str(located.config_json)
    if "config" in metadata:
        try:
            cfg = json.loads(metadata["config"])
        except ValueError as exc:
            raise LoadError(f"{located.files[0]}: metadata key 'config' is not valid JSON ({_one_line(exc)})") from None
        if not isinstance(cfg, dict):
            raise LoadError(f"{located.files[0]}: metadata key 'config' is not a JSON object")
        notes.append("model config taken from the safetensors metadata")
        return cfg, "the safetensors metadata"
    if has_json:
        notes.append(f"model config taken from {located.config_json_label}")
        return _read_json(located.config_json, LoadError, "model config"), located.config_json_label
    where = "the file's metadata and " if _is_safetensors(located.files[0]) else ""
    raise UsageError(
        f"{located.source}: no model config found (looked in {where}for config.json beside it); "
        "pass --config CONFIG.json, or --base PIPELINE_OR_UNET_FOLDER to take the config (and scheduler) from there"
    )


def _json_in(path: Path, name: str, flag: str) -> Path:
    """``path`` itself, or ``path/name`` when ``path`` is a folder; UsageError if missing."""
    if path.is_dir():
        path = path / name
    if not path.is_file():
        raise UsageError(f"{flag} {path} does not exist")
    return path


def _resolve_scheduler(
    scheduler: Optional[PathLike], located: _Located, metadata: Mapping[str, str], notes: List[str]
) -> Tuple[Dict[str, Any], str]:
    """The scheduler config and its source, in the documented order of precedence."""
    if scheduler is not None:
        path = _json_in(Path(scheduler), "scheduler_config.json", "--scheduler")
        return _read_json(path, UsageError, "--scheduler"), str(path)
    for root in located.pipeline_roots:
        path = root / "scheduler" / "scheduler_config.json"
        if path.is_file():
            return _read_json(path, LoadError, "scheduler config"), str(path)
    if "scheduler_config" in metadata:
        try:
            cfg = json.loads(metadata["scheduler_config"])
        except ValueError as exc:
            raise LoadError(
                f"{located.files[0]}: metadata key 'scheduler_config' is not valid JSON ({_one_line(exc)})"
            ) from None
        if not isinstance(cfg, dict):
            raise LoadError(f"{located.files[0]}: metadata key 'scheduler_config' is not a JSON object")
        return cfg, f"{located.files[0]} (safetensors metadata)"
    beside = located.weights_dir / "scheduler_config.json"
    if beside.is_file():
        return _read_json(beside, LoadError, "scheduler config"), str(beside)
    notes.append(f"no scheduler config found; {DEFAULT_SCHEDULER_SOURCE} (pass --scheduler to set it)")
    return dict(DEFAULT_SCHEDULER_CONFIG), DEFAULT_SCHEDULER_SOURCE


def _apply_prediction_type(
    cfg: Dict[str, Any], source: str, override: Optional[str], notes: List[str]
) -> Dict[str, Any]:
    cfg = dict(cfg)
    stored = cfg.get("prediction_type")
    if override is not None:
        if stored is not None and stored != override:
            notes.append(f"prediction_type '{override}' from --prediction-type overrides '{stored}' in {source}")
        elif stored is None:
            notes.append(f"prediction_type '{override}' from --prediction-type")
        cfg["prediction_type"] = override
        return cfg
    if stored is None and cfg.get("_class_name") in FLOW_SCHEDULERS:
        return cfg  # flow matching predicts the velocity eps - x0; there is no prediction_type to assume
    if stored is None:
        notes.append(f"{source} names no prediction_type; assumed 'epsilon' (the diffusers default)")
        cfg["prediction_type"] = "epsilon"
        return cfg
    check_choice(f"prediction_type in {source} (override with --prediction-type)", str(stored), PREDICTION_TYPES)
    return cfg


# ---------------------------------------------------------------------------------------- model


def _strip_prefixes(state: Dict[str, torch.Tensor], notes: List[str]) -> Dict[str, torch.Tensor]:
    """Strip ``_orig_mod.`` (torch.compile) and ``module.`` (DDP) when every key carries them."""
    stripped: List[str] = []
    changed = True
    while changed:
        changed = False
        for prefix in _STRIPPED_PREFIXES:
            if state and all(k.startswith(prefix) for k in state):
                state = {k[len(prefix):]: v for k, v in state.items()}
                stripped.append(prefix)
                changed = True
    if stripped:
        notes.append("stripped key prefix " + " + ".join(f"'{p}'" for p in stripped) + " (torch.compile / DDP)")
    return state


def _build_model(
    cfg: Dict[str, Any], cfg_label: str, state: Dict[str, torch.Tensor], notes: List[str],
    allowed: Tuple[str, ...] = SUPPORTED_MODEL_CLASSES,
) -> Tuple[torch.nn.Module, Dict[str, Any]]:
    """Build the model (one of the ``allowed`` classes) from its config and load ``state`` with strict semantics."""
    class_name = cfg.get("_class_name")
    if class_name is None:
        raise LoadError(
            f"the model config from {cfg_label} has no _class_name; add "
            '"_class_name": "UNet2DModel" (or "UNet2DConditionModel") to it'
        )
    remapped = _LEGACY_CLASSES.get(class_name, {}).get(cfg.get("norm_type"))
    if remapped in allowed:
        notes.append(f"config class {class_name} with norm_type '{cfg['norm_type']}' loaded as {remapped}, "
                     "as diffusers loads it")
        class_name = remapped
    if class_name not in allowed:
        raise LoadError(f"model class {class_name} is not supported yet; supported: {', '.join(allowed)}")
    import diffusers

    from ..quiet import quiet_diffusers

    cls = getattr(diffusers, class_name)
    try:
        # every parameter is overwritten by the strict load below: skip the random init
        with quiet_diffusers(), _no_init():
            model, unused = cls.from_config(dict(cfg), return_unused_kwargs=True)
    except Exception as exc:
        raise LoadError(f"cannot build {class_name} from the config in {cfg_label}: {_one_line(exc)}") from None
    ignored = sorted(k for k in unused if not k.startswith("_"))
    if ignored:
        notes.append(f"config keys not used by {class_name}: {_examples(ignored, 8)}")

    _check_keys(model.state_dict(), state, cfg_label)
    stored = sorted({str(t.dtype).replace("torch.", "") for t in state.values() if t.is_floating_point()} - {"float32"})
    if stored:
        notes.append(f"weights stored as {', '.join(stored)}; cast to float32")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise LoadError(f"weights do not load into {class_name}: {_one_line(exc)}") from None
    model = model.float().eval().requires_grad_(False)  # built on CPU; .float() avoids diffusers' .to() warning
    clean = {k: v for k, v in _plain(dict(model.config)).items() if k != "_use_default_values"}
    clean["_class_name"] = class_name
    return model, clean


def _no_init():
    """diffusers' ``no_init_weights`` (4 s of an SD-1.5 UNet's build on CPU), or nothing where it is missing."""
    try:
        from diffusers.models.modeling_utils import no_init_weights
    except ImportError:  # pragma: no cover - older diffusers
        import contextlib

        return contextlib.nullcontext()
    return no_init_weights()


def _check_keys(expected: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor], cfg_label: str) -> None:
    """LoadError in one line when keys or shapes differ (strict=True semantics, readable message)."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k}: {_shape(state[k])} in file vs {_shape(expected[k])} in config"
        for k in expected
        if k in state and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    if not (missing or unexpected or shapes):
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys ({_examples(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected ({_examples(unexpected)})")
    if shapes:
        parts.append(f"{len(shapes)} with other shapes ({_examples(shapes, 2)})")
    which = "--base" if cfg_label.startswith("--base") else "--config"
    raise LoadError(
        f"weights do not match the config from {cfg_label}: {', '.join(parts)}; is {which} the right one?"
    )


# ---------------------------------------------------------------------------------------- small helpers


def _shape(tensor: torch.Tensor) -> str:
    return "x".join(str(d) for d in tensor.shape) or "scalar"


def _examples(items: List[str], n: int = 3) -> str:
    shown = ", ".join(items[:n])
    return shown + (", ..." if len(items) > n else "")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line if len(line) <= 200 else line[:197] + "..."


def _plain(value: Any) -> Any:
    """A JSON-compatible copy: tuples become lists, mappings become dicts."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
