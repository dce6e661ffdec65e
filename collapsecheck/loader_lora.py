"""LoRA weights applied to a loaded UNet with diffusers' own loaders, at a chosen scale.

Formats: whatever ``StableDiffusionLoraLoaderMixin.lora_state_dict`` reads (diffusers / peft
``pytorch_lora_weights.safetensors``, kohya ``lora_unet_*`` keys, which diffusers converts); the
file is read here (safetensors, or ``torch.load(weights_only=True)``), never by a loader that
could unpickle. Keys that match no layer of the UNet are an error, not a warning. peft is
imported lazily; it comes with the ``pipelines`` extra.
"""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import List, Tuple

import torch

from .errors import LoadError, UsageError

ADAPTER_NAME = "collapsecheck"


class _Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: List[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def apply_lora(model: torch.nn.Module, model_class: str, path: Path, scale: float, notes: List[str]) -> Tuple[str, str]:
    """Load the LoRA at ``path`` into ``model`` (in place) at ``scale``; returns (description, file hash)."""
    if model_class != "UNet2DConditionModel":
        raise UsageError(f"--lora applies to UNet2DConditionModel (cross-attention) UNets; this is a {model_class}")
    try:
        import peft  # noqa: F401
    except ImportError:
        raise UsageError("--lora needs peft: pip install 'collapsecheck[pipelines]'") from None
    from diffusers.loaders import StableDiffusionLoraLoaderMixin
    from diffusers.utils import logging as diffusers_logging

    from .checkpoint import _read_state_dict

    raw = _read_state_dict([path])
    captured = _Captured()
    root = logging.getLogger("diffusers")
    level = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_warning()
    root.addHandler(captured)
    try:
        state, alphas = StableDiffusionLoraLoaderMixin.lora_state_dict(dict(raw))
        unet_keys = [k for k in state if k.startswith("unet.")]
        other = sorted({k.split(".", 1)[0] for k in state if not k.startswith("unet.")})
        if not unet_keys:
            raise LoadError(f"--lora {path} holds no UNet LoRA layers (keys start with {', '.join(other) or 'nothing'}); "
                            "is it a LoRA for this kind of model?")
        StableDiffusionLoraLoaderMixin.load_lora_into_unet(state, alphas, model, adapter_name=ADAPTER_NAME)
        model.set_adapters([ADAPTER_NAME], weights=[float(scale)])
    except (LoadError, UsageError):
        raise
    except Exception as exc:
        line = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise LoadError(f"--lora {path} does not load into the UNet: {line}") from None
    finally:
        root.removeHandler(captured)
        diffusers_logging.set_verbosity(level)
    bad = [m for m in captured.messages if "unexpected" in m.lower() or "not found" in m.lower()]
    if bad:
        raise LoadError(f"--lora {path} does not match this UNet: {bad[0].splitlines()[0][:200]}")
    layers = sum(1 for name, _ in model.named_modules() if name.endswith(f"lora_A.{ADAPTER_NAME}"))
    if layers == 0:
        raise LoadError(f"--lora {path}: no layer of the UNet took a LoRA factor; is it a LoRA for this model?")
    model.eval().requires_grad_(False)
    notes.append(f"LoRA {path.name} applied to {layers} UNet layers at scale {float(scale):g} (--lora-scale)")
    if other:
        notes.append(f"the LoRA's {', '.join(other)} layers are not applied (only the UNet's are)")
    return f"{path} (scale {float(scale):g})", _file_hash(path)
