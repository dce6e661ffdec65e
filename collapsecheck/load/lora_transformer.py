"""LoRA weights applied to a transformer denoiser (SD3, Flux, PixArt) with diffusers' own readers and loaders, at a
chosen scale.

The file is read here (safetensors, or ``torch.load(weights_only=True)``) with its ``lora_adapter_metadata``
(the peft ``LoraConfig`` diffusers' ``save_lora_weights`` stores: rank and alpha); then:

* SD3 and Flux: the pipeline mixin's ``lora_state_dict`` reads the names (``FluxLoraLoaderMixin`` converts kohya
  ``lora_unet_double_blocks_*`` / ``single_blocks_*`` files, alpha folded into the factors) and the transformer's
  own ``load_lora_adapter`` injects the factors, as ``pipeline.load_lora_weights`` does;
* PixArt, which diffusers gives no LoRA loader: the same steps ``load_lora_adapter`` takes (diffusers' names to
  peft's, ``_create_lora_config`` from the metadata or the ranks and alphas, peft's ``inject_adapter_in_model`` and
  ``set_peft_model_state_dict``).

Before any injection every LoRA module is checked against the network: it must exist and be a ``Linear`` (or
``Conv2d``) whose input and output widths are the factors'; the first that is not is named in a one-line
LoadError, because peft would otherwise leave unmatched factors out with a warning. The scale is diffusers'
``set_weights_and_activate_adapters`` (the peft layers' ``scale``: output = W x + scale * alpha / r * B A x).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch

from ..errors import LoadError
from ..quiet import quiet_diffusers
from .files import is_safetensors, json_metadata, one_line, read_state_dict, safetensors_metadata
from .lora_keys import ADAPTER_NAME, FLUX, KOHYA, PIXART, SD3, LoraLayout, check_family, lora_layout

#: the diffusers pipeline mixin whose ``lora_state_dict`` reads (and converts) a family's files
_MIXINS = {SD3: "SD3LoraLoaderMixin", FLUX: "FluxLoraLoaderMixin"}
#: the text encoders whose LoRA layers each family's pipeline takes (when ``--prompts`` runs them)
TEXT_ENCODERS = {SD3: ("text_encoder", "text_encoder_2"), FLUX: ("text_encoder",), PIXART: ("text_encoder",)}
_METADATA_KEY = "lora_adapter_metadata"  # diffusers.loaders.lora_base.LORA_ADAPTER_METADATA_KEY


@dataclass(frozen=True)
class LoraFile:
    """A LoRA file in diffusers' names (component-prefixed: ``transformer.``, ``text_encoder.``), its alphas (kohya
    or ``.alpha`` tensors; None when folded in or absent), its adapter metadata, and its layout."""

    state: Dict[str, torch.Tensor]
    alphas: Optional[Dict[str, Any]]
    metadata: Optional[Dict[str, Any]]
    layout: LoraLayout

    def part(self, prefix: str) -> Dict[str, torch.Tensor]:
        """The tensors of one component, ``prefix`` (``transformer``) stripped."""
        return {k[len(prefix) + 1:]: v for k, v in self.state.items() if k.startswith(prefix + ".")}

    def part_metadata(self, prefix: str) -> Optional[Dict[str, Any]]:
        """The adapter metadata of one component (its ``LoraConfig`` arguments), or None."""
        if not self.metadata:
            return None
        part = {k[len(prefix) + 1:]: v for k, v in self.metadata.items() if k.startswith(prefix + ".")}
        return part or None


def read_lora(path: Path, model_class: str) -> LoraFile:
    """The LoRA at ``path`` read for a ``model_class`` network: its layout checked against the class (one-line
    LoadError otherwise), its names converted by the family's diffusers reader."""
    raw = read_state_dict([path])
    layout = lora_layout(raw)
    check_family(layout, model_class, path)
    assert layout is not None  # check_family refuses an unknown layout
    if layout.layout == KOHYA and model_class != FLUX:
        raise LoadError(f"--lora {path} is {layout.describe()}; diffusers converts kohya names for Stable Diffusion "
                        "UNets and Flux only: save it in the diffusers layout (transformer.* lora_A/lora_B)")
    metadata = adapter_metadata(path)
    mixin = _MIXINS.get(model_class)
    try:
        if mixin is not None and model_class == FLUX:
            state, alphas = _mixin(mixin).lora_state_dict(dict(raw), return_alphas=True)
        elif mixin is not None:
            state, alphas = _pop_alphas(_mixin(mixin).lora_state_dict(dict(raw)))
        else:  # PixArt: diffusers has no LoRA reader for it; the names are diffusers' own
            state, alphas = _pop_alphas(dict(raw))
    except Exception as exc:  # a converter's assertion or KeyError on names it does not know
        raise LoadError(f"--lora {path}: diffusers cannot read it as {layout.describe()}: {one_line(exc)}") from None
    return LoraFile(state, alphas or None, metadata, layout)


