"""Where the weights are: a bare file, a diffusers model folder, or a pipeline / training folder.

Each ``locate_*`` function returns a :class:`Located`: the weight file(s), and where the model config and
the scheduler may be found for them.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

from ..errors import LoadError, UsageError
from .files import TORCH_SUFFIXES, check_file_kind, examples, read_json

WEIGHT_NAMES: Tuple[str, ...] = (
    "diffusion_pytorch_model.safetensors",
    "diffusion_pytorch_model.safetensors.index.json",
    "diffusion_pytorch_model.bin",
    "diffusion_pytorch_model.bin.index.json",
    "diffusion_pytorch_model.fp16.safetensors",
    "diffusion_pytorch_model.fp16.bin",
)
#: The subfolders of a pipeline or training output folder that hold its network
NETWORK_FOLDERS = ("unet", "unet_ema", "transformer")
_CHECKPOINT_DIR = re.compile(r"^checkpoint-(\d+)$")
CONTROLNET_CLASS = "ControlNetModel"


@dataclass
class Located:
    """Where the weights are and where their config and scheduler may be."""

    files: List[Path]
    weights_dir: Path
    source: str
    config_json: Path
    config_json_label: str
    config_json_first: bool
    """True for model folders (config.json before metadata); False for bare files (metadata first)."""
    pipeline_roots: List[Path]


def model_folder_files(folder: Path) -> Optional[List[Path]]:
    """The weight file(s) of a diffusers model folder, or ``None`` if it is not one."""
    for name in WEIGHT_NAMES:
        candidate = folder / name
        if not candidate.is_file():
            continue
        if not name.endswith(".index.json"):
            return [candidate]
        index = read_json(candidate, LoadError, "sharded weight index")
        weight_map = index.get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise LoadError(f"{candidate} has no weight_map; the sharded checkpoint is incomplete")
        shards = [folder / str(shard) for shard in sorted(set(weight_map.values()))]
        missing = [s.name for s in shards if not s.is_file()]
        if missing:
            raise LoadError(f"{candidate} names shards that are missing: {examples(missing)}")
        return shards
    return None


def is_model_folder(root: Path) -> bool:
    """A folder holding diffusers weight file names (directory listing only)."""
    return root.is_dir() and any((root / name).is_file() for name in WEIGHT_NAMES)


def is_network_parent(root: Path) -> bool:
    """A folder holding ``unet/``, ``unet_ema/`` or ``transformer/`` (a pipeline or training output folder)."""
    return root.is_dir() and any((root / name).is_dir() for name in NETWORK_FOLDERS)


def controlnet_folder(root: Path) -> Optional[Path]:
    """The ControlNet model folder ``root`` is or holds (``controlnet/``), or None."""
    for folder in (root, root / "controlnet"):
        config = folder / "config.json"
        if folder.is_dir() and config.is_file():
            try:
                name = json.loads(config.read_text(encoding="utf-8")).get("_class_name")
            except (OSError, ValueError, AttributeError):
                continue  # not ours to judge: the general loader reports a bad config.json
            if name == CONTROLNET_CLASS:
                return folder
    return None


def locate(root: Path, weights: str, notes: List[str]) -> Located:
    """The weights of a file, a model folder or a pipeline folder, whichever ``root`` is."""
    if root.is_file():
        return locate_file(root, weights)
    if is_model_folder(root):
        return locate_model_folder(root, weights, notes)
    return locate_pipeline_folder(root, weights, notes)


def locate_file(root: Path, weights: str) -> Located:
    """A bare weight file: its config may sit in its metadata or beside it."""
    if weights != "auto":
        raise UsageError(f"--weights {weights} applies to a folder holding unet/ or unet_ema/; {root} is a weight file")
    check_file_kind(root)
    return Located(
        files=[root],
        weights_dir=root.parent,
        source=str(root),
        config_json=root.parent / "config.json",
        config_json_label=f"config.json beside the file ({root.parent / 'config.json'})",
        config_json_first=False,
        pipeline_roots=_roots_above(root.parent),
    )


def locate_model_folder(root: Path, weights: str, notes: List[str]) -> Located:
    """A diffusers model folder (``config.json`` + ``diffusion_pytorch_model.*``)."""
    files = model_folder_files(root)
    if files is None:
        raise UsageError(f"{root} holds no diffusion_pytorch_model.safetensors or .bin")
    if weights != "auto":
        raise UsageError(
            f"--weights {weights} applies to a folder holding unet/ or unet_ema/; "
            f"{root} is a model folder: pass it without --weights"
        )
    return _model_folder(root, files, str(root) + _shard_suffix(files), _roots_above(root), notes)


def locate_pipeline_folder(root: Path, weights: str, notes: List[str]) -> Located:
    """A pipeline or training output folder: ``unet/`` (or ``unet_ema/``, as ``--weights`` picks) or
    ``transformer/``."""
    present = [name for name in ("unet", "unet_ema") if (root / name).is_dir()]
    if not present and (root / "transformer").is_dir():  # DiT pipelines keep their network in transformer/
        if weights != "auto":
            raise UsageError(f"--weights {weights} applies to unet/ or unet_ema/; {root} holds transformer/")
        return _network_folder(root, root / "transformer", str(root / "transformer"), notes)
    if not present:
        raise UsageError(unknown_folder_message(root))
    _note_checkpoints(root, notes)
    choice = _choose_unet(root, weights, present)
    return _network_folder(root, root / choice, _unet_source(root / choice, weights, present, notes), notes)


def _choose_unet(root: Path, weights: str, present: List[str]) -> str:
    if weights == "auto":
        return "unet" if "unet" in present else "unet_ema"
    if weights not in present:
        raise UsageError(f"--weights {weights}: {root} has no {weights}/ folder; it has "
                         + ", ".join(f"{name}/" for name in present))
    return weights


def _unet_source(folder: Path, weights: str, present: List[str], notes: List[str]) -> str:
    """How the report names the UNet folder loaded, and a note on the other one."""
    if folder.name == "unet" and "unet_ema" in present:
        if weights == "auto":
            notes.append("unet_ema/ is also present; pass --weights unet_ema to scan the EMA weights")
        return f"{folder} (pass --weights unet_ema to scan the EMA weights in unet_ema/)"
    if folder.name == "unet_ema":
        if weights == "auto":
            notes.append("no unet/ folder; loaded the EMA weights in unet_ema/")
        return f"{folder} (EMA weights" + ("; pass --weights unet to scan unet/)" if "unet" in present else ")")
    return str(folder)


def _network_folder(root: Path, folder: Path, source: str, notes: List[str]) -> Located:
    files = model_folder_files(folder)
    if files is None:
        what = ".bin" if folder.name == "transformer" else "diffusion_pytorch_model.bin"
        raise UsageError(f"{folder} holds no diffusion_pytorch_model.safetensors or {what}")
    return _model_folder(folder, files, source + _shard_suffix(files), [root, *_checkpoint_parent(root)], notes)


def _model_folder(folder: Path, files: List[Path], source: str, roots: List[Path], notes: List[str]) -> Located:
    if any(".fp16." in f.name for f in files):
        notes.append(f"loaded the fp16 variant {files[0].name} (no full-precision weights in {folder})")
    return Located(
        files=files,
        weights_dir=folder,
        source=source,
        config_json=folder / "config.json",
        config_json_label=str(folder / "config.json"),
        config_json_first=True,
        pipeline_roots=roots,
    )


def _shard_suffix(files: List[Path]) -> str:
    return f" ({len(files)} shards)" if len(files) > 1 else ""


def _roots_above(folder: Path) -> List[Path]:
    """Pipeline roots that may hold ``scheduler/`` for a model folder named ``unet``/``unet_ema``."""
    if folder.name in NETWORK_FOLDERS:
        return [folder.parent, *_checkpoint_parent(folder.parent)]
    return []


def _checkpoint_parent(root: Path) -> List[Path]:
    """The training output folder above a ``checkpoint-N`` folder (it may hold ``scheduler/``)."""
    return [root.parent] if _CHECKPOINT_DIR.match(root.name) else []


def checkpoints_in(root: Path) -> List[str]:
    """The ``checkpoint-N`` folders in ``root``, in training order."""
    found = [(int(m.group(1)), p.name) for p in root.iterdir() if p.is_dir() and (m := _CHECKPOINT_DIR.match(p.name))]
    return [name for _, name in sorted(found)]


def _note_checkpoints(root: Path, notes: List[str]) -> None:
    names = checkpoints_in(root)
    if names:
        notes.append(
            f"{root} also holds training checkpoints ({examples(names, 4)}); "
            "pass one of them to scan an earlier checkpoint"
        )


def unknown_folder_message(root: Path) -> str:
    """Why ``root`` is no layout collapsecheck knows, and what to pass instead."""
    if (root / "pytorch_lora_weights.safetensors").is_file():
        return (f"{root} holds LoRA weights (pytorch_lora_weights.safetensors, a LoRA training checkpoint): pass "
                "the model it was trained on with --base BASE")
    checkpoints = checkpoints_in(root)
    if checkpoints:
        return (
            f"{root} holds training checkpoints ({examples(checkpoints, 4)}) but no unet/ of its own; "
            f"pass one of them, e.g. {root / checkpoints[-1]}"
        )
    message = (
        f"{root} is not a checkpoint layout collapsecheck knows: looked for config.json with "
        "diffusion_pytorch_model.safetensors or .bin (a diffusers model folder) and for unet/ or "
        "unet_ema/ (a pipeline or training output folder)"
    )
    loose = sorted(p.name for p in root.iterdir() if p.is_file() and p.suffix in (".safetensors", *TORCH_SUFFIXES))
    if loose:
        message += f"; found {examples(loose, 3)}: pass a weight file directly, with --config CONFIG.json"
    dangling = sorted(p.name for p in root.iterdir() if p.is_symlink() and not p.exists())
    if dangling:
        message += f"; {examples(dangling, 3)}: symlinks that lead nowhere (a loop, or a missing target)"
    return message
