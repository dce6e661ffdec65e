"""Build ``data/yaleb16.npz``, the latent zoo's thirteenth dataset, from a 32x32 copy of the Extended Yale Face
Database B.

The Extended Yale Face Database B (Georghiades, Belhumeur and Kriegman 2001, "From few to many"; Lee, Ho and
Kriegman 2005; free for research, cite the papers) photographs 38 people's frontal faces under 64 lighting
directions. It cannot be downloaded here. tansyab1/CNN-Sparse (commit c52b9c2) commits the cropped faces reduced to
32x32 as a MATLAB 5 file, ``data/YaleB_32x32.mat`` (git blob 47997900, 2,119,682 bytes): ``features`` uint8
(1024, 2414), each column a 32x32 image stored column by column, and ``Label`` (1, 2414) in 1-38. It is read with
``scipy.io.loadmat`` (a plain array container, nothing is unpickled).

    python examples/latent_zoo/make_yaleb_data.py YaleB_32x32.mat

The first ten people (labels 1-10, 64 images each) are kept, in stored order. Output: ``x`` uint8 (640, 16, 16),
2x2-area-averaged from 32x32 and rounded, in rows; ``y`` uint8 (640,); the class names (made-up first names: the
database names nobody).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mat_images import builder_main, read_uint8_mat  # noqa: E402

PEOPLE = 10
NAMES = ("ada", "ben", "cai", "dov", "eli", "fay", "gus", "hal", "ivy", "jon")
OUT = Path(__file__).resolve().parent / "data" / "yaleb16.npz"


def read_yaleb(path: Path):
    """(images uint8 (2414, 32, 32) in rows, person labels (2414,)) from the 32x32 YaleB_32x32.mat."""
    data, labels = read_uint8_mat(path, "features", "Label", (1024, 2414))
    return data.T.reshape(-1, 32, 32).transpose(0, 2, 1), labels


def select(images: np.ndarray, labels: np.ndarray):
    """The first PEOPLE people's images at 16x16 (2x2 area averages, rounded) and their labels 0..PEOPLE-1."""
    keep = labels <= PEOPLE
    small = images[keep].reshape(-1, 16, 2, 16, 2).astype(np.float64).mean(axis=(2, 4))
    return np.rint(small).astype(np.uint8), (labels[keep] - 1).astype(np.uint8)


def main(argv=None):
    builder_main(__doc__, OUT, "YaleB_32x32.mat", lambda path: dict(zip(("x", "y"), select(*read_yaleb(path))),
                                                                     classes=np.array(NAMES)), argv)


if __name__ == "__main__":
    main()
