"""Building a diffusers network from its config and loading its weights with strict semantics.

Every key and shape must match (a one-line LoadError says which do not); ``torch.compile`` and DDP key
prefixes are stripped when every key carries them; the network comes back in float32, eval mode, without
gradients, on the CPU.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Tuple

import torch

from ..errors import LoadError
from .files import counted, examples, one_line

SUPPORTED_MODEL_CLASSES: Tuple[str, ...] = (
    "UNet2DModel", "UNet2DConditionModel", "DiTTransformer2DModel", "PixArtTransformer2DModel",
    "SD3Transformer2DModel", "FluxTransformer2DModel",
)
#: Legacy class names that diffusers itself maps to today's classes on load (``_CLASS_REMAPPING_DICT``), by
#: ``norm_type``: the published DiT (facebook/DiT-*) and PixArt-alpha configs still name ``Transformer2DModel``.
LEGACY_CLASSES: Mapping[str, Mapping[str, str]] = {
    "Transformer2DModel": {"ada_norm_zero": "DiTTransformer2DModel", "ada_norm_single": "PixArtTransformer2DModel"},
}
_STRIPPED_PREFIXES = ("_orig_mod.", "module.")
#: config keys a class does not take but the scan reads, kept in the config it returns: a Flux transformer's
#: sample_size (the latent side to scan at; FluxPipeline's default, 128, without it)
SCAN_KEYS: Mapping[str, Tuple[str, ...]] = {"FluxTransformer2DModel": ("sample_size",)}


def strip_prefixes(state: Dict[str, torch.Tensor], notes: List[str]) -> Dict[str, torch.Tensor]:
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


def model_class(cfg: Mapping[str, Any], cfg_label: str, notes: List[str], allowed: Tuple[str, ...]) -> str:
    """The diffusers class to build for ``cfg`` (legacy names remapped as diffusers does, noted); LoadError when it
    is missing or not one of ``allowed``."""
    class_name = cfg.get("_class_name")
    if class_name is None:
        raise LoadError(
            f"the model config from {cfg_label} has no _class_name; add "
            '"_class_name": "UNet2DModel" (or "UNet2DConditionModel") to it'
        )
    remapped = LEGACY_CLASSES.get(class_name, {}).get(cfg.get("norm_type"))
    if remapped in allowed:
        notes.append(f"config class {class_name} with norm_type '{cfg['norm_type']}' loaded as {remapped}, "
                     "as diffusers loads it")
        class_name = remapped
    if class_name not in allowed:
        raise LoadError(f"model class {class_name} is not supported yet; supported: {', '.join(allowed)}")
    return class_name


def build_model(
    cfg: Dict[str, Any], cfg_label: str, state: Dict[str, torch.Tensor], notes: List[str],
    allowed: Tuple[str, ...] = SUPPORTED_MODEL_CLASSES,
) -> Tuple[torch.nn.Module, Dict[str, Any]]:
    """Build the model (one of the ``allowed`` classes) from its config and load ``state`` with strict semantics;
    returns the model and its config as a plain JSON-compatible dict with ``_class_name``."""
    class_name = model_class(cfg, cfg_label, notes, allowed)
    model = _empty_model(class_name, cfg, cfg_label, notes)
    check_keys(model.state_dict(), state, cfg_label)
    stored = sorted({str(t.dtype).replace("torch.", "") for t in state.values() if t.is_floating_point()} - {"float32"})
    if stored:
        notes.append(f"weights stored as {', '.join(stored)}; cast to float32")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise LoadError(f"weights do not load into {class_name}: {one_line(exc)}") from None
    model = model.float().eval().requires_grad_(False)  # built on CPU; .float() avoids diffusers' .to() warning
    clean = {k: v for k, v in plain(dict(model.config)).items() if k != "_use_default_values"}
    clean["_class_name"] = class_name
    clean.update({k: cfg[k] for k in SCAN_KEYS.get(class_name, ()) if k in cfg})
    return model, clean


def _empty_model(class_name: str, cfg: Dict[str, Any], cfg_label: str, notes: List[str]) -> torch.nn.Module:
    """``class_name`` built from ``cfg`` without its random init (the strict load overwrites every parameter)."""
    import diffusers

    from ..quiet import quiet_diffusers

    cls = getattr(diffusers, class_name)
    try:
        with quiet_diffusers(), _no_init():
            model, unused = cls.from_config(dict(cfg), return_unused_kwargs=True)
    except Exception as exc:
        raise LoadError(f"cannot build {class_name} from the config in {cfg_label}: {one_line(exc)}") from None
    ignored = sorted(k for k in unused if not k.startswith("_") and k not in SCAN_KEYS.get(class_name, ()))
    if ignored:
        notes.append(f"config keys not used by {class_name}: {examples(ignored, 8)}")
    return model


def _no_init():
    """diffusers' ``no_init_weights`` (4 s of an SD-1.5 UNet's build on CPU), or nothing where it is missing."""
    try:
        from diffusers.models.modeling_utils import no_init_weights
    except ImportError:  # pragma: no cover - older diffusers
        import contextlib

        return contextlib.nullcontext()
    return no_init_weights()


def check_keys(expected: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor], cfg_label: str) -> None:
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
    parts = counted([(missing, "missing keys"), (unexpected, "unexpected")]) + counted([(shapes, "with other shapes")], 2)
    which = "--base" if cfg_label.startswith("--base") else "--config"
    raise LoadError(
        f"weights do not match the config from {cfg_label}: {', '.join(parts)}; is {which} the right one?"
    )


def _shape(tensor: torch.Tensor) -> str:
    return "x".join(str(d) for d in tensor.shape) or "scalar"


def plain(value: Any) -> Any:
    """A JSON-compatible copy: tuples become lists, mappings become dicts."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def refuse_non_finite(networks: Mapping[str, torch.nn.Module], source: str) -> None:
    """LoadError naming the first parameter or buffer that holds NaN or infinite values: a corrupt file or a
    diverged training run, which would otherwise surface as NaN samples far into the scan."""
    for what, network in networks.items():
        for name, tensor in [*network.named_parameters(), *network.named_buffers()]:
            if not tensor.is_floating_point() or tensor.device.type == "meta":
                continue
            finite = torch.isfinite(tensor.detach())
            if bool(finite.all()):
                continue
            bad, nan = int((~finite).sum()), int(torch.isnan(tensor.detach()).sum())
            kinds = " and ".join(k for k, n in (("NaN", nan), ("infinite values", bad - nan)) if n)
            raise LoadError(f"{source}: {what}weight '{name}' holds {kinds} ({bad} of {tensor.numel()} values); "
                            "the file is corrupt or the training diverged")
