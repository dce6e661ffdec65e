"""The conditions a scan samples, and the null condition guidance compares them with.

Four kinds, one per way a condition enters the network:

* ``class``: integer labels through ``num_class_embeds``; the null class is an embedding index.
* ``concat``: an image concatenated to x_t along channels; the null is zeros unless given.
* ``cross_attn``: embeddings (L, D) fed as ``encoder_hidden_states``; the null is zeros unless given.
  SD3 transformers and SDXL UNets also take a pooled embedding (P,): each condition is then one flat row packing both,
  ``[cond.flatten(), pooled]`` (:func:`pack_pooled`), so the samplers (and CADS noise) see one tensor.
* ``control``: ControlNet hint images in [0, 1]; the null is the ControlNet switched off (a NaN hint).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, Optional, Sequence

import numpy as np
import torch

from ..errors import UsageError, first_line

ConditionKind = Literal["class", "concat", "cross_attn", "control"]
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


@dataclass(frozen=True)
class ConditionSet:
    """The conditions to scan, stacked along dim 0, and the null condition (batch of one)."""

    kind: ConditionKind
    values: torch.Tensor
    null: torch.Tensor
    labels: tuple[str, ...]
    source: str
    null_source: str
    notes: tuple[str, ...] = field(default=())
    #: every condition the model knows is in the set (all classes): the null branch is their mixture
    complete: bool = False
    #: every condition the model knows, when they can be listed (class ids): the null-branch test uses them
    universe: Optional[torch.Tensor] = None
    #: ``null`` holds one row per condition, its own null (ControlNet (prompt, hint) pairs: the ControlNet off with
    #: that prompt), rather than one null for all
    paired_null: bool = False
    #: the number of classes the set was chosen from when it is the default evenly spaced subset
    #: (more than CLASS_SUBSET_LIMIT classes and no --classes); None otherwise
    subset_of: Optional[int] = None

    def complete_set(self) -> "ConditionSet":
        """The set of every condition the model knows when listable (else this set)."""
        if self.complete or self.universe is None:
            return self
        return replace(self, values=self.universe, labels=tuple(f"class {int(c)}" for c in self.universe), complete=True)

    def __len__(self) -> int:
        return int(self.values.shape[0])


@dataclass(frozen=True)
class Tensors:
    """Conditions passed as tensors from Python, where the command line reads a ``--cond`` file: ``tensors`` holds
    ``cond`` and optionally ``null`` (and ``pooled``, ``null_pooled``). It answers as a file that exists."""

    tensors: dict
    name: str = "the tensors passed as cond"

    def __str__(self) -> str:
        return "cond (tensors)"

    def exists(self) -> bool:
        return True

    def is_dir(self) -> bool:
        return False


def where(path) -> str:
    """How a message names the conditions' source: ``--cond PATH``, or ``--cond`` for :class:`Tensors`."""
    return "--cond" if isinstance(path, Tensors) else f"--cond {path}"


def cond_source(path) -> "Path | Tensors":
    return path if isinstance(path, Tensors) else Path(path)


