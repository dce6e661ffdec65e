"""Output paths of the commands: checked before any heavy work, parent folders created when written.

An output may lie in a folder that does not exist yet, e.g. ``--junit DIR/junit.xml`` next to
``--report-dir DIR``. The check only asks that the folders could be made (the nearest existing one is a
writable folder); the folders are made when the file is written, and removed again if the write fails,
so a failed command leaves nothing behind. Every file goes through a temporary file in its own folder
and a rename.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping, Union

from ..errors import UsageError, first_line

Data = Union[str, bytes]


def _nearest_existing(path: Path, flag: str) -> Path:
    """The nearest ancestor of ``path`` that exists; it must be a writable folder."""
    for folder in path.absolute().parents:
        if folder.exists():
            if not folder.is_dir():
                raise UsageError(f"{flag} {path}: {folder} is a file, not a folder")
            if not os.access(folder, os.W_OK):
                raise UsageError(f"{flag} {path}: folder {folder} is not writable")
            return folder
    raise UsageError(f"{flag} {path}: no folder above it exists")  # pragma: no cover - '/' always exists


def check_output_file(path: Union[str, Path], flag: str) -> None:
    """Fail before any heavy work when ``path`` cannot be written as a file."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{flag} {path}: it is a folder; give a file name")
    _nearest_existing(path, flag)


def check_output_folder(path: Union[str, Path], flag: str) -> None:
    """Fail before any heavy work when ``path`` cannot be written as a folder (it may exist)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{flag} {path}: it is a file; give a folder (it may exist)")
    if path.is_dir() and not os.access(path, os.W_OK):
        raise UsageError(f"{flag} {path}: not writable")
    _nearest_existing(path, flag)


@contextmanager
def parent_folders(path: Union[str, Path]) -> Iterator[None]:
    """Make the missing folders above ``path``; remove those made here if the body raises.

    An ``OSError`` of the file system (full disk, read-only, permissions) becomes a one-line UsageError (exit 2)
    naming ``path``; the writers have removed their temporary files by then, and the folders made here go too."""
    made = [folder for folder in Path(path).absolute().parents if not folder.exists()]
    try:
        Path(path).absolute().parent.mkdir(parents=True, exist_ok=True)
        yield
    except BaseException as exc:
        for folder in made:  # deepest first; a folder something else wrote into meanwhile stays
            try:
                folder.rmdir()
            except OSError:
                break
        if isinstance(exc, OSError):
            raise UsageError(f"cannot write {path}: {first_line(exc)}; nothing was written there") from None
        raise


def write_file(path: Union[str, Path], data: Data) -> None:
    """Write ``data`` to ``path`` atomically, making its folders first."""
    from ..report.jsonfile import write_atomic

    with parent_folders(path):
        write_atomic(path, data)


def write_folder(path: Union[str, Path], files: Mapping[str, Data]) -> None:
    """Write ``files`` (name -> content) into the folder ``path`` atomically, making the folders above it first."""
    from ..report.folder import write_files_atomically

    with parent_folders(path):
        write_files_atomically(path, files)
