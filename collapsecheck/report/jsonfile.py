"""The JSON renderer: the whole ScanResult, written atomically (nothing half-written on disk)."""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

from ..errors import UsageError
from ..result import ScanResult


def json_ready(value):
    """JSON has no NaN or infinity: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value


def dumps(data) -> str:
    """``data`` as the JSON text every output file holds: indented, non-finite floats as null, a final newline."""
    return json.dumps(json_ready(data), indent=2, allow_nan=False) + "\n"


def to_json(result: ScanResult) -> str:
    return dumps(result.to_dict())


def write_atomic(path: str | Path, data: str | bytes) -> None:
    """Write ``data`` (text or bytes) to ``path`` through a temporary file in the same folder and a rename."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise UsageError(f"cannot write {path}: folder {folder} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb" if isinstance(data, bytes) else "w") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(result: ScanResult, path: str | Path) -> None:
    write_atomic(path, to_json(result))


def check_writable(path: str | Path) -> None:
    """Fail before any heavy work when an output file cannot be written."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise UsageError(f"cannot write {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise UsageError(f"cannot write {path}: folder {folder} is not writable")
    if path.is_dir():
        raise UsageError(f"cannot write {path}: it is a folder; give a file name")
