"""LoRA weights applied to a loaded UNet with diffusers' own loaders, and to the pipeline's text encoder
(diffusers' key conversion, peft's injection), at a chosen scale; SD3, Flux and PixArt transformers take theirs
through :mod:`~collapsecheck.load.lora_transformer`.

Formats: whatever ``StableDiffusionLoraLoaderMixin.lora_state_dict`` reads (diffusers / peft
``pytorch_lora_weights.safetensors`` with ``unet.*`` and ``text_encoder.*`` keys, kohya ``lora_unet_*`` and
``lora_te_*`` keys, which diffusers converts); the file is read here (safetensors, or
``torch.load(weights_only=True)``), never by a loader that could unpickle. Keys that match no layer are an
error, not a warning. The text-encoder layers are applied when ``--prompts`` runs the text encoder
(:func:`apply_text_encoder_lora`); with ``--cond`` embeddings they cannot be, and a note says so. peft is
imported lazily; it comes with the ``pipelines`` extra.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch

from ..errors import LoadError, UsageError
from .files import combined_hash, hash_files, read_state_dict
from .lora_keys import ADAPTER_NAME, TRANSFORMERS, UNET, check_family, lora_layout


class _Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: List[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def with_lora(
    model: torch.nn.Module, model_class: str, lora: Optional[Tuple[Path, float]], source: str, content_hash: str,
    notes: List[str], text_encoder: bool = False,
) -> Tuple[str, str]:
    """Apply ``lora`` = (file, scale) to ``model`` when given (see :func:`apply_lora`); returns the weights'
    description and content hash with the LoRA's added (unchanged without one)."""
    if lora is None:
        return source, content_hash
    path, scale = lora
    lora_source, lora_hash = apply_lora(model, model_class, path, scale, notes, text_encoder=text_encoder)
    return f"{source} + LoRA {lora_source}", combined_hash(content_hash, lora_hash, repr(float(scale)))


def apply_lora(
    model: torch.nn.Module, model_class: str, path: Path, scale: float, notes: List[str], text_encoder: bool = False
) -> Tuple[str, str]:
    """Load the LoRA at ``path`` into ``model`` (in place) at ``scale``; returns (description, file hash).

    ``text_encoder``: the prompts will be encoded by the pipeline's text encoder, which then takes the LoRA's
    ``text_encoder`` layers (:func:`apply_text_encoder_lora`); otherwise a note says they are not applied.
    SD3, Flux and PixArt transformers take it through :mod:`~collapsecheck.load.lora_transformer`."""
    if model_class not in (UNET, *TRANSFORMERS):
        raise UsageError(f"--lora applies to UNet2DConditionModel (cross-attention) UNets and to SD3, Flux and PixArt "
                         f"transformers; this is a {model_class}")
    try:
        import peft  # noqa: F401
    except ImportError:
        raise UsageError("--lora needs peft: pip install 'collapsecheck[pipelines]'") from None
    if model_class in TRANSFORMERS:
        from .lora_transformer import apply_transformer_lora

        apply_transformer_lora(model, model_class, path, scale, notes, text_encoder=text_encoder)
        return f"{path} (scale {float(scale):g})", hash_files([path])
    return _apply_unet_lora(model, path, scale, notes, text_encoder)


def _apply_unet_lora(model: torch.nn.Module, path: Path, scale: float, notes: List[str], text_encoder: bool
                     ) -> Tuple[str, str]:
    """:func:`apply_lora` for a UNet: diffusers' Stable Diffusion reader and ``load_lora_into_unet``."""
    from diffusers.loaders import StableDiffusionLoraLoaderMixin

    from ..quiet import quiet_diffusers

    raw = read_state_dict([path])
    check_family(lora_layout(raw), UNET, path, strict=False)
    captured = _Captured()
    root = logging.getLogger("diffusers")
    with quiet_diffusers(logging.WARNING):  # warnings are kept: unmatched keys come only as warnings
        root.addHandler(captured)
        try:
            state, alphas = StableDiffusionLoraLoaderMixin.lora_state_dict(dict(raw))
            unet_keys = [k for k in state if k.startswith("unet.")]
            other = sorted({k.split(".", 1)[0] for k in state if not k.startswith("unet.")})
            if not unet_keys:
                raise LoadError(f"--lora {path} holds no UNet LoRA layers (keys start with "
                                f"{', '.join(other) or 'nothing'}); is it a LoRA for this kind of model?")
            StableDiffusionLoraLoaderMixin.load_lora_into_unet(state, alphas, model, adapter_name=ADAPTER_NAME)
            model.set_adapters([ADAPTER_NAME], weights=[float(scale)])
        except (LoadError, UsageError):
            raise
        except Exception as exc:
            line = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise LoadError(f"--lora {path} does not load into the UNet: {line}") from None
        finally:
            root.removeHandler(captured)
    bad = [m for m in captured.messages if "unexpected" in m.lower() or "not found" in m.lower()]
    if bad:
        raise LoadError(f"--lora {path} does not match this UNet: {bad[0].splitlines()[0][:200]}")
    layers = sum(1 for name, _ in model.named_modules() if name.endswith(f"lora_A.{ADAPTER_NAME}"))
    if layers == 0:
        raise LoadError(f"--lora {path}: no layer of the UNet took a LoRA factor; is it a LoRA for this model?")
    model.eval().requires_grad_(False)
    notes.append(f"LoRA {path.name} applied to {layers} UNet layers at scale {float(scale):g} (--lora-scale)")
    sdxl = getattr(model.config, "addition_embed_type", None) == "text_time"  # its pipeline has two text encoders
    encoders = [name for name in other if name in (("text_encoder", "text_encoder_2") if sdxl else ("text_encoder",))]
    if encoders and not text_encoder:
        notes.append(f"the LoRA's {' and '.join(encoders)} layers are not applied: the conditions are --cond embeddings, "
                     "not prompts encoded by the text encoder; pass --prompts with a pipeline to apply them")
    other = [name for name in other if name not in encoders]
    if other:
        notes.append(f"the LoRA's {', '.join(other)} layers are not applied (only the UNet's and text_encoder's are)")
    return f"{path} (scale {float(scale):g})", hash_files([path])


