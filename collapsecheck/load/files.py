"""Reading weight files safely: safetensors headers, state dicts, JSON configs, content hashes.

Safetensors headers are read and checked without reading the tensors (detection stays cheap); torch files are
read only with ``torch.load(weights_only=True)``: pickled code is refused, never run.
"""
from __future__ import annotations

import hashlib
import json
import struct
import zipfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch

from ..errors import LoadError, UsageError

TORCH_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")
_MAX_HEADER_BYTES = 100_000_000


class NotSafetensors(Exception):
    """The file does not start with a valid safetensors header."""


def one_line(exc: BaseException) -> str:
    """The first line of an exception's message, at most 200 characters (for one-line errors)."""
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line if len(line) <= 200 else line[:197] + "..."


def examples(items: List[str], n: int = 3) -> str:
    """The first ``n`` items, comma-separated, with ``...`` when there are more."""
    shown = ", ".join(items[:n])
    return shown + (", ..." if len(items) > n else "")


def counted(groups: List[Tuple[List[str], str]], n: int = 3) -> List[str]:
    """"{count} {what} ({examples})" for each non-empty group of (items, what)."""
    return [f"{len(items)} {what} ({examples(items, n)})" for items, what in groups if items]


def parse_safetensors_header(path: Path) -> Tuple[Dict[str, Any], int]:
    """Read only the JSON header (8-byte little-endian length prefix, then JSON) and its length."""
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            prefix = handle.read(8)
            if len(prefix) < 8:
                raise NotSafetensors(f"only {len(prefix)} bytes long")
            (length,) = struct.unpack("<Q", prefix)
            if length > size - 8:
                raise NotSafetensors(f"header length {length} does not fit in a {size}-byte file: truncated")
            if length > _MAX_HEADER_BYTES:
                raise NotSafetensors(f"header length {length} is over the {_MAX_HEADER_BYTES // 1_000_000} MB limit "
                                     "safetensors sets; it was not read")
            raw = handle.read(length)
    except OSError as exc:
        raise LoadError(f"{path}: cannot read: {one_line(exc)}") from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise NotSafetensors("header is not valid JSON") from None
    if not isinstance(header, dict):
        raise NotSafetensors("header is not a JSON object")
    return header, length


def is_safetensors(path: Path) -> bool:
    """A ``.safetensors`` name, or a file of another name that starts with a safetensors header."""
    if path.suffix == ".safetensors":
        return True
    try:
        parse_safetensors_header(path)
    except NotSafetensors:
        return False
    return True


def check_file_kind(path: Path) -> None:
    """UsageError unless ``path`` is a safetensors file or has a torch state-dict suffix."""
    if path.suffix == ".safetensors" or path.suffix in TORCH_SUFFIXES:
        return
    try:
        parse_safetensors_header(path)
    except NotSafetensors:
        raise UsageError(
            f"{path}: unsupported file type; pass a .safetensors file, a torch state dict "
            f"({', '.join(TORCH_SUFFIXES)}), or a diffusers model or pipeline folder"
        ) from None


def safetensors_header(path: Path) -> Dict[str, Any]:
    """The validated header of a safetensors file: LoadError if it is corrupt or truncated."""
    try:
        header, length = parse_safetensors_header(path)
    except NotSafetensors as exc:
        raise LoadError(f"{path} is not a valid safetensors file ({exc}); is it corrupt or truncated?") from None
    metadata = header.get("__metadata__")
    if metadata is not None and not (
        isinstance(metadata, dict) and all(isinstance(v, str) for v in metadata.values())
    ):
        raise LoadError(f"{path}: the safetensors metadata is not a map of strings; the file is corrupt")
    end = 0
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
            raise LoadError(f"{path}: the safetensors header entry '{key}' is malformed; the file is corrupt")
        end = max(end, offsets[1])
    available = path.stat().st_size - 8 - length
    if available < end:
        raise LoadError(
            f"{path} is truncated: its header promises {end} bytes of tensor data, the file holds {available}"
        )
    return header


def safetensors_keys(path: Path) -> List[str]:
    """The tensor names in a safetensors file's header."""
    return [k for k in safetensors_header(path) if k != "__metadata__"]


def safetensors_metadata(files: List[Path]) -> Dict[str, str]:
    """The ``__metadata__`` of a single safetensors weight file; empty for shards and torch files."""
    if len(files) == 1 and is_safetensors(files[0]):
        return safetensors_header(files[0]).get("__metadata__") or {}
    return {}


def is_lora_file(path: Path) -> bool:
    """A safetensors file whose tensor names are LoRA factors (read from the header only)."""
    if not path.is_file() or not is_safetensors(path):
        return False
    keys = safetensors_keys(path)
    return bool(keys) and all("lora" in k.lower() or k.endswith(".alpha") for k in keys)