def _mixin(name: str) -> Any:
    import diffusers.loaders

    return getattr(diffusers.loaders, name)


def _pop_alphas(state: Dict[str, torch.Tensor]) -> Tuple[Dict[str, torch.Tensor], Dict[str, Any]]:
    """``.alpha`` tensors taken out as network alphas (what ``FluxLoraLoaderMixin.lora_state_dict`` does)."""
    alphas = {k: state.pop(k) for k in [k for k in state if k.endswith(".alpha")]}
    return state, alphas


def adapter_metadata(path: Path) -> Optional[Dict[str, Any]]:
    """diffusers' ``lora_adapter_metadata`` of a safetensors LoRA (``LoraConfig`` arguments per component)."""
    if not is_safetensors(path):
        return None
    return json_metadata(safetensors_metadata([path]), _METADATA_KEY, path)


def apply_transformer_lora(
    model: torch.nn.Module, model_class: str, path: Path, scale: float, notes: List[str], text_encoder: bool = False
) -> int:
    """Load the LoRA at ``path`` into the transformer ``model`` (in place) at ``scale``; returns the number of layers
    that took a LoRA. Notes say which of the file's text-encoder layers are (with ``text_encoder``: the prompts are
    encoded by the pipeline's encoders, which take them) or are not applied."""
    lora = read_lora(path, model_class)
    layers = lora.part("transformer")
    if not layers:
        other = sorted({k.split(".", 1)[0] for k in lora.state})
        raise LoadError(f"--lora {path} holds no transformer LoRA layers (its names start with "
                        f"{', '.join(other) or 'nothing'}); is it a LoRA for this kind of model?")
    layers = _peft_names(layers)
    check_fit(model, model_class, layers, path, lora.layout)
    with quiet_diffusers(logging.ERROR):  # peft's warnings on unmatched keys: the fit is checked above
        try:
            unmatched = _load_factors(model, layers, lora)
            from diffusers.utils.peft_utils import set_weights_and_activate_adapters

            set_weights_and_activate_adapters(model, [ADAPTER_NAME], [float(scale)])
        except Exception as exc:
            raise LoadError(f"--lora {path} does not load into the {model_class}: {one_line(exc)}") from None
    if unmatched:
        raise LoadError(f"--lora {path} does not match this {model_class}: {len(unmatched)} LoRA tensors unmatched "
                        f"(e.g. {unmatched[0]})")
    model.eval().requires_grad_(False)
    count = sum(1 for name, _ in model.named_modules() if name.endswith(f"lora_A.{ADAPTER_NAME}"))
    notes.append(f"LoRA {path.name} ({lora.layout.layout} layout) applied to {count} transformer layers at scale "
                 f"{float(scale):g} (--lora-scale)")
    notes.extend(_unapplied_notes(lora, model_class, text_encoder))
    return count


