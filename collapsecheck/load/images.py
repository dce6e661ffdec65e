"""``--train-images DIR`` and ``--data-images DIR``: the training images samples are compared with, read with PIL.

Every PNG, JPEG and WebP file directly in DIR, in sorted order, is converted to the samples' channels (1:
grayscale, ``L``; 3: ``RGB``) and resized to the sample resolution with bicubic resampling (aspect ratio not
kept: a non-square image is stretched), then mapped from [0, 255] to [-1, 1] as the samples are.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import UsageError, first_line

TRAIN_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def training_image_files(folder: str | Path, flag: str = "--train-images") -> list[Path]:
    """The image files of ``folder``; a one-line UsageError (naming ``flag``) when it is not a folder or holds
    fewer than two."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"{flag} {folder}: no such folder")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in TRAIN_IMAGE_SUFFIXES)
    if len(files) < 2:
        raise UsageError(f"{flag} {folder}: needs at least 2 images ({', '.join(TRAIN_IMAGE_SUFFIXES)}) to "
                         f"measure how they differ; found {len(files)}")
    return files


def read_training_images(folder: str | Path, channels: int, size: tuple[int, int],
                         flag: str = "--train-images") -> tuple[torch.Tensor, list[str]]:
    """(images (N, channels, H, W) float32 in [-1, 1], file names) of ``folder``, at ``size`` = (H, W)."""
    files = training_image_files(folder, flag)
    return torch.cat(list(iter_images(files, channels, size, flag))), [f.name for f in files]


def iter_training_images(folder: str | Path, channels: int, size: tuple[int, int], flag: str = "--data-images",
                         chunk: int = 256):
    """``folder``'s images as :func:`read_training_images` reads them, ``chunk`` at a time (N, channels, H, W): for a
    statistic over many large images without holding them all."""
    return iter_images(training_image_files(folder, flag), channels, size, flag, chunk)


def iter_images(files: list[Path], channels: int, size: tuple[int, int], flag: str, chunk: int = 256):
    if channels not in (1, 3):
        raise UsageError(f"{flag}: the samples have {channels} channels; training images can be compared "
                         "with 1- (grayscale) or 3-channel (RGB) samples only")
    for start in range(0, len(files), chunk):
        arrays = [_read_image(f, channels, size, flag) for f in files[start:start + chunk]]
        yield torch.from_numpy(np.stack(arrays) / 127.5 - 1.0).permute(0, 3, 1, 2).contiguous().float()


def _read_image(f: Path, channels: int, size: tuple[int, int], flag: str) -> np.ndarray:
    """One image (H, W, channels) float32 in 0..255, converted and resized as the module docstring says."""
    from PIL import Image

    try:
        with Image.open(f) as im:
            im = im.convert("L" if channels == 1 else "RGB").resize((size[1], size[0]), Image.BICUBIC)
            arr = np.asarray(im, dtype=np.float32)
    except (OSError, ValueError) as exc:
        raise UsageError(f"{flag} {f}: cannot be read as an image ({first_line(exc)})") from None
    return arr[..., None] if arr.ndim == 2 else arr
