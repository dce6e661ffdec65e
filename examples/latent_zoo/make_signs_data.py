"""Build ``data/signs16.npz``, a latent-zoo holdout, from the Sign Language Digits Dataset: photographed hands.

The Sign Language Digits Dataset (Turkey Ankara Ayrancı Anadolu High School students, Zeynep Dikle and Arda Mavi;
Apache License 2.0) holds 2,062 RGB JPEGs of 100x100 pixels: a hand showing a digit in sign language against a
plain background, 218 students, ten digits each. ardamavi/Sign-Language-Digits-Dataset (commit 4b09433) commits them
as ``Dataset/<digit>/IMG_<n>.JPG`` (204-208 a digit; three files of ``7`` are 3024x3024 originals, left out). The
images are read with Pillow (nothing is unpickled).

    git -C Sign-Language-Digits-Dataset archive 4b09433 Dataset | tar -x
    python examples/latent_zoo/make_signs_data.py Dataset

Of each digit the first PER_CLASS = 203 of its 100x100 files in file-name order are kept (the smallest count, of
``7``; 2,030 in all). Each image is converted to grey with Pillow (``convert("L")``, ITU-R 601 luma), must be 100x100, is cropped to
its central 96x96 and area-averaged by 6x6 blocks to 16x16, rounded half to even. Output: ``x`` uint8 (2030, 16,
16); ``y`` uint8 (2030,) the digit; ``classes`` the class words (``zero`` ... ``nine``).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mat_images import class_folders, first_files, folder_builder_main, grey_square, reduce_files  # noqa: E402

#: (folder, class word), in class order
DIGITS = tuple((str(d), w) for d, w in enumerate(("zero", "one", "two", "three", "four", "five", "six", "seven",
                                                    "eight", "nine")))
PER_CLASS = 203
SIDE, CROP, BLOCK = 100, 96, 6
OUT = Path(__file__).resolve().parent / "data" / "signs16.npz"


def reduce(image) -> np.ndarray:
    """A Pillow image as uint8 (16, 16): grey, its central 96x96 area-averaged by 6x6 blocks."""
    grey = grey_square(image, SIDE, "an image", "the Sign Language Digits Dataset's images")
    edge = (SIDE - CROP) // 2
    crop = grey[edge:edge + CROP, edge:edge + CROP]
    area = crop.reshape(16, BLOCK, 16, BLOCK).mean(axis=(1, 3))
    return np.rint(area).clip(0, 255).astype(np.uint8)


def read_digit(folder: Path) -> np.ndarray:
    """The first PER_CLASS 100x100 JPEGs of ``folder`` (file-name order), reduced to uint8 (PER_CLASS, 16, 16)."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg")) if folder.is_dir() else []
    files = [f for f in files if image_size(f) == (SIDE, SIDE)]
    return reduce_files(first_files(folder, files, PER_CLASS, "100x100 JPEG", "pass the dataset's Dataset folder"),
                        reduce)


def image_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as image:
        return image.size


def select(root: Path):
    """(x uint8 (10 x PER_CLASS, 16, 16), y uint8) from ``root/<digit>/*.JPG``."""
    return class_folders(root, read_digit, DIGITS)


def main(argv=None):
    folder_builder_main(__doc__, OUT, "the Sign Language Digits Dataset's Dataset folder (<digit>/IMG_<n>.JPG)",
                        select, DIGITS, argv)


if __name__ == "__main__":
    main()
