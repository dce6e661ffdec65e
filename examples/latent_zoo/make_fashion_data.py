"""Build ``data/fashion16.npz``, the latent zoo's third dataset, from Fashion-MNIST's raw IDX files.

Fashion-MNIST (Xiao, Rasul and Vollgraf 2017, MIT licence, github.com/zalandoresearch/fashion-mnist) cannot be
downloaded here. The images used are the first 4,443 of its 10,000 test images, the part a truncated
``t10k-images-idx3-ubyte.gz`` (1,966,080 bytes) committed in the public repository fredguth/reax
(``data/FashionMNIST/raw/``) decompresses to; the labels are its full ``t10k-labels-idx1-ubyte``. A complete
file gives the same first 4,443 images (pass ``--limit 4443``).

    python examples/latent_zoo/make_fashion_data.py IMAGES.gz LABELS [--limit N]

Output: ``x`` uint8 (N, 16, 16) area-downsampled from 28x28 and rounded, ``y`` uint8 (N,), the class names.
"""
from __future__ import annotations

import argparse
import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

CLASSES = ("t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot")
OUT = Path(__file__).resolve().parent / "data" / "fashion16.npz"


def read_images(path: Path) -> np.ndarray:
    """Every complete 28x28 image in an IDX file, gzip-compressed (possibly truncated) or not."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(raw)  # tolerates a truncated stream
    magic, n, rows, cols = struct.unpack(">IIII", raw[:16])
    assert magic == 2051 and (rows, cols) == (28, 28), "not an IDX image file of 28x28 images"
    complete = min(n, (len(raw) - 16) // (rows * cols))
    return np.frombuffer(raw[16:16 + complete * 784], dtype=np.uint8).reshape(complete, 28, 28)


def read_labels(path: Path) -> np.ndarray:
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    magic, n = struct.unpack(">II", raw[:8])
    assert magic == 2049, "not an IDX label file"
    return np.frombuffer(raw[8:8 + n], dtype=np.uint8)


def area_downsample(x: np.ndarray, size: int = 16) -> np.ndarray:
    """28x28 -> 16x16 by the same area averaging as torch's adaptive_avg_pool2d (the MNIST data's)."""
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(x.astype(np.float32)).unsqueeze(1)
    return F.adaptive_avg_pool2d(t, size).squeeze(1).round().clamp(0, 255).to(torch.uint8).numpy()


def main(argv=None, out: Path = None, classes=CLASSES, limit: int = None, doc: str = __doc__) -> int:
    """Read IMAGES and LABELS (IDX, 28x28), keep the first ``--limit``, write ``out`` (default: this dataset's)."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", type=Path)
    p.add_argument("labels", type=Path)
    p.add_argument("--limit", type=int, default=limit)
    a = p.parse_args(argv)
    out = OUT if out is None else out
    x = read_images(a.images)[: a.limit]
    y = read_labels(a.labels)[: len(x)]
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, x=area_downsample(x), y=y, classes=np.array(classes))
    print(f"{out}: {len(x)} images, per class {np.bincount(y, minlength=10).tolist()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