def _peft_names(layers: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Old diffusers names (``lora.down`` / ``lora.up``) as peft's (``lora_A`` / ``lora_B``), as
    ``load_lora_adapter`` converts them."""
    if all("lora_A" in k or "lora_B" in k for k in layers):
        return layers
    from diffusers.utils import convert_unet_state_dict_to_peft

    return convert_unet_state_dict_to_peft(layers)


def _load_factors(model: torch.nn.Module, layers: Dict[str, torch.Tensor], lora: LoraFile) -> List[str]:
    """The transformer's factors (peft names) injected into ``model`` with the file's alphas or metadata (diffusers
    refuses both at once; the metadata, a whole ``LoraConfig``, wins); the LoRA tensors left unmatched."""
    metadata = lora.part_metadata("transformer")
    alphas = None if metadata else {k: float(v) for k, v in (lora.alphas or {}).items() if k.startswith("transformer.")}
    if hasattr(model, "load_lora_adapter"):  # SD3, Flux: diffusers' own loader (it warns of unmatched keys only)
        model.load_lora_adapter({f"transformer.{k}": v for k, v in layers.items()}, prefix="transformer",
                                network_alphas=alphas or None, metadata=lora.metadata if metadata else None,
                                adapter_name=ADAPTER_NAME)
        return []
    alphas = {k[len("transformer."):]: v for k, v in (alphas or {}).items()}
    return _inject(model, layers, alphas or None, metadata)


def check_fit(
    model: torch.nn.Module, model_class: str, layers: Dict[str, torch.Tensor], path: Path, layout: LoraLayout
) -> None:
    """LoadError naming the first LoRA module (in name order) that is not a layer of ``model`` with the factors'
    widths."""
    modules = dict(model.named_modules())
    for name in sorted({k.split(".lora_", 1)[0] for k in layers}):
        problem = _misfit(modules.get(name), layers.get(f"{name}.lora_A.weight"), layers.get(f"{name}.lora_B.weight"))
        if problem:
            raise LoadError(f"--lora {path} does not fit this {model_class}: its first mismatching module is "
                            f"{name} ({problem}); the file is {layout.describe()}")


def _misfit(module: Optional[torch.nn.Module], down: Optional[torch.Tensor], up: Optional[torch.Tensor]) -> str:
    """Why factors ``down`` (lora_A, r x in) and ``up`` (lora_B, out x r) do not fit ``module``; "" when they do."""
    if module is None:
        return "no such layer"
    if down is None or up is None:
        return "lora_A or lora_B missing"
    if isinstance(module, torch.nn.Linear):
        widths = (module.in_features, module.out_features)
    elif isinstance(module, torch.nn.Conv2d):
        widths = (module.in_channels, module.out_channels)
    else:
        return f"a {type(module).__name__}, not a Linear or Conv2d layer"
    if (int(down.shape[1]), int(up.shape[0])) != widths:
        return (f"the LoRA maps {int(down.shape[1])} to {int(up.shape[0])} features, the layer {widths[0]} to "
                f"{widths[1]}")
    return ""


def _inject(
    model: torch.nn.Module, layers: Dict[str, torch.Tensor], alphas: Optional[Dict[str, float]],
    metadata: Optional[Dict[str, Any]],
) -> List[str]:
    """The steps of diffusers' ``load_lora_adapter`` for a network without it (PixArt); the LoRA tensors left
    unmatched."""
    from diffusers.utils.peft_utils import _create_lora_config
    from peft import inject_adapter_in_model, set_peft_model_state_dict

    ranks = {f"^{k}": int(v.shape[1]) for k, v in layers.items() if "lora_B" in k and v.ndim > 1}
    config = _create_lora_config(layers, None if metadata else alphas, metadata, ranks,
                                 model_state_dict=model.state_dict(), adapter_name=ADAPTER_NAME)
    inject_adapter_in_model(config, model, adapter_name=ADAPTER_NAME, state_dict=layers)
    result = set_peft_model_state_dict(model, layers, ADAPTER_NAME)
    missing = [k for k in result.missing_keys if ".lora_" in k and ADAPTER_NAME in k]
    return [k for k in result.unexpected_keys if ".lora_" in k] + missing


def _unapplied_notes(lora: LoraFile, model_class: str, text_encoder: bool) -> List[str]:
    """Notes on the file's layers outside the transformer: text-encoder layers (applied by the pipeline with
    ``--prompts``) and anything else (never applied)."""
    parts = sorted({k.split(".", 1)[0] for k in lora.state} - {"transformer"})
    taken = [p for p in parts if p in TEXT_ENCODERS[model_class]]
    notes = []
    if taken and not text_encoder:
        notes.append(f"the LoRA's {' and '.join(taken)} layers are not applied: the conditions are --cond embeddings, "
                     "not prompts encoded by the text encoder; pass --prompts with a pipeline to apply them")
    rest = [p for p in parts if p not in taken]
    if rest:
        notes.append(f"the LoRA's {', '.join(rest)} layers are not applied: diffusers' loader takes only the "
                     f"transformer's and {' and '.join(TEXT_ENCODERS[model_class])}'s")
    return notes
