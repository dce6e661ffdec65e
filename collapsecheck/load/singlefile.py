"""Single-file original-LDM checkpoints (Stable Diffusion 1.x / 2.x / XL, kohya's saves) -> a diffusers UNet.

A single file holds the whole model under the original CompVis key prefixes:
``model.diffusion_model.*`` (the UNet), and maybe ``first_stage_model.*`` (the VAE) and
``cond_stage_model.*`` (the CLIP or OpenCLIP text encoder); training tools such as kohya's sd-scripts add
``modelspec.*`` metadata (architecture, prediction type, resolution). Detection reads the safetensors
header only; a ``.ckpt`` is read with ``torch.load(weights_only=True)``. The weights are converted with
diffusers' own conversion code (``diffusers.loaders.single_file_utils``), never with ``from_single_file``,
which may download configs.

The UNet config comes from ``--config``, else ``--base`` (a pipeline folder, which also gives the
scheduler and the tokenizer ``--prompts`` needs), else an original LDM config built from the tensor shapes.
What shapes cannot tell (the attention head count, the prediction type, the image size, the schedule) comes
from the metadata, the flags or SD's defaults, and every such assumption is written into ``notes``.
SDXL base files (``conditioner.embedders.*``: two text encoders, a size-conditioned UNet) take the same path, with
what is SDXL's own in :mod:`loader_singlefile_sdxl`; SDXL refiners are refused.
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch

from . import singlefile_sdxl as sdxl
from ..errors import LoadError, UsageError

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_PREFIX = "cond_stage_model.transformer."
OPEN_CLIP_PREFIX = "cond_stage_model.model."

#: The LDM default schedule (SD 1.x / 2.x ``scheduler_config.json``): scaled-linear betas 0.00085..0.012.
LDM_SCHEDULER_CONFIG: Mapping[str, Any] = {
    "_class_name": "DDIMScheduler",
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "trained_betas": None,
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "timestep_spacing": "leading",
}
LDM_SCHEDULER_SOURCE = "assumed LDM default: scaled_linear betas 0.00085..0.012, 1000 steps"
LDM_VAE_SCALING_FACTOR = 0.18215
_PREDICTION_NAMES = {"epsilon": "epsilon", "eps": "epsilon", "v": "v_prediction", "v_prediction": "v_prediction"}
#: Buffers of the LDM training module stored beside the weights (the schedule, EMA bookkeeping): not weights.
_LDM_BUFFERS = re.compile(
    r"^(betas|alphas_cumprod|alphas_cumprod_prev|sqrt_alphas_cumprod|sqrt_one_minus_alphas_cumprod|"
    r"log_one_minus_alphas_cumprod|sqrt_recip_alphas_cumprod|sqrt_recipm1_alphas_cumprod|"
    r"posterior_variance|posterior_log_variance_clipped|posterior_mean_coef1|posterior_mean_coef2|logvar)$"
)


@dataclass
class LdmFile:
    """A file detected as an original-LDM single file: its keys, metadata, and (for .ckpt) its tensors."""

    path: Path
    keys: List[str]
    metadata: Dict[str, str]
    state: Optional[Dict[str, torch.Tensor]] = None
    parts: List[str] = field(default_factory=list)

    @property
    def architecture(self) -> str:
        return self.metadata.get("modelspec.architecture", "")

    @property
    def sdxl(self) -> bool:
        return sdxl.is_sdxl(self.keys, self.architecture)


def detect(path: Path) -> Optional[LdmFile]:
    """An :class:`LdmFile` when ``path`` holds ``model.diffusion_model.*`` keys, else None.

    Safetensors: the header only. ``.ckpt``: ``torch.load(weights_only=True)`` (the tensors are kept).
    Other files are never LDM single files.
    """
    from .dispatch import _is_safetensors, _read_torch, _safetensors_header

    state = None
    metadata: Dict[str, str] = {}
    if _is_safetensors(path):
        header = _safetensors_header(path)
        metadata = dict(header.get("__metadata__") or {})
        keys = [k for k in header if k != "__metadata__"]
    elif path.suffix == ".ckpt":
        state = _read_torch(path)
        keys = list(state)
    else:
        return None
    if not any(k.startswith(UNET_PREFIX) for k in keys):
        if keys and all(k.startswith("control_model.") for k in keys):
            raise LoadError(f"{path} is an original-format ControlNet (control_model.* keys), which is not supported "
                            "yet: convert it to a diffusers ControlNet folder (ControlNetModel.save_pretrained) and "
                            "scan that with --base")
        return None
    parts = ["UNet (model.diffusion_model.*)"]
    if any(k.startswith(VAE_PREFIX) for k in keys):
        parts.append("VAE (first_stage_model.*)")
    if any(k.startswith(CLIP_PREFIX) for k in keys):
        parts.append("CLIP text encoder (cond_stage_model.transformer.*)")
    elif any(k.startswith(OPEN_CLIP_PREFIX) for k in keys):
        parts.append("OpenCLIP text encoder (cond_stage_model.model.*)")
    parts += sdxl.parts(keys)
    return LdmFile(path=path, keys=keys, metadata=metadata, state=state, parts=parts)


def load_single_file(
    ldm: LdmFile,
    *,
    config: Optional[Any] = None,
    scheduler: Optional[Any] = None,
    weights: str = "auto",
    prediction_type: Optional[str] = None,
    base: Optional[Path] = None,
    lora: Optional[Any] = None,
    lora_scale: float = 1.0,
    prompts: Optional[Any] = None,
    negative_prompt: Optional[str] = None,
):
    """Convert and load ``ldm`` into a :class:`~collapsecheck.load.dispatch.LoadedCheckpoint`."""
    from .dispatch import LoadedCheckpoint, _apply_prediction_type, _build_model, _hash_files, _read_safetensors
    from ..model.denoiser import is_text_time

    path = ldm.path
    _refuse_unsupported(ldm)
    if weights != "auto":
        raise UsageError(f"--weights {weights} applies to a folder holding unet/ or unet_ema/; {path} is a single file")
    if prompts is not None and base is None:
        raise UsageError(
            f"--prompts needs a tokenizer, which the single file {path.name} does not hold: pass --base "
            "PIPELINE_FOLDER (its tokenizer/ (and tokenizer_2/ for SDXL), and its text encoders when the file has "
            "none); "
            "or pass encoded prompts with --cond FILE"
        )
    notes: List[str] = [
        f"single-file LDM checkpoint: {' + '.join(ldm.parts)}"
        + (f"; modelspec.architecture '{ldm.architecture}'" if ldm.architecture else "; no modelspec metadata")
    ]
    unet_cfg_path = _config_path(config, base)
    state = ldm.state if ldm.state is not None else _read_safetensors(path)
    unet_sd = {k: v for k, v in state.items() if k.startswith(UNET_PREFIX)}
    vae_sd = {k: v for k, v in state.items() if k.startswith(VAE_PREFIX)}
    _note_other_keys(state, notes)

    vae_cfg = _vae_config_from_shapes(vae_sd, base, ldm, notes) if vae_sd else None
    if unet_cfg_path is not None:
        cfg, label = _read_unet_config(unet_cfg_path, config, notes)
        if ldm.sdxl:
            sdxl.check_config(cfg, label, ldm)
    else:
        cfg, label = _unet_config_from_shapes(ldm, unet_sd, vae_cfg, notes)
    converted = _convert_unet(unet_sd, cfg, path)
    model, clean_cfg = _build_model(cfg, label, converted, notes)

    sched_cfg, sched_source = _scheduler(scheduler, base, notes)
    sched_cfg = _prediction_from_metadata(ldm, sched_cfg, sched_source, prediction_type, notes)
    sched_cfg = _apply_prediction_type(sched_cfg, sched_source, prediction_type, notes)

    content_hash = _hash_files([path])
    source = f"{path} (single-file LDM checkpoint)"
    if lora is not None:
        import hashlib

        from .lora import apply_lora

        lora_source, lora_hash = apply_lora(model, clean_cfg["_class_name"], Path(lora), lora_scale, notes,
                                            text_encoder=prompts is not None)
        source = f"{source} + LoRA {lora_source}"
        content_hash = hashlib.sha256((content_hash + lora_hash + repr(float(lora_scale))).encode()).hexdigest()[:16]

    decoder, info = _decoder(vae_sd, vae_cfg, base, clean_cfg, path, notes)
    conditions = None
    text_lora = None if lora is None else (Path(lora), float(lora_scale))
    if prompts is not None and is_text_time(clean_cfg):  # SDXL: two text encoders, the pipeline's encode_prompt
        conditions = sdxl.encode_prompts(state, base, path, str(prompts), negative_prompt, model, clean_cfg, notes,
                                         lora=text_lora)
    elif prompts is not None:
        from ..model.denoiser import text_width
        from .pipeline import encode_prompts

        encoder, encoder_source = _text_encoder(state, base, path, notes)
        conditions, _ = encode_prompts(base, str(prompts), negative_prompt, text_width(clean_cfg), encoder=encoder,
                                       encoder_source=encoder_source, lora=text_lora)
    elif any(k.startswith(("cond_stage_model.", sdxl.SDXL_PREFIX)) for k in state):
        notes.append("the file's text encoder is not used (no --prompts): conditions come from --cond embeddings")
    return LoadedCheckpoint(
        model=model,
        model_class=clean_cfg["_class_name"],
        model_config=clean_cfg,
        scheduler_config=sched_cfg,
        scheduler_source=sched_source,
        source=source,
        notes=tuple(notes),
        content_hash=content_hash,
        conditions=conditions,
        decoder=decoder,
        decoder_info=info,
    )


# ---------------------------------------------------------------------------------------- detection


def _refuse_unsupported(ldm: LdmFile) -> None:
    arch = ldm.architecture.lower()
    if ldm.sdxl:
        sdxl.refuse_refiner(ldm)
    elif arch and not arch.startswith("stable-diffusion-v"):
        raise LoadError(
            f"{ldm.path}: modelspec.architecture '{arch}' is not a Stable Diffusion 1.x/2.x/XL UNet; "
            "single files are supported for stable-diffusion-v1, -v2 and -xl-v1-base only"
        )
    if UNET_PREFIX + "input_blocks.0.0.weight" not in ldm.keys:
        raise LoadError(
            f"{ldm.path} has model.diffusion_model.* keys but no input_blocks.0.0.weight: not an SD 1.x/2.x/XL UNet "
            "(SD3, Flux and other transformers are not supported as single files)"
        )


def _note_other_keys(state: Mapping[str, torch.Tensor], notes: List[str]) -> None:
    known = (UNET_PREFIX, VAE_PREFIX, "cond_stage_model.", sdxl.SDXL_PREFIX)
    other = sorted(k for k in state if not k.startswith(known))
    if not other:
        return
    ema = [k for k in other if k.startswith("model_ema.")]
    buffers = [k for k in other if _LDM_BUFFERS.match(k)]
    rest = [k for k in other if k not in set(ema) | set(buffers)]
    from .dispatch import _examples

    parts = []
    if ema:
        parts.append(f"{len(ema)} model_ema.* tensors (the EMA copy; the model.diffusion_model.* weights are scanned)")
    if buffers:
        parts.append(f"the LDM schedule buffers ({_examples(buffers, 3)})")
    if rest:
        parts.append(f"{len(rest)} other tensors ({_examples(rest, 3)})")
    notes.append("not loaded from the file: " + "; ".join(parts))


# ---------------------------------------------------------------------------------------- configs


def _config_path(config: Optional[Any], base: Optional[Path]) -> Optional[Path]:
    from .dispatch import _json_in

    if config is not None:
        return _json_in(Path(config), "config.json", "--config")
    if base is None:
        return None
    for candidate in (base / "unet" / "config.json", base / "config.json"):
        if candidate.is_file():
            return candidate
    raise UsageError(f"--base {base} holds neither unet/config.json nor config.json; "
                     "pass a pipeline folder or --config CONFIG.json")


def _read_unet_config(path: Path, config: Optional[Any], notes: List[str]) -> Tuple[Dict[str, Any], str]:
    from .dispatch import _read_json

    flag = "--config" if config is not None else "--base"
    cfg = _read_json(path, UsageError, flag)
    if "_class_name" not in cfg:
        cfg["_class_name"] = "UNet2DConditionModel"
    elif cfg["_class_name"] != "UNet2DConditionModel":
        raise UsageError(f"{flag} {path} is a {cfg['_class_name']} config; "
                         "an LDM single file holds a UNet2DConditionModel")
    notes.append(f"UNet config taken from {flag} {path}")
    return cfg, f"{flag} {path}"


def _original_unet_params(unet: Mapping[str, torch.Tensor], path: Path, is_sdxl: bool = False) -> Dict[str, Any]:
    """``unet_config.params`` of an original LDM config, read off the tensor shapes (SDXL's with ``is_sdxl``)."""
    sd = {k[len(UNET_PREFIX):]: v for k, v in unet.items()}
    fix = "pass --config UNET_CONFIG.json or --base PIPELINE_FOLDER"
    if "label_emb.weight" in sd or ("label_emb.0.0.weight" in sd and not is_sdxl):
        raise LoadError(f"{path}: the UNet has a class or size embedding (label_emb); its config cannot be built "
                        f"from shapes: {fix}")
    conv_in = sd["input_blocks.0.0.weight"]
    model_channels = int(conv_in.shape[0])
    blocks = sorted({int(k.split(".")[1]) for k in sd if k.startswith("input_blocks.")})
    levels: List[List[int]] = [[]]
    for i in blocks[1:]:
        if f"input_blocks.{i}.0.op.weight" in sd:
            levels.append([])
        else:
            levels[-1].append(i)
    counts = {len(level) for level in levels}
    if len(counts) != 1 or 0 in counts:
        raise LoadError(f"{path}: the UNet's levels hold different numbers of res blocks; {fix}")
    mult, attention, depth = [], [], []
    for index, level in enumerate(levels):
        channels = int(sd[f"input_blocks.{level[0]}.0.out_layers.3.weight"].shape[0])
        if channels % model_channels:
            raise LoadError(f"{path}: level {index} has {channels} channels, not a multiple of {model_channels}; {fix}")
        mult.append(channels // model_channels)
        has = [any(k.startswith(f"input_blocks.{i}.1.") for k in sd) for i in level]
        if any(has) != all(has):
            raise LoadError(f"{path}: level {index} has attention in some res blocks only; {fix}")
        if all(has):
            attention.append(2 ** index)
            prefix = f"input_blocks.{level[0]}.1.transformer_blocks."
            depth.append(len({k[len(prefix):].split(".")[0] for k in sd if k.startswith(prefix)}))
        else:
            depth.append(1)
    first = next((i for level in levels for i in level if f"input_blocks.{i}.1.proj_in.weight" in sd), None)
    if first is None:
        raise LoadError(f"{path}: the UNet has no cross-attention transformer; {fix}")
    context_dim = int(sd[f"input_blocks.{first}.1.transformer_blocks.0.attn2.to_k.weight"].shape[1])
    params = {
        "in_channels": int(conv_in.shape[1]),
        "out_channels": int(sd["out.2.weight"].shape[0]),
        "model_channels": model_channels,
        "channel_mult": mult,
        "num_res_blocks": len(levels[0]),
        "attention_resolutions": attention,
        "transformer_depth": depth[0] if len(set(depth)) == 1 else depth,
        "context_dim": context_dim,
        "use_linear_in_transformer": sd[f"input_blocks.{first}.1.proj_in.weight"].ndim == 2,
    }
    if is_sdxl:
        params.update(sdxl.unet_params(sd, params, path, fix))
    return params


def _head_params(ldm: LdmFile, params: Mapping[str, Any], notes: List[str]) -> Dict[str, int]:
    """``num_heads`` (SD 1.x) or ``num_head_channels`` (SD 2.x): from the architecture, else the context width."""
    arch = ldm.architecture.lower()
    dim = params["context_dim"]
    if ldm.sdxl:
        choice, why = {"num_head_channels": sdxl.SDXL_HEAD_CHANNELS}, sdxl.why_sdxl(ldm)
    elif arch.startswith("stable-diffusion-v1"):
        choice, why = {"num_heads": 8}, f"modelspec.architecture '{arch}'"
    elif arch.startswith("stable-diffusion-v2"):
        choice, why = {"num_head_channels": 64}, f"modelspec.architecture '{arch}'"
    elif dim == 768:
        choice, why = {"num_heads": 8}, "cross-attention width 768 (SD 1.x-like; no modelspec.architecture)"
    elif dim == 1024:
        choice, why = {"num_head_channels": 64}, "cross-attention width 1024 (SD 2.x-like; no modelspec.architecture)"
    else:
        raise LoadError(
            f"{ldm.path}: the attention head count cannot be read off the shapes (cross-attention width {dim} is "
            "neither SD 1.x's 768 nor SD 2.x's 1024, and the file has no modelspec.architecture); "
            "pass --config UNET_CONFIG.json or --base PIPELINE_FOLDER"
        )
    widths = [params["model_channels"] * m for m in params["channel_mult"]]
    if "num_head_channels" in choice and any(w % 64 for w in widths):
        raise LoadError(f"{ldm.path}: block widths {widths} are not multiples of SD 2.x's and SDXL's 64 channels "
                        "per head; pass --config UNET_CONFIG.json or --base PIPELINE_FOLDER")
    what = "8 attention heads (SD 1.x)" if "num_heads" in choice else (
        f"64 channels per attention head ({'SDXL' if ldm.sdxl else 'SD 2.x'})")
    notes.append(f"assumed {what} from {why}; pass --config or --base if that is wrong")
    return choice


def _image_size(ldm: LdmFile, factor: int, notes: List[str]) -> int:
    """The image height from ``modelspec.resolution`` ("WxH"), else SD's 512 (768 for -768-v), noted."""
    resolution = ldm.metadata.get("modelspec.resolution", "")
    match = re.fullmatch(r"\s*(\d+)\s*[x,]\s*(\d+)\s*", resolution)
    if match:
        return int(match.group(2))
    size = sdxl.SDXL_IMAGE_SIZE if ldm.sdxl else 768 if ldm.architecture.lower().endswith("-768-v") else 512
    side = size // factor
    notes.append(f"image size {size} assumed (no modelspec.resolution): the scan samples {side}x{side} latents")
    return size


def _vae_params(vae: Mapping[str, torch.Tensor]) -> Dict[str, Any]:
    sd = {k[len(VAE_PREFIX):]: v for k, v in vae.items()}
    ch = int(sd["encoder.conv_in.weight"].shape[0])
    levels = sorted({int(k.split(".")[2]) for k in sd if k.startswith("encoder.down.")})
    blocks = {int(k.split(".")[4]) for k in sd if k.startswith("encoder.down.0.block.")}
    return {
        "ch": ch,
        "ch_mult": [int(sd[f"encoder.down.{i}.block.0.conv2.weight"].shape[0]) // ch for i in levels],
        "num_res_blocks": len(blocks),
        "in_channels": int(sd["encoder.conv_in.weight"].shape[1]),
        "out_ch": int(sd["decoder.conv_out.weight"].shape[0]),
        "z_channels": int(sd["decoder.conv_in.weight"].shape[1]),
    }


def _vae_config_from_shapes(
    vae: Mapping[str, torch.Tensor], base: Optional[Path], ldm: LdmFile, notes: List[str]
) -> Dict[str, Any]:
    """The diffusers AutoencoderKL config of the file's VAE, with the base's scaling factor or SD's."""
    from diffusers.loaders.single_file_utils import create_vae_diffusers_config_from_ldm

    from .dispatch import _read_json

    scaling, where = LDM_VAE_SCALING_FACTOR, "the LDM default"
    if ldm.sdxl:
        scaling, where = sdxl.SDXL_VAE_SCALING_FACTOR, "SDXL's, assumed (pass --base for its vae/config.json)"
    base_cfg = None if base is None else base / "vae" / "config.json"
    if base_cfg is not None and base_cfg.is_file():
        stored = _read_json(base_cfg, LoadError, "VAE config").get("scaling_factor")
        if stored is not None:
            scaling, where = float(stored), str(base_cfg)
    try:
        ddconfig = _vae_params(vae)
    except (KeyError, ValueError, IndexError) as exc:
        raise LoadError(
            f"{ldm.path}: the first_stage_model.* tensors are not an LDM AutoencoderKL (no {exc})") from None
    original = {"model": {"params": {"first_stage_config": {"params": {"ddconfig": ddconfig}}}}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # image_size is deprecated there; we set sample_size anyway
        cfg = create_vae_diffusers_config_from_ldm(original, {}, image_size=256, scaling_factor=scaling)
    notes.append(f"VAE config built from the tensor shapes (block widths {cfg['block_out_channels']}), "
                 f"scaling_factor {scaling:g} from {where}")
    return cfg


def _unet_config_from_shapes(
    ldm: LdmFile, unet: Mapping[str, torch.Tensor], vae_cfg: Optional[Mapping[str, Any]], notes: List[str]
) -> Tuple[Dict[str, Any], str]:
    """A diffusers UNet config from an original LDM config built from the shapes (diffusers' own mapping)."""
    from diffusers.loaders.single_file_utils import create_unet_diffusers_config_from_ldm

    params = _original_unet_params(unet, ldm.path, ldm.sdxl)
    params.update(_head_params(ldm, params, notes))
    if vae_cfg is not None:
        ch_mult = [w // vae_cfg["block_out_channels"][0] for w in vae_cfg["block_out_channels"]]
    else:
        ch_mult = [1, 2, 4, 4]
        notes.append("no VAE in the file: a latent downsampling factor of 8 assumed for the image size")
    image_size = _image_size(ldm, 2 ** (len(ch_mult) - 1), notes)
    original = {"model": {"params": {"unet_config": {"params": params},
                                     "first_stage_config": {"params": {"ddconfig": {"ch_mult": ch_mult}}}}}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        cfg = create_unet_diffusers_config_from_ldm(original, {}, image_size=image_size)
    if ldm.sdxl:
        sdxl.text_time_config(cfg, params, notes)
    if "num_head_channels" in params and not params["use_linear_in_transformer"]:
        cfg["attention_head_dim"] = [params["model_channels"] * m // 64 for m in params["channel_mult"]]
    cfg["_class_name"] = "UNet2DConditionModel"
    shown = {k: params[k] for k in ("model_channels", "channel_mult", "num_res_blocks", "attention_resolutions",
                                    "transformer_depth", "context_dim", "use_linear_in_transformer",
                                    "adm_in_channels") if k in params}
    notes.append("UNet config built from the tensor shapes: " + ", ".join(f"{k} {v}" for k, v in shown.items()))
    return cfg, "the config built from the file's tensor shapes"


# ---------------------------------------------------------------------------------------- conversion


def _convert_unet(unet: Mapping[str, torch.Tensor], cfg: Mapping[str, Any], path: Path) -> Dict[str, torch.Tensor]:
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    from .dispatch import _examples

    try:
        converted = convert_ldm_unet_checkpoint(dict(unet), dict(cfg))
    except (KeyError, ValueError, TypeError) as exc:
        raise LoadError(f"{path}: cannot convert the LDM UNet with this config ({exc!r}); "
                        "pass --config UNET_CONFIG.json or --base PIPELINE_FOLDER that matches the file") from None
    used = {id(v) for v in converted.values()}
    unused = sorted(k for k, v in unet.items() if id(v) not in used)
    if unused:
        raise LoadError(f"{path}: {len(unused)} UNet tensors have no place in the converted UNet "
                        f"({_examples(unused)}); "
                        "pass --config UNET_CONFIG.json or --base PIPELINE_FOLDER that matches the file")
    return converted


def _scheduler(scheduler: Optional[Any], base: Optional[Path], notes: List[str]) -> Tuple[Dict[str, Any], str]:
    from .dispatch import _json_in, _read_json

    if scheduler is not None:
        path = _json_in(Path(scheduler), "scheduler_config.json", "--scheduler")
        return _read_json(path, UsageError, "--scheduler"), str(path)
    if base is not None:
        for path in (base / "scheduler" / "scheduler_config.json", base / "scheduler_config.json"):
            if path.is_file():
                return _read_json(path, LoadError, "scheduler config"), str(path)
    notes.append(f"no scheduler config; {LDM_SCHEDULER_SOURCE} (pass --scheduler or --base to set it)")
    return dict(LDM_SCHEDULER_CONFIG), LDM_SCHEDULER_SOURCE


def _prediction_from_metadata(
    ldm: LdmFile, cfg: Dict[str, Any], source: str, flag: Optional[str], notes: List[str]
) -> Dict[str, Any]:
    """``modelspec.prediction_type``, else the architecture's default when the schedule is assumed."""
    if flag is not None:
        return cfg  # --prediction-type wins; _apply_prediction_type notes it
    cfg = dict(cfg)
    stored = ldm.metadata.get("modelspec.prediction_type")
    if stored is not None:
        value = _PREDICTION_NAMES.get(stored.strip().lower())
        if value is None:
            raise LoadError(f"{ldm.path}: modelspec.prediction_type '{stored}' is neither 'epsilon' nor 'v'; "
                            "pass --prediction-type epsilon|v_prediction|sample")
        if cfg.get("prediction_type") not in (None, value) and source != LDM_SCHEDULER_SOURCE:
            notes.append(f"prediction_type '{value}' from modelspec.prediction_type overrides "
                         f"'{cfg['prediction_type']}' in {source}")
        else:
            notes.append(f"prediction_type '{value}' from modelspec.prediction_type")
        cfg["prediction_type"] = value
    elif source == LDM_SCHEDULER_SOURCE:
        arch = ldm.architecture.lower()
        value = "v_prediction" if arch.endswith("-v") else "epsilon"
        why = f"the default of modelspec.architecture '{arch}'" if arch else "no modelspec.prediction_type"
        notes.append(f"prediction_type '{value}' assumed ({why}); pass --prediction-type if that is wrong")
        cfg["prediction_type"] = value
    return cfg


def _decoder(
    vae_sd: Mapping[str, torch.Tensor], vae_cfg: Optional[Dict[str, Any]], base: Optional[Path],
    unet_cfg: Mapping[str, Any], path: Path, notes: List[str],
):
    """The file's VAE (converted) or the base's as the decoder of latent samples; (None, None) without one."""
    from ..model.denoiser import latent_shape
    from .pipeline import decoder_note, latent_decoder, load_vae

    latent = latent_shape(dict(unet_cfg))
    if vae_cfg is not None:
        from diffusers import AutoencoderKL
        from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

        from .dispatch import _check_keys

        converted = convert_ldm_vae_checkpoint(dict(vae_sd), vae_cfg)
        if len(converted) != len(vae_sd):
            raise LoadError(f"{path}: {len(vae_sd) - len(converted)} first_stage_model.* tensors have no place in "
                            "the converted VAE; is it an LDM AutoencoderKL?")
        vae = AutoencoderKL.from_config(vae_cfg)
        _check_keys(vae.state_dict(), converted, "the VAE config built from the file's shapes")
        vae.load_state_dict(converted, strict=True)
        decoder, info = latent_decoder(vae, latent, f"{path} (first_stage_model.*)")
        if base is not None and (base / "vae").is_dir():
            notes.append(f"the file's own VAE decodes the latents, not {base / 'vae'}")
    elif base is not None and (base / "vae").is_dir():
        decoder, info = load_vae(base, latent)
        notes.append(f"the file holds no VAE; {base / 'vae'} decodes the latents")
    else:
        notes.append("the file holds no VAE and no --base gives one: the measures run on the latents")
        return None, None
    notes.append(decoder_note(info))
    return decoder, info


def _text_encoder(
    state: Mapping[str, torch.Tensor], base: Path, path: Path, notes: List[str]
) -> Tuple[Optional[torch.nn.Module], Optional[str]]:
    """The file's own CLIP / OpenCLIP text encoder, converted into ``--base``'s text_encoder config; or None
    (then :func:`encode_prompts` loads the base's)."""
    clip = {k: v for k, v in state.items() if k.startswith(CLIP_PREFIX) and not k.endswith("position_ids")}
    open_clip = any(k.startswith(OPEN_CLIP_PREFIX) for k in state)
    if not clip and not open_clip:
        notes.append(f"the file holds no text encoder; --prompts are encoded by {base / 'text_encoder'}")
        return None, None
    config = base / "text_encoder" / "config.json"
    if not config.is_file():
        raise UsageError(f"--prompts with the file's text encoder needs its config: --base {base} has no "
                         "text_encoder/config.json; pass a pipeline folder of the same model family")
    from diffusers.loaders.single_file_utils import convert_ldm_clip_checkpoint, convert_open_clip_checkpoint

    from .dispatch import _check_keys
    from .pipeline import _transformers

    tf = _transformers()
    model = tf.CLIPTextModel(tf.CLIPTextConfig.from_pretrained(str(base / "text_encoder"), local_files_only=True))
    if clip:
        converted = convert_ldm_clip_checkpoint(clip)
    else:
        converted = convert_open_clip_checkpoint(model, dict(state), prefix=OPEN_CLIP_PREFIX)
    if not hasattr(model, "text_model"):  # CLIPTextModel is flat in transformers >= 5.6
        converted = {k.removeprefix("text_model."): v for k, v in converted.items()}
    expected = model.state_dict()
    converted = {k: v for k, v in converted.items() if k in expected or not k.startswith("text_projection")}
    _check_keys(expected, converted, f"--base {base / 'text_encoder'}")
    model.load_state_dict(converted, strict=True)
    kind = "CLIP" if clip else "OpenCLIP"
    notes.append(f"--prompts are encoded by the file's own {kind} text encoder (config from {config}), "
                 f"tokenized by {base / 'tokenizer'}")
    return model, f"{path} (cond_stage_model.*)"
