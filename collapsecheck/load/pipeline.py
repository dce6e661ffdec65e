"""Pipeline folders (``model_index.json``): prompts.

A pipeline folder holds ``unet/`` or ``transformer/`` and ``scheduler/`` (loaded by the pipeline-folder format,
:mod:`collapsecheck.load.pipeline_folder`, like any folder holding them), and here the rest:

* ``text_encoder/`` + ``tokenizer/``, loaded with ``local_files_only=True``, encode ``--prompts`` (one per
  line) into the network's ``encoder_hidden_states``: transformers' ``CLIPTextModel`` and ``CLIPTokenizer``
  for Stable-Diffusion UNets, ``T5EncoderModel`` and its tokenizer for PixArt (zero-padded, see
  :func:`_t5_encoder`); the null condition is the empty prompt or ``--negative-prompt``; a LoRA's
  text-encoder layers are applied first;
* SD3 (``StableDiffusion3Pipeline``, ``transformer/``) and SDXL (``StableDiffusionXLPipeline``, a ``text_time``
  UNet): the pipeline's own ``encode_prompt`` (SD3: two CLIP encoders, T5 when present; SDXL: ``text_encoder/``
  and ``text_encoder_2/`` CLIP) gives embeddings and pooled embeddings, packed into one row per prompt;
* ``vae/``: the decoder of latent samples, in :mod:`collapsecheck.load.vae`.

transformers is imported lazily; it comes with the ``pipelines`` extra.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, TypeVar

import torch

from ..errors import LoadError, UsageError, first_line
from .conditions import ConditionSet
from .files import one_line as _one_line

F = TypeVar("F", bound=Callable[..., Any])

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


def import_transformers():
    """transformers; UsageError when it is not installed."""
    try:
        import transformers
    except ImportError:
        raise UsageError("--prompts needs transformers to run the pipeline's text encoder: "
                         "pip install 'collapsecheck[pipelines]'") from None
    return transformers


def quiet_transformers(fn: F) -> F:
    """``fn`` run with transformers' warnings and progress bars off, both restored afterwards (its warnings are
    not the user's business here; what matters goes into the notes)."""

    @functools.wraps(fn)
    def quiet(*args: Any, **kwargs: Any) -> Any:
        log = import_transformers().utils.logging
        saved, bars = log.get_verbosity(), log.is_progress_bar_enabled()
        log.set_verbosity_error()
        log.disable_progress_bar()
        try:
            return fn(*args, **kwargs)
        finally:
            log.set_verbosity(saved)
            if bars:
                log.enable_progress_bar()

    return quiet  # type: ignore[return-value]


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


@quiet_transformers
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
    tf = import_transformers()
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
    tf = import_transformers()
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


@quiet_transformers
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
    name = POOLED_PIPELINES[model_class]
    pipe = text_pipeline(root, name, model, text_encoders)
    notes = _pipeline_text_lora(pipe, lora)
    # None, not "": SDXL's force_zeros_for_empty_prompt then gives zeros, as the pipeline does; SD3 encodes ""
    negative = None if negative_prompt is None else [negative_prompt] * len(prompts)
    extra = {"prompt_2": None, "prompt_3": None} if name == "StableDiffusion3Pipeline" else {}  # SD3 has no defaults
    with torch.inference_mode():
        embeds, null, pooled, null_pooled = pipe.encode_prompt(
            prompt=prompts, device=torch.device("cpu"), do_classifier_free_guidance=True, negative_prompt=negative,
            **extra)
    if (int(embeds.shape[-1]), int(pooled.shape[-1])) != tuple(dims):
        raise LoadError(f"the text encoders of {root} give {int(embeds.shape[-1])}-wide embeddings and "
                        f"{int(pooled.shape[-1])}-wide pooled embeddings, the network takes {dims[0]} and {dims[1]}: "
                        "the folders do not belong together")
    null_source = _pooled_null_source(pipe, name, root, negative_prompt, notes)
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


def text_pipeline(
    root: Path, name: str, model: torch.nn.Module, text_encoders: Optional[Dict[str, torch.nn.Module]]
) -> Any:
    """The pipeline ``name`` from ``root`` without its VAE, with ``model`` as its network (loaded offline)."""
    import_transformers()
    import diffusers

    from ..quiet import quiet_diffusers

    if name == "StableDiffusion3Pipeline":
        absent = {n: None for n in ("text_encoder_3", "tokenizer_3") if not (root / n).is_dir()}
        components = {"transformer": model, "image_encoder": None, "feature_extractor": None, **absent}
    elif name == "FluxPipeline":
        components = {"transformer": model, "image_encoder": None, "feature_extractor": None}
    else:
        components = {"unet": model, "image_encoder": None, "feature_extractor": None, "add_watermarker": False,
                      **(text_encoders or {})}
    try:
        with quiet_diffusers(progress_bars=False):
            return getattr(diffusers, name).from_pretrained(str(root), vae=None, local_files_only=True, **components)
    except Exception as exc:
        raise LoadError(f"cannot load the text encoders of {root} ({name}): {_one_line(exc)}") from None


def _pipeline_text_lora(pipe: Any, lora: Optional[Tuple[Path, float]]) -> List[str]:
    """A LoRA's layers applied to either SDXL text encoder (SD3 takes no LoRA); the notes."""
    if lora is None:
        return []
    from .lora import apply_text_encoder_lora

    notes: List[str] = []
    for encoder in ("text_encoder", "text_encoder_2"):
        if getattr(pipe, encoder, None) is not None:
            notes += apply_text_encoder_lora(getattr(pipe, encoder), lora[0], lora[1], prefix=encoder)
    return notes


def _pooled_null_source(pipe: Any, name: str, root: Path, negative_prompt: Optional[str], notes: List[str]) -> str:
    """What the null condition is (and notes on what the pipeline substitutes)."""
    null_source = "the empty prompt" if negative_prompt is None else f"--negative-prompt '{negative_prompt}'"
    if name == "StableDiffusion3Pipeline" and pipe.text_encoder_3 is None:
        notes.append(f"{root} has no text_encoder_3 (T5): its tokens are zeros, as the pipeline does without it")
    if name == "StableDiffusionXLPipeline" and negative_prompt is None and pipe.config.force_zeros_for_empty_prompt:
        null_source = "zeros (the empty prompt under the pipeline's force_zeros_for_empty_prompt)"
        notes.append(f"null condition: zeros for the embeddings and the pooled embedding, as {name} uses for an empty "
                     "negative prompt (force_zeros_for_empty_prompt in model_index.json); --negative-prompt encodes text")
    return null_source
