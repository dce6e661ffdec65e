"""Build ``data/cifar16.npz``, the latent zoo's fourth dataset, from CIFAR-10's python batch files.

CIFAR-10 (Krizhevsky 2009) cannot be downloaded here. Copies of its ``cifar-10-batches-py`` files are committed,
truncated, in public repositories (zhi-fangZhang/IPWC: ``data_batch_1`` .. ``data_batch_5``, 2,883,584 bytes each;
ffhh927/low-bit-eva: ``test_batch``, 2,359,296 bytes). Each file is a pickle whose ``labels`` list (all 10,000)
comes before its ``data`` array, so a truncated file still holds every label and the first images completely.

The files are NOT unpickled: ``pickletools.genops`` reads the opcodes without executing any, the labels are the
``BININT1`` arguments between the ``labels`` and ``data`` keys, and the image bytes are read directly after the
``BINSTRING`` (or ``BINBYTES``) opcode that declares the 30,720,000-byte array.

    python examples/latent_zoo/make_cifar_data.py data_batch_1 ... data_batch_5 test_batch

Output: ``x`` uint8 (N, 16, 16): grey (ITU-R 601 luma, 0.299 R + 0.587 G + 0.114 B) area-downsampled from
32x32 and rounded; ``y`` uint8 (N,); the class names.
"""
from __future__ import annotations

import argparse
import pickletools
import struct
from pathlib import Path

import numpy as np

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
OUT = Path(__file__).resolve().parent / "data" / "cifar16.npz"
IMAGE_BYTES = 3072
BATCH_IMAGES = 10000


def read_labels(raw: bytes) -> np.ndarray:
    """The ``labels`` list of a (possibly truncated) CIFAR batch pickle, read from its opcodes."""
    labels, key = [], None
    try:
        for op, arg, _pos in pickletools.genops(raw):
            if op.name in ("SHORT_BINSTRING", "BINUNICODE", "SHORT_BINUNICODE", "SHORT_BINBYTES"):
                text = arg if isinstance(arg, str) else arg.decode("latin-1")
                if text in ("labels", "data", "filenames", "batch_label"):
                    key = text
            elif op.name in ("BININT1", "BININT") and key == "labels":
                labels.append(arg)
            if key == "data":
                break
    except ValueError:
        pass  # the truncated array ends the stream
    if len(labels) != BATCH_IMAGES:
        raise ValueError(f"expected {BATCH_IMAGES} labels, read {len(labels)}")
    return np.asarray(labels, dtype=np.uint8)


def read_images(raw: bytes) -> np.ndarray:
    """Every complete 32x32x3 image of a (possibly truncated) CIFAR batch pickle, as uint8 (N, 3, 32, 32)."""
    size = struct.pack("<i", BATCH_IMAGES * IMAGE_BYTES)
    starts = [raw.find(op + size) for op in (b"T", b"B")]  # BINSTRING (Python 2 pickles), BINBYTES
    starts = [s for s in starts if s >= 0]
    if not starts:
        raise ValueError("no 30,720,000-byte data array declared in this file")
    body = raw[min(starts) + 1 + len(size):]
    complete = min(BATCH_IMAGES, len(body) // IMAGE_BYTES)
    return np.frombuffer(body[: complete * IMAGE_BYTES], dtype=np.uint8).reshape(complete, 3, 32, 32)


def grey_16(x: np.ndarray) -> np.ndarray:
    """uint8 (N, 3, 32, 32) -> uint8 (N, 16, 16): luma, then 2x2 area average, rounded."""
    luma = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    pooled = luma.reshape(len(x), 16, 2, 16, 2).mean(axis=(2, 4))
    return np.clip(np.round(pooled), 0, 255).astype(np.uint8)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("batches", type=Path, nargs="+")
    a = p.parse_args(argv)
    xs, ys = [], []
    for path in a.batches:
        raw = path.read_bytes()
        images = read_images(raw)
        xs.append(grey_16(images))
        ys.append(read_labels(raw)[: len(images)])
        print(f"{path}: {len(images)} complete images")
    x, y = np.concatenate(xs), np.concatenate(ys)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, x=x, y=y, classes=np.array(CLASSES))
    print(f"{OUT}: {len(x)} images, per class {np.bincount(y, minlength=10).tolist()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