def load_condition_tensors(path: str | Path | Tensors) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Read conditions (and an optional null) from .npy, .safetensors, .pt or a folder of images (or
    :class:`Tensors`)."""
    path = cond_source(path)
    if not path.exists():
        raise UsageError(f"{where(path)} does not exist")
    if path.is_dir():
        return _load_image_folder(path), None
    obj = _read_cond_file(path)
    return (obj.float(), None) if isinstance(obj, torch.Tensor) else _pick(obj, path)


def _read_cond_file(path: Path):
    """A tensor (.npy, a .pt tensor) or a dict of tensors (.npz, .safetensors, a .pt dict)."""
    if isinstance(path, Tensors):
        return {k: v.detach().cpu() for k, v in path.tensors.items()}
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            return torch.from_numpy(np.load(path, allow_pickle=False))
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                return dict((k, torch.from_numpy(data[k])) for k in data.files)
        if suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        if suffix in (".pt", ".pth", ".bin"):
            obj = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(obj, (torch.Tensor, dict)):
                return obj
            raise UsageError(f"{where(path)}: expected a tensor or a dict with key 'cond', got {type(obj).__name__}")
    except UsageError:
        raise
    except Exception as exc:
        raise UsageError(f"{where(path)} cannot be read: {first_line(exc)}") from exc
    raise UsageError(f"{where(path)}: unsupported file type '{suffix}'; use .npy, .npz, .safetensors, .pt or a folder of images")


def _pick(tensors: dict, path: Path) -> tuple[torch.Tensor, torch.Tensor | None]:
    if "cond" not in tensors:
        raise UsageError(f"{where(path)} has no key 'cond' (keys: {', '.join(sorted(tensors)) or 'none'})")
    null = tensors.get("null")
    return tensors["cond"].float(), (None if null is None else null.float())


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def _load_image_folder(folder: Path) -> torch.Tensor:
    from PIL import Image

    files = _image_files(folder)
    if not files:
        raise UsageError(f"--cond {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    arrays = []
    for f in files:
        with Image.open(f) as im:
            gray = im.mode in ("L", "I", "I;16", "1")
            arr = np.asarray(im.convert("L") if gray else im.convert("RGB"))
        arr = arr[..., None] if arr.ndim == 2 else arr
        arrays.append(arr)
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise UsageError(f"--cond {folder}: images differ in size or channels ({sorted(shapes)[:3]}); make them match the model")
    stack = np.stack(arrays).astype(np.float32) / 127.5 - 1.0  # [0, 255] -> [-1, 1]
    return torch.from_numpy(stack).permute(0, 3, 1, 2).contiguous()


def tensor_conditions(
    kind: ConditionKind,
    path: str | Path,
    expected: Sequence[int],
    labels_from: str | None = None,
) -> ConditionSet:
    """Conditions from a file, checked against the per-condition shape the model expects."""
    cond, null = load_condition_tensors(path)
    expected = tuple(int(e) for e in expected)
    what = "(N, C, H, W) images" if kind == "concat" else "(N, L, D) embeddings"
    if cond.dim() == len(expected):
        cond = cond.unsqueeze(0)
    if cond.dim() != len(expected) + 1 or (kind == "concat" and tuple(cond.shape[1:]) != expected) or (
        kind == "cross_attn" and cond.shape[-1] != expected[-1]
    ):
        raise UsageError(
            f"{where(path)}: conditions have shape {tuple(cond.shape)}, but the model expects {what} "
            f"with per-condition shape {expected}" + (" (L may differ)" if kind == "cross_attn" else "")
        )
    if null is None:
        null = torch.zeros((1,) + tuple(cond.shape[1:]))
        null_source = "zeros (no 'null' entry in --cond)"
    else:
        null = null.reshape((1,) + tuple(null.shape[-len(expected):])) if null.dim() >= len(expected) else null
        if tuple(null.shape[1:]) != tuple(cond.shape[1:]):
            raise UsageError(f"{where(path)}: 'null' has shape {tuple(null.shape)}, conditions {tuple(cond.shape)}")
        null_source = f"'null' entry of {cond_source(path).name}"
    labels = tuple(f"cond {i}" for i in range(cond.shape[0]))
    return ConditionSet(kind=kind, values=cond, null=null, labels=labels, source=str(path), null_source=null_source)


def null_hint(shape: Sequence[int]) -> torch.Tensor:
    """The null condition of a ControlNet scan: a hint of NaN, which the ControlNet denoiser reads as "off"."""
    return torch.full((1,) + tuple(int(d) for d in shape), float("nan"))


def hint_conditions(path: str | Path, shape: Sequence[int]) -> ConditionSet:
    """ControlNet hints from ``--cond``: a folder of images, or a tensor file (N, C, H, W) with values in [0, 1].

    Grey images are repeated to the hint's channels; hints of another size are resized (bilinear,
    antialiased, as an image pipeline would) to ``shape``, with a note.
    """
    values, null = load_condition_tensors(path)
    path = cond_source(path)
    if null is not None:
        raise UsageError(f"{where(path)} has a 'null' entry; a ControlNet scan's null condition is the ControlNet "
                         "switched off: remove the entry")
    if path.is_dir():
        values = (values + 1.0) / 2.0  # the image folder reader gives [-1, 1]; ControlNets take [0, 1]
    elif values.numel() and (float(values.min()) < -1e-6 or float(values.max()) > 1.0 + 1e-6):
        raise UsageError(f"{where(path)}: hint values span [{float(values.min()):.3g}, {float(values.max()):.3g}]; "
                         "ControlNet hints are images in [0, 1]")
    channels, height, width = (int(d) for d in shape)
    if values.dim() == 3:
        values = values.unsqueeze(0)
    if values.dim() != 4:
        raise UsageError(f"{where(path)}: hints have shape {tuple(values.shape)}; expected (N, {channels}, H, W) images")
    if values.shape[1] == 1 and channels != 1:
        values = values.repeat(1, channels, 1, 1)
    if values.shape[1] != channels:
        raise UsageError(f"{where(path)}: hints have {values.shape[1]} channels; the ControlNet takes {channels}")
    notes = []
    if tuple(values.shape[2:]) != (height, width):
        notes.append(f"hints resized from {values.shape[2]}x{values.shape[3]} to {height}x{width} (the latent size "
                     "times the ControlNet's downsampling), bilinear with antialiasing")
        values = torch.nn.functional.interpolate(values, size=(height, width), mode="bilinear", antialias=True,
                                                 align_corners=False).clamp(0.0, 1.0)
    return ConditionSet(
        kind="control", values=values.float().contiguous(), null=null_hint(shape),
        labels=tuple(p.name for p in _image_files(path)) if path.is_dir() else tuple(f"hint {i}" for i in range(len(values))),
        source=str(path),
        null_source="the ControlNet switched off (the base model with the same prompt)", notes=tuple(notes),
    )


def pair_hints_with_prompts(hints: ConditionSet, prompts: Sequence[str], prompts_source: str) -> ConditionSet:
    """ControlNet (prompt, hint) pairs, as ``train_controlnet.py``'s ``--validation_prompt``/``--validation_image``.

    ``prompts`` (P > 1) pair with the hints in order (sorted file names for a folder); one hint serves every prompt.
    Each row is the hint with one more channel holding its prompt's index (:class:`~collapsecheck.model.control.
    ControlDenoiser` reads it); each condition's null is its own prompt with the ControlNet off (a NaN hint).
    """
    count, n = len(prompts), len(hints)
    if n != count and n != 1:
        raise UsageError(f"--prompts {prompts_source} holds {count} prompts but --cond {hints.source} {n} hints: "
                         "pair them one to one (equal counts, matched in sorted order), or give one prompt or one hint")
    values = hints.values.expand((count,) + tuple(hints.values.shape[1:])) if n == 1 else hints.values
    labels = hints.labels * count if n == 1 else hints.labels
    index = torch.arange(count, dtype=torch.float32).view(-1, 1, 1, 1).expand(-1, 1, *values.shape[2:])
    null = torch.cat([torch.full(values.shape, float("nan")), index], dim=1)
    return replace(
        hints, values=torch.cat([values, index], dim=1).contiguous(), null=null.contiguous(), paired_null=True,
        labels=tuple(f"{prompt} | {label}" for prompt, label in zip(prompts, labels)),
        source=f"{hints.source} with the prompts of {prompts_source}",
        null_source="the ControlNet switched off (the base model with each condition's own prompt)",
        notes=hints.notes + ("each (prompt, hint) pair has its own null, so the null-branch test (one null for all "
                             "conditions) is not run and the w = 0 column is sampled per pair",),
    )


def pack_pooled(cond: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
    """(N, L, D) embeddings and (N, P) pooled embeddings as one (N, L * D + P) row per condition."""
    return torch.cat([cond.flatten(1), pooled.flatten(1)], dim=1).float()


def unpack_pooled(rows: torch.Tensor, dim: int, pooled_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The inverse of :func:`pack_pooled`: ((B, L, dim), (B, pooled_dim))."""
    return rows[:, :-pooled_dim].reshape(rows.shape[0], -1, dim), rows[:, -pooled_dim:]


def pooled_conditions(path: str | Path, dim: int, pooled_dim: int, hint: str = "") -> ConditionSet:
    """SD3 or SDXL conditions from a file with ``cond`` (N, L, dim) and ``pooled`` (N, pooled_dim), optional
    ``null`` (1, L, dim) and ``null_pooled`` (1, pooled_dim); packed by :func:`pack_pooled`. ``hint`` is appended
    to a shape error."""
    path = cond_source(path)
    if not path.exists():
        raise UsageError(f"{where(path)} does not exist")
    obj = None if path.is_dir() else _read_cond_file(path)
    need = f"'cond' (N, L, {dim}) and 'pooled' (N, {pooled_dim})"
    if not isinstance(obj, dict) or "cond" not in obj or "pooled" not in obj:
        raise UsageError(f"{where(path)}: this model takes a file (.safetensors, .npz or a .pt dict) with {need}")
    cond, pooled = obj["cond"].float(), obj["pooled"].float()
    cond = cond.unsqueeze(0) if cond.dim() == 2 else cond
    pooled = pooled.unsqueeze(0) if pooled.dim() == 1 else pooled
    if cond.dim() != 3 or cond.shape[-1] != dim or tuple(pooled.shape) != (cond.shape[0], pooled_dim):
        raise UsageError(f"{where(path)}: got 'cond' {tuple(cond.shape)} and 'pooled' {tuple(pooled.shape)}; "
                         f"the model takes {need}{hint}")
    null, null_pooled = obj.get("null"), obj.get("null_pooled")
    if (null is None) != (null_pooled is None):
        raise UsageError(f"{where(path)}: give both 'null' and 'null_pooled', or neither (zeros)")
    if null is None:
        null, null_pooled = torch.zeros((1,) + tuple(cond.shape[1:])), torch.zeros(1, pooled_dim)
        null_source = "zeros (no 'null' and 'null_pooled' entries in --cond)"
    else:
        null, null_pooled = null.float().reshape((1,) + tuple(null.shape[-2:])), null_pooled.float().reshape(1, -1)
        if tuple(null.shape[1:]) != tuple(cond.shape[1:]) or null_pooled.shape[1] != pooled_dim:
            raise UsageError(f"{where(path)}: 'null' {tuple(null.shape)} and 'null_pooled' {tuple(null_pooled.shape)} "
                             f"do not match 'cond' {tuple(cond.shape)} and 'pooled' {tuple(pooled.shape)}")
        null_source = f"'null' and 'null_pooled' entries of {path.name}"
    return ConditionSet(kind="cross_attn", values=pack_pooled(cond, pooled), null=pack_pooled(null, null_pooled),
                        labels=tuple(f"cond {i}" for i in range(cond.shape[0])), source=str(path),
                        null_source=null_source)


def describe(conds: ConditionSet) -> dict:
    """A JSON-ready description of a condition set (no tensors)."""
    return {
        "kind": conds.kind,
        "count": len(conds),
        "labels": list(conds.labels),
        "source": conds.source,
        "null": conds.null_source,
        **({"subset_of": conds.subset_of} if conds.subset_of is not None else {}),
    }


__all__ = [
    "ConditionSet",
    "Tensors",
    "tensor_conditions",
    "hint_conditions",
    "pair_hints_with_prompts",
    "null_hint",
    "pooled_conditions",
    "load_condition_tensors",
    "describe",
]
