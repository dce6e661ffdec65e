"""Saved scan work for ``--resume DIR``: per-unit tensors as safetensors, everything else as JSON.

A scan's state lives in ``DIR/<key>/``, where the key hashes everything that determines the result
(the checkpoint's content hash, the resolved config, the conditions' values, the collapsecheck
version): a changed checkpoint or setting starts a fresh folder and never reuses stale work. Every
file is written to a temporary file in the same folder and renamed over its name, so a kill at any
moment (even ``kill -9``) leaves the old state or the new one, never half a file. Nothing here is
ever unpickled: tensors are read with ``safetensors``, the rest with ``json``.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Optional, Union

import torch

from .errors import UsageError
from .version import __version__

#: length of the hex key naming a state folder
KEY_CHARS = 24


def atomic_write(path: Union[str, Path], data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def tensor_digest(*tensors: torch.Tensor) -> str:
    """sha256 of the tensors' dtypes, shapes and bytes."""
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def state_key(inputs: dict) -> str:
    """The key of a scan's state: sha256 of its inputs (canonical JSON) and the collapsecheck version."""
    text = json.dumps({**inputs, "collapsecheck": __version__}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:KEY_CHARS]


class ScanState:
    """One scan's saved work in ``root/<key>/``; ``inputs`` (what the key hashes) is kept as ``key.json``."""

    def __init__(self, root: Union[str, Path], inputs: dict):
        self.key = state_key(inputs)
        self.folder = Path(root) / self.key
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"--resume {root}: cannot make the state folder ({exc.strerror or exc})") from None
        if not (self.folder / "key.json").exists():
            self.save_json("key", inputs)

    def _path(self, name: str, ext: str) -> Path:
        return self.folder / f"{name}.{ext}"

    def save_tensors(self, name: str, tensors: dict, meta: Optional[dict] = None) -> None:
        from safetensors.torch import save

        data = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        atomic_write(self._path(name, "safetensors"),
                     save(data, metadata={"json": json.dumps(meta or {})}))

    def load_tensors(self, name: str) -> Optional[tuple[dict, dict]]:
        """(tensors, meta) saved under ``name``, or None when there are none (or they cannot be read)."""
        from safetensors import safe_open

        path = self._path(name, "safetensors")
        if not path.is_file():
            return None
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = json.loads((f.metadata() or {}).get("json", "{}"))
                return {k: f.get_tensor(k) for k in f.keys()}, meta
        except Exception:  # an unreadable file is work not done: it is redone and rewritten
            return None

    def save_json(self, name: str, value) -> None:
        atomic_write(self._path(name, "json"), (json.dumps(value, indent=1, allow_nan=True) + "\n").encode())

    def load_json(self, name: str):
        path = self._path(name, "json")
        try:
            return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
        except (OSError, ValueError):
            return None

    def names(self, ext: str = "safetensors") -> list[str]:
        return sorted(p.stem for p in self.folder.glob(f"*.{ext}"))
