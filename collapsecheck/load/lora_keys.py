"""Which denoiser a LoRA file was made for, and in which layout, read from its tensor names alone (no tensor is read).

Two layouts:

* diffusers / peft, as ``save_lora_weights`` writes it: ``unet.<module>`` or ``transformer.<module>`` (and
  ``text_encoder.<module>``, ``text_encoder_2.<module>``) with ``lora_A`` / ``lora_B`` factors (older files:
  ``lora.down`` / ``lora.up``); alpha, when it is not the rank, in the file's ``lora_adapter_metadata``;
* kohya (sd-scripts, and the trainers that copy it): ``lora_unet_<module_with_underscores>`` and ``lora_te*_...``
  with ``lora_down`` / ``lora_up`` and an ``.alpha`` per module.

The family follows from module names only a family has: a UNet's ``down_blocks`` (``input_blocks`` in the original
names), Flux's ``single_transformer_blocks`` and ``x_embedder`` (kohya: ``double_blocks``, ``single_blocks``),
PixArt's ``attn1``, ``adaln_single`` and ``caption_projection``, SD3's original ``joint_blocks``. A transformer LoRA
that touches only names SD3 and Flux share (``transformer_blocks.N.attn.to_q``, ``add_q_proj``, ...) fits either,
and the layer shapes decide (:func:`~collapsecheck.load.lora_transformer.apply_transformer_lora`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, List, Optional, Tuple

from ..errors import LoadError

UNET, SD3, FLUX, PIXART = ("UNet2DConditionModel", "SD3Transformer2DModel", "FluxTransformer2DModel",
                           "PixArtTransformer2DModel")
#: the denoisers a LoRA is applied to, and what messages call them
FAMILY_NAMES = {UNET: "Stable Diffusion UNet", SD3: "SD3", FLUX: "Flux", PIXART: "PixArt"}
TRANSFORMERS = (SD3, FLUX, PIXART)
DIFFUSERS, KOHYA = "diffusers/peft", "kohya"
#: the peft adapter name collapsecheck's LoRA layers carry
ADAPTER_NAME = "collapsecheck"

#: component prefixes of the diffusers layout
COMPONENTS = ("unet", "transformer", "text_encoder", "text_encoder_2", "text_encoder_3")
#: (name fragment, families it implies), first match wins; diffusers names after the component prefix
_DIFFUSERS_MARKS: Tuple[Tuple[str, Tuple[str, ...]], ...] = (
    ("single_transformer_blocks.", (FLUX,)), ("x_embedder.", (FLUX,)), ("guidance_embedder.", (FLUX,)),
    (".attn1.", (PIXART,)), ("adaln_single.", (PIXART,)), ("caption_projection.", (PIXART,)),
)
_KOHYA_MARKS: Tuple[Tuple[str, Tuple[str, ...]], ...] = (
    ("lora_unet_double_blocks_", (FLUX,)), ("lora_unet_single_blocks_", (FLUX,)),
    ("lora_unet_joint_blocks_", (SD3,)),
    ("lora_unet_down_blocks_", (UNET,)), ("lora_unet_up_blocks_", (UNET,)), ("lora_unet_mid_block", (UNET,)),
    ("lora_unet_input_blocks_", (UNET,)), ("lora_unet_output_blocks_", (UNET,)), ("lora_unet_middle_block", (UNET,)),
)


@dataclass(frozen=True)
class LoraLayout:
    """A LoRA file's layout, the denoiser classes its names fit, and the tensor name that told."""

    layout: str
    families: Tuple[str, ...]
    evidence: str

    def describe(self) -> str:
        """``"a kohya LoRA for Flux (lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight)"``."""
        names = " or ".join(FAMILY_NAMES[f] for f in self.families) or "no denoiser (text encoders only)"
        return f"a {self.layout} LoRA for {names} ({self.evidence})"


def lora_layout(keys: Iterable[str]) -> Optional[LoraLayout]:
    """The layout and target families of a LoRA with these tensor names; None when the names are in neither layout."""
    names = sorted(keys)
    kohya = [k for k in names if k.startswith(("lora_unet_", "lora_te")) or ".lora_down." in k]
    if kohya:
        return _kohya_layout(kohya)
    prefixed = [k for k in names if k.split(".", 1)[0] in COMPONENTS and ("lora" in k or k.endswith(".alpha"))]
    if not prefixed:
        return None
    denoiser = [k for k in prefixed if k.startswith(("unet.", "transformer."))]
    if not denoiser:
        return LoraLayout(DIFFUSERS, (), prefixed[0])
    if any(k.startswith("unet.") for k in denoiser):
        return LoraLayout(DIFFUSERS, (UNET,), next(k for k in denoiser if k.startswith("unet.")))
    return _transformer_layout(denoiser)


def _kohya_layout(keys: List[str]) -> LoraLayout:
    for mark, families in _KOHYA_MARKS:
        hit = next((k for k in keys if k.startswith(mark)), None)
        if hit is not None:
            return LoraLayout(KOHYA, families, hit)
    if all(k.startswith("lora_te") for k in keys):
        return LoraLayout(KOHYA, (UNET,), keys[0])  # text-encoder layers only: kohya's SD LoRAs name them lora_te
    return LoraLayout(KOHYA, (), next((k for k in keys if not k.startswith("lora_te")), keys[0]))


def _transformer_layout(keys: List[str]) -> LoraLayout:
    for mark, families in _DIFFUSERS_MARKS:
        hit = next((k for k in keys if mark in k), None)
        if hit is not None:
            return LoraLayout(DIFFUSERS, families, hit)
    joint = next((k for k in keys if ".attn2." not in k), None)
    if joint is None:  # attn2 only: PixArt's cross-attention, or the second self-attention of SD3.5's dual blocks
        return LoraLayout(DIFFUSERS, (SD3, PIXART), keys[0])
    return LoraLayout(DIFFUSERS, (SD3, FLUX) if ".attn." in joint or "_context" in joint or "context_" in joint
                      else TRANSFORMERS, joint)


def check_family(layout: Optional[LoraLayout], model_class: str, path: Path, strict: bool = True) -> None:
    """LoadError (one line) when ``layout`` names families that do not include ``model_class``, or (``strict``) is
    unknown. Not ``strict`` (a UNet: diffusers' Stable Diffusion loader reads more layouts than these two), only a
    LoRA clearly made for another family is refused here."""
    if layout is None and not strict:
        return
    if layout is None:
        raise LoadError(f"--lora {path}: unknown LoRA layout; expected diffusers/peft names (transformer.* or unet.* "
                        "with lora_A/lora_B) or kohya names (lora_unet_* with lora_down/lora_up)")
    if not layout.families and layout.layout == KOHYA and strict:
        raise LoadError(f"--lora {path}: kohya names of no known denoiser ({layout.evidence}); supported: "
                        f"{', '.join(FAMILY_NAMES[f] for f in (UNET, *TRANSFORMERS))}")
    if layout.families and model_class not in layout.families:
        raise LoadError(f"--lora {path} is {layout.describe()}; the model it is applied to is a {model_class} "
                        f"({FAMILY_NAMES.get(model_class, model_class)})")
