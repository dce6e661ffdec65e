"""Pipeline folders (``model_index.json``): prompts and the VAE.

A pipeline folder holds ``unet/`` or ``transformer/`` and ``scheduler/`` (loaded by :mod:`checkpoint`
like any folder holding them), and here the rest:

* ``text_encoder/`` + ``tokenizer/``, loaded with ``local_files_only=True``, encode ``--prompts`` (one per
  line) into the network's ``encoder_hidden_states``: transformers' ``CLIPTextModel`` and ``CLIPTokenizer``
  for Stable-Diffusion UNets, ``T5EncoderModel`` and its tokenizer for PixArt (zero-padded, see
  :func:`_t5_encoder`); the null condition is the empty prompt or ``--negative-prompt``; a LoRA's
  text-encoder layers are applied first;
* SD3 (``StableDiffusion3Pipeline``, ``transformer/``) and SDXL (``StableDiffusionXLPipeline``, a ``text_time``
  UNet): the pipeline's own ``encode_prompt`` (SD3: two CLIP encoders, T5 when present; SDXL: ``text_encoder/``
  and ``text_encoder_2/`` CLIP) gives embeddings and pooled embeddings, packed into one row per prompt;
* ``vae/``: ``AutoencoderKL`` whose decoder turns sampled latents into images in [-1, 1]
  (``latents / scaling_factor + shift_factor``, as diffusers' pipelines do) before any measure.

transformers is imported lazily; it comes with the ``pipelines`` extra.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from .conditions import ConditionSet  # noqa: E402
from ..errors import LoadError, UsageError, first_line  # noqa: E402

#: pipelines that cannot be scanned, and why
UNSUPPORTED_PIPELINES = {
    "StableDiffusionXLInpaintPipeline": "its UNet takes the masked image and the mask as extra input channels",
}


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
        raise LoadError(f"{path} is not valid JSON ({first_line(exc)})") from None
    if not isinstance(index, dict):
        raise LoadError(f"{path} is not a JSON object")
    name = index.get("_class_name")
    if name in UNSUPPORTED_PIPELINES:
        raise LoadError(f"{root}: {name} is not supported ({UNSUPPORTED_PIPELINES[name]})")
    if index.get("requires_aesthetics_score"):
        raise LoadError(f"{root}: an SDXL refiner ({name} with requires_aesthetics_score: its UNet takes 5 time ids "
                        "with an aesthetic score and refines the last denoising steps) is not supported")
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
        raise UsageError(f"--prompts {file} cannot be read as UTF-8 text ({first_line(exc)})") from None
    if not prompts:
        raise UsageError(f"--prompts {file} holds no prompt; write one prompt per line")
    return prompts


#: T5 pipelines (PixArt) and the max_sequence_length their ``encode_prompt`` pads and truncates to
T5_MAX_LENGTH = {"PixArtAlphaPipeline": 120, "PixArtSigmaPipeline": 300}


def encode_prompts(
    root: Path, prompts_file: str, negative_prompt: Optional[str], width: int, *,
    text_encoder: str = "clip", lora: Optional[Tuple[Path, float]] = None,
    encoder: Optional[torch.nn.Module] = None, encoder_source: Optional[str] = None,
) -> Tuple[ConditionSet, List[str]]:
    """Encode the prompts (and the null prompt) with the pipeline's own tokenizer and text encoder.

    See :func:`encode_texts` for the keyword arguments.
    """
    prompts = read_prompts(prompts_file)
    null_text = "" if negative_prompt is None else negative_prompt
    hidden, source, notes = encode_texts(root, prompts + [null_text], width, text_encoder=text_encoder, lora=lora,
                                         encoder=encoder, encoder_source=encoder_source)
    null_source = "the empty prompt" if negative_prompt is None else f"--negative-prompt '{negative_prompt}'"
    conds = ConditionSet(
        kind="cross_attn",
        values=hidden[:-1].clone(),
        null=hidden[-1:].clone(),
        labels=tuple(prompts),
        source=f"--prompts {prompts_file} encoded by {source}",
        null_source=null_source,
        notes=tuple(notes),
    )
    return conds, notes


def encode_texts(
    root: Path, texts: Sequence[str], width: int, *,
    text_encoder: str = "clip", lora: Optional[Tuple[Path, float]] = None,
    encoder: Optional[torch.nn.Module] = None, encoder_source: Optional[str] = None,
) -> Tuple[torch.Tensor, str, List[str]]:
    """``texts`` through the pipeline's tokenizer and text encoder: (N, L, width) hidden states, which
    encoder made them, and notes.

    ``text_encoder``: ``"clip"`` (Stable-Diffusion UNets) or ``"t5"`` (PixArt transformers); ``width`` is the
    embedding width the network takes; ``lora`` = (file, scale) applies a LoRA's text-encoder layers first;
    ``encoder``: a CLIP text encoder built elsewhere (a single file's own, ``encoder_source`` says which) to use
    instead of ``root/text_encoder``; the tokenizer still comes from ``root``.
    """
    needed = ("tokenizer",) if encoder is not None else ("text_encoder", "tokenizer")
    missing = [name for name in needed if not (root / name).is_dir()]
    if missing:
        raise UsageError(f"--prompts needs the pipeline's {' and '.join(m + '/' for m in missing)} in {root}; "
                         "or pass precomputed embeddings with --cond FILE")
    if text_encoder == "t5":
        pipeline = str(read_model_index(root).get("_class_name"))
        encoder, encode = _t5_encoder(root, T5_MAX_LENGTH.get(pipeline, 120), pipeline)
    else:
        encoder, encode = _clip_encoder(root, encoder)
    source = encoder_source or str(root / "text_encoder")
    got = int(encoder.config.hidden_size)
    if got != width:
        raise LoadError(f"{source} gives {got}-wide embeddings, the network takes {width}: "
                        "the folders do not belong together")
    notes: List[str] = []
    if lora is not None:
        from .lora import apply_text_encoder_lora

        notes += apply_text_encoder_lora(encoder, lora[0], lora[1])
    with torch.inference_mode():
        hidden, encode_notes = encode(list(texts))
    return hidden, f"{source} ({type(encoder).__name__})", notes + encode_notes


def _clip_encoder(
    root: Path, encoder: Optional[torch.nn.Module] = None
) -> Tuple[torch.nn.Module, Callable[[List[str]], Tuple[torch.Tensor, List[str]]]]:
    """CLIPTokenizer + CLIPTextModel (Stable Diffusion): padded to the tokenizer's length, no attention mask.
    ``encoder``: one built elsewhere, instead of ``root/text_encoder``."""
    tf = _transformers()
    tokenizer = _load(tf.CLIPTokenizer, root / "tokenizer", "CLIP tokenizer")
    if encoder is None:
        encoder = _load(tf.CLIPTextModel, root / "text_encoder", "CLIP text encoder")
    encoder = encoder.float().eval().requires_grad_(False)
    length = int(tokenizer.model_max_length)
    if length > 100_000:  # tokenizers saved without a limit report a huge sentinel
        length = int(encoder.config.max_position_embeddings)

    def encode(texts: List[str]) -> Tuple[torch.Tensor, List[str]]:
        ids = tokenizer(texts, padding="max_length", max_length=length, truncation=True, return_tensors="pt").input_ids
        return encoder(ids)[0].float(), _truncated(tokenizer, texts, length)

    return encoder, encode


def _t5_encoder(
    root: Path, length: int, pipeline: str
) -> Tuple[torch.nn.Module, Callable[[List[str]], Tuple[torch.Tensor, List[str]]]]:
    """T5 tokenizer + T5EncoderModel (PixArt), as ``PixArtAlphaPipeline.encode_prompt`` runs them: lowercased,
    padded to ``length`` tokens, encoded with the attention mask. The padding tokens' embeddings are set to zero:
    the denoiser reads the mask back from them (:func:`~collapsecheck.model.denoiser.padding_mask`)."""
    tf = _transformers()
    tokenizer = _load(tf.AutoTokenizer, root / "tokenizer", "T5 tokenizer")
    encoder = _load(tf.T5EncoderModel, root / "text_encoder", "T5 text encoder").float().eval().requires_grad_(False)

    def encode(texts: List[str]) -> Tuple[torch.Tensor, List[str]]:
        texts = [t.lower().strip() for t in texts]  # the pipeline's preprocessing without clean_caption
        tokens = tokenizer(texts, padding="max_length", max_length=length, truncation=True, add_special_tokens=True,
                           return_tensors="pt")
        mask = tokens.attention_mask
        hidden = encoder(tokens.input_ids, attention_mask=mask)[0].float() * mask[..., None]
        note = (f"prompts lowercased and padded to {length} tokens as {pipeline} encodes them (its clean_caption "
                "rewriting is not applied); the padding is masked out of the transformer's cross-attention")
        return hidden, [note] + _truncated(tokenizer, texts, length)

    return encoder, encode


def _load(cls: Any, folder: Path, what: str) -> Any:
    """A tokenizer or model from ``folder``, offline; a model missing weights is an error (transformers would
    fill them with random numbers and only warn)."""
    model = not cls.__name__.endswith(("Tokenizer", "TokenizerFast"))
    try:
        loaded = cls.from_pretrained(str(folder), local_files_only=True, **({"output_loading_info": True} if model else {}))
    except Exception as exc:
        raise LoadError(f"cannot load the {what} in {folder}: {_one_line(exc)}") from None
    if not model:
        return loaded
    loaded, info = loaded
    missing = sorted(info.get("missing_keys") or [])
    if missing:
        raise LoadError(f"the {what} in {folder} lacks {len(missing)} weights "
                        f"({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}); the file is incomplete "
                        f"or not a {cls.__name__}")
    return loaded


def _truncated(tokenizer: Any, texts: List[str], length: int) -> List[str]:
    """A note when prompts were cut at ``length`` tokens (as the pipeline cuts them)."""
    cut = [t for t, ids in zip(texts, tokenizer(texts, truncation=False).input_ids) if len(ids) > length]
    if not cut:
        return []
    return [f"{len(cut)} prompt(s) longer than {length} tokens were truncated, as the pipeline would "
            f"(e.g. '{cut[0][:40]}')"]


#: pipelines whose own ``encode_prompt`` gives embeddings and pooled embeddings, by the network they run
POOLED_PIPELINES = {"SD3Transformer2DModel": "StableDiffusion3Pipeline", "UNet2DConditionModel": "StableDiffusionXLPipeline"}


def encode_pooled_prompts(
    root: Path, prompts_file: str, negative_prompt: Optional[str], model: torch.nn.Module, model_class: str,
    dims: Tuple[int, int], lora: Optional[Tuple[Path, float]] = None,
    text_encoders: Optional[Dict[str, torch.nn.Module]] = None, encoders_source: Optional[str] = None,
) -> ConditionSet:
    """Encode the prompts (and the null prompt) with the pipeline's own ``encode_prompt``, packed with the pooled
    embeddings per condition: ``StableDiffusion3Pipeline`` (its CLIP encoders, and T5 when the folder has it) for an
    SD3 transformer, ``StableDiffusionXLPipeline`` (CLIP ``text_encoder/`` and ``text_encoder_2/``) for an SDXL UNet.

    ``model`` is the loaded network, handed to the pipeline so that it is not loaded twice (SD3's ``encode_prompt``
    reads its ``joint_attention_dim`` when T5 is absent); ``dims``: the (token, pooled) widths it takes;
    ``lora`` = (file, scale) applies a LoRA's ``text_encoder`` and ``text_encoder_2`` layers to SDXL's encoders;
    ``text_encoders``: encoders built elsewhere (an SDXL single file's own, ``encoders_source`` says which) by component
    name, used instead of the folder's; the tokenizers still come from ``root``."""
    from .conditions import pack_pooled

    prompts = read_prompts(prompts_file)
    _transformers()
    import diffusers

    from ..quiet import quiet_diffusers

    name = POOLED_PIPELINES[model_class]
    if name == "StableDiffusion3Pipeline":
        absent = {n: None for n in ("text_encoder_3", "tokenizer_3") if not (root / n).is_dir()}
        components = {"transformer": model, "image_encoder": None, "feature_extractor": None, **absent}
        extra = {"prompt_2": None, "prompt_3": None}  # SD3's encode_prompt has no defaults for them (None: the prompt)
    else:
        components = {"unet": model, "image_encoder": None, "feature_extractor": None, "add_watermarker": False,
                      **(text_encoders or {})}
        extra = {}
    try:
        with quiet_diffusers(progress_bars=False):
            pipe = getattr(diffusers, name).from_pretrained(str(root), vae=None, local_files_only=True, **components)
    except Exception as exc:
        raise LoadError(f"cannot load the text encoders of {root} ({name}): {_one_line(exc)}") from None
    notes: List[str] = []
    if lora is not None:  # SDXL: a LoRA's layers for either text encoder (SD3 takes no LoRA)
        from .lora import apply_text_encoder_lora

        for encoder in ("text_encoder", "text_encoder_2"):
            if getattr(pipe, encoder, None) is not None:
                notes += apply_text_encoder_lora(getattr(pipe, encoder), lora[0], lora[1], prefix=encoder)
    # None, not "": SDXL's force_zeros_for_empty_prompt then gives zeros, as the pipeline does; SD3 encodes ""
    negative = None if negative_prompt is None else [negative_prompt] * len(prompts)
    with torch.inference_mode():
        embeds, null, pooled, null_pooled = pipe.encode_prompt(
            prompt=prompts, device=torch.device("cpu"), do_classifier_free_guidance=True, negative_prompt=negative,
            **extra)
    if (int(embeds.shape[-1]), int(pooled.shape[-1])) != tuple(dims):
        raise LoadError(f"the text encoders of {root} give {int(embeds.shape[-1])}-wide embeddings and "
                        f"{int(pooled.shape[-1])}-wide pooled embeddings, the network takes {dims[0]} and {dims[1]}: "
                        "the folders do not belong together")
    null_source = "the empty prompt" if negative_prompt is None else f"--negative-prompt '{negative_prompt}'"
    if name == "StableDiffusion3Pipeline" and pipe.text_encoder_3 is None:
        notes.append(f"{root} has no text_encoder_3 (T5): its tokens are zeros, as the pipeline does without it")
    if name == "StableDiffusionXLPipeline" and negative_prompt is None and pipe.config.force_zeros_for_empty_prompt:
        null_source = "zeros (the empty prompt under the pipeline's force_zeros_for_empty_prompt)"
        notes.append(f"null condition: zeros for the embeddings and the pooled embedding, as {name} uses for an empty "
                     "negative prompt (force_zeros_for_empty_prompt in model_index.json); --negative-prompt encodes text")
    return ConditionSet(
        kind="cross_attn",
        values=pack_pooled(embeds.float(), pooled.float()),
        null=pack_pooled(null[:1].float(), null_pooled[:1].float()),
        labels=tuple(prompts),
        source=f"--prompts {prompts_file} encoded by {root} ({name}.encode_prompt)"
        + (f" with the text encoders of {encoders_source}" if text_encoders and encoders_source else ""),
        null_source=null_source,
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

    @property
    def scale_factor(self) -> int:
        """Image pixels per latent pixel along each side."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    def to(self, device: torch.device | str) -> "LatentDecoder":
        self.vae.to(device=device)
        return self


def load_vae(root: Path, latent_shape: Sequence[int]) -> Tuple[LatentDecoder, Dict[str, Any]]:
    """The pipeline's VAE as a :class:`LatentDecoder`, and a JSON-ready description of it."""
    folder = root / "vae"
    from diffusers import AutoencoderKL

    from ..quiet import quiet_diffusers

    try:
        with quiet_diffusers():
            vae = AutoencoderKL.from_pretrained(str(folder), local_files_only=True, low_cpu_mem_usage=False)
    except Exception as exc:
        raise LoadError(f"cannot load the VAE in {folder} (AutoencoderKL): {_one_line(exc)}") from None
    return latent_decoder(vae, latent_shape, str(folder))


def latent_decoder(
    vae: torch.nn.Module, latent_shape: Sequence[int], source: str
) -> Tuple[LatentDecoder, Dict[str, Any]]:
    """A built ``AutoencoderKL`` (from ``source``) as a :class:`LatentDecoder`, and a JSON-ready description."""
    vae = vae.float().eval().requires_grad_(False)
    cfg = vae.config
    channels = int(latent_shape[0])
    if int(cfg.latent_channels) != channels:
        raise LoadError(f"{source} has {cfg.latent_channels} latent channels, the UNet samples {channels}: "
                        "the VAE and the UNet do not belong together")
    scaling = float(cfg.scaling_factor if cfg.scaling_factor is not None else 0.18215)
    shift = float(getattr(cfg, "shift_factor", None) or 0.0)
    factor = 2 ** (len(cfg.block_out_channels) - 1)
    image_shape = [int(cfg.out_channels), int(latent_shape[1]) * factor, int(latent_shape[2]) * factor]
    info = {
        "source": source,
        "class": type(vae).__name__,
        "scaling_factor": scaling,
        "shift_factor": shift,
        "latent_shape": [int(d) for d in latent_shape],
        "image_shape": image_shape,
    }
    return LatentDecoder(vae=vae, scaling_factor=scaling, shift_factor=shift, source=source), info


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line if len(line) <= 200 else line[:197] + "..."


def decoder_note(info: Dict[str, Any]) -> str:
    """The report's note on how latent samples became the images the measures see (``info``: from
    :func:`latent_decoder`)."""
    return (f"latent samples {'x'.join(map(str, info['latent_shape']))} decoded by {info['source']} "
            f"(scaling_factor {info['scaling_factor']:g}) into {'x'.join(map(str, info['image_shape']))} images; "
            "every pixel measure and LPIPS runs on the images")