def read_state_dict(files: List[Path]) -> Dict[str, torch.Tensor]:
    """Merge the state dicts of all weight files (shards must not overlap)."""
    state: Dict[str, torch.Tensor] = {}
    for path in files:
        part = read_safetensors(path) if is_safetensors(path) else read_torch(path)
        overlap = state.keys() & part.keys()
        if overlap:
            raise LoadError(f"{path} repeats keys of another shard: {examples(sorted(overlap))}")
        state.update(part)
    if not state:
        raise LoadError(f"{files[0]} holds no tensors")
    return state


def read_safetensors(path: Path) -> Dict[str, torch.Tensor]:
    """All tensors of a safetensors file, on the CPU, after checking its header."""
    from safetensors.torch import load_file

    safetensors_header(path)
    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # safetensors raises its own error types for corrupt data
        raise LoadError(f"{path}: cannot read the safetensors data ({one_line(exc)}); is the file corrupt?") from None


def read_torch(path: Path, mmap: bool = False) -> Dict[str, torch.Tensor]:
    """``torch.load(weights_only=True)`` only: pickled code is refused, never run. ``mmap``: map the tensors
    instead of reading them (zip archives only; for reading the keys cheaply)."""
    import pickle
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            obj = torch.load(str(path), map_location="cpu", weights_only=True, mmap=mmap or None)
    except pickle.UnpicklingError as exc:
        if "weights only load failed" not in str(exc).lower():
            raise LoadError(f"{path}: cannot read ({one_line(exc)}); is the file corrupt?") from None
        detail = next((ln.strip() for ln in str(exc).splitlines() if "Unsupported global" in ln), "")
        detail = detail.split(" was not an allowed global")[0]
        raise LoadError(
            f"{path} holds pickled objects other than tensors ({detail or 'not loadable with weights_only=True'}); "
            "collapsecheck refuses to unpickle untrusted files: convert it to .safetensors in a trusted environment"
        ) from None
    except Exception as exc:  # truncated zip archives, garbage bytes, ...
        raise LoadError(f"{path}: cannot read as a torch state dict ({one_line(exc)}); is the file corrupt?") from None
    return _tensor_dict(obj, path)


def _tensor_dict(obj: Any, path: Path) -> Dict[str, torch.Tensor]:
    """A loaded torch object as a state dict (``{"state_dict": ...}`` unwrapped); LoadError for anything else."""
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        kind = type(obj).__name__
        keys = examples([str(k) for k in obj]) if isinstance(obj, dict) else ""
        raise LoadError(
            f"{path} is not a state dict of tensors (got a {kind}{' with keys ' + keys if keys else ''}); "
            "save model.state_dict() or use save_pretrained"
        )
    return {str(k): v for k, v in obj.items()}


def torch_keys(path: Path) -> List[str]:
    """The tensor names of a torch state-dict file, with the tensors memory-mapped (not read) where the file is a
    zip archive, as ``torch.save`` writes it."""
    return list(read_torch(path, mmap=zipfile.is_zipfile(path)))


def hash_files(files: List[Path]) -> str:
    """First 16 hex characters of the sha256 of the files' bytes, in order."""
    digest = hashlib.sha256()
    for path in files:
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 22), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def combined_hash(*parts: str) -> str:
    """First 16 hex characters of the sha256 of the joined parts (a base hash with what was added to it)."""
    return hashlib.sha256("".join(parts).encode()).hexdigest()[:16]


def read_json(path: Path, error: type, what: str) -> Dict[str, Any]:
    """Read a JSON object from ``path``; ``error`` (UsageError/LoadError) if it is missing or bad."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{what} {path} does not exist") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise error(f"{what} {path} is not valid JSON ({one_line(exc)})") from None
    if not isinstance(data, dict):
        raise error(f"{what} {path} is not a JSON object")
    return data


def json_in(path: Path, name: str, flag: str) -> Path:
    """``path`` itself, or ``path/name`` when ``path`` is a folder; UsageError if missing."""
    if path.is_dir():
        path = path / name
    if not path.is_file():
        raise UsageError(f"{flag} {path} does not exist")
    return path


def json_metadata(metadata: Dict[str, str], key: str, path: Path) -> Optional[Dict[str, Any]]:
    """The JSON object stored under ``key`` in a safetensors file's metadata, or None when there is none."""
    if key not in metadata:
        return None
    try:
        value = json.loads(metadata[key])
    except ValueError as exc:
        raise LoadError(f"{path}: metadata key '{key}' is not valid JSON ({one_line(exc)})") from None
    if not isinstance(value, dict):
        raise LoadError(f"{path}: metadata key '{key}' is not a JSON object")
    return value