def apply_text_encoder_lora(encoder: torch.nn.Module, path: Path, scale: float, prefix: str = "text_encoder") -> List[str]:
    """Load the ``text_encoder`` layers (``prefix``: ``text_encoder_2`` for SDXL's second encoder) of the LoRA at
    ``path`` into that text encoder of the pipeline (in place) at ``scale``; returns notes (none when the LoRA has no
    such layers).

    The keys are read and converted by diffusers (``lora_state_dict``, ``convert_state_dict_to_peft``,
    ``_create_lora_config``), as ``load_lora_into_text_encoder`` does; the factors are injected with peft itself
    rather than through transformers' ``load_adapter``, which transformers 5 refuses with peft < 0.22. The encoder's
    ``LoraConfig`` in the file's ``lora_adapter_metadata`` (rank and alpha), when there is one, is used as diffusers
    uses it."""
    from diffusers.utils import convert_state_dict_to_diffusers, convert_state_dict_to_peft
    from diffusers.utils.peft_utils import _create_lora_config, set_weights_and_activate_adapters
    from peft import inject_adapter_in_model, set_peft_model_state_dict

    state, alphas = _encoder_layers(path)
    metadata = _encoder_metadata(path, prefix)
    label, prefix = ("text-encoder" if prefix == "text_encoder" else prefix), prefix + "."
    layers = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not layers:
        return []
    alphas = {k[len(prefix):]: v for k, v in (alphas or {}).items() if k.startswith(prefix)}
    if not all(".lora_A." in k or ".lora_B." in k for k in layers):  # peft names already (T5's q, v, wo too)
        layers = convert_state_dict_to_peft(convert_state_dict_to_diffusers(layers))
    if not hasattr(encoder, "text_model"):  # transformers 5 flattens CLIPTextModel; older LoRAs name text_model.
        layers = {k.removeprefix("text_model."): v for k, v in layers.items()}
        alphas = {k.removeprefix("text_model."): v for k, v in alphas.items()}
    ranks = {k: int(v.shape[1]) for k, v in layers.items() if k.endswith("lora_B.weight")}
    try:
        config = _create_lora_config(layers, None if metadata else alphas or None, metadata, ranks, is_unet=False)
        inject_adapter_in_model(config, encoder, adapter_name=ADAPTER_NAME)
        result = set_peft_model_state_dict(encoder, layers, adapter_name=ADAPTER_NAME)
        set_weights_and_activate_adapters(encoder, [ADAPTER_NAME], [float(scale)])
    except Exception as exc:
        line = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise LoadError(f"--lora {path}: its {prefix[:-1]} layers do not load into the text encoder: {line}") from None
    unmatched = [k for k in list(result.unexpected_keys) + list(result.missing_keys) if "lora_" in k]
    if unmatched:
        raise LoadError(f"--lora {path} does not match the pipeline's text encoder: {len(unmatched)} LoRA keys "
                        f"unmatched (e.g. {unmatched[0]})")
    count = sum(1 for name, _ in encoder.named_modules() if name.endswith(f"lora_A.{ADAPTER_NAME}"))
    encoder.eval().requires_grad_(False)
    return [f"LoRA {path.name} applied to {count} {label} layers at scale {float(scale):g} (--lora-scale)"]


def _encoder_layers(path: Path) -> Tuple[Dict[str, torch.Tensor], Optional[Dict[str, Any]]]:
    """The LoRA's tensors in diffusers' names and its alphas, read by the reader of the family it was made for: a
    transformer LoRA's (Flux converts kohya names) or Stable Diffusion's (kohya ``lora_te*`` converted)."""
    from diffusers.loaders import StableDiffusionLoraLoaderMixin

    raw = read_state_dict([path])
    layout = lora_layout(raw)
    if layout is not None and layout.families and set(layout.families) <= set(TRANSFORMERS):
        from .lora_transformer import read_lora

        lora = read_lora(path, layout.families[0])
        return lora.state, lora.alphas
    return StableDiffusionLoraLoaderMixin.lora_state_dict(dict(raw))


def _encoder_metadata(path: Path, prefix: str) -> Optional[Dict[str, Any]]:
    """The ``LoraConfig`` arguments diffusers' ``save_lora_weights`` stored for this encoder, or None."""
    from .lora_transformer import adapter_metadata

    metadata = {k[len(prefix) + 1:]: v for k, v in (adapter_metadata(path) or {}).items() if k.startswith(prefix + ".")}
    return metadata or None
