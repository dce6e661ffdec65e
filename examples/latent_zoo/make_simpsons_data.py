"""Build ``data/simpsons16.npz``, the latent zoo's sixteenth dataset, from Simpsons-MNIST's greyscale frames.

Simpsons-MNIST (Alvaro Bartolome, github.com/alvarobartt/simpsons-mnist; CC BY-NC-SA 4.0, after Alexandre Attia's
Kaggle set "The Simpsons Characters") holds 28x28 greyscale crops of ten characters of the cartoon, 800 train and
200 test images each, as JPEG files in ``dataset/grayscale/{train,test}/<character>/pic_NNNN.jpg``. It cannot be
downloaded here; alvarobartt/simpsons-mnist (commit f70f4e6) commits them (tree e938ee78 for
``dataset/grayscale``). They are read with Pillow (nothing is unpickled).

    git -C simpsons-mnist archive HEAD dataset/grayscale | tar -x
    python examples/latent_zoo/make_simpsons_data.py dataset/grayscale

The first ``PER_CLASS`` train images of each character in file-name order are kept (5,000), area-averaged from
28x28 to 16x16 as the MNIST-like sets are (``make_idx_data.area_downsample``). Output: ``x`` uint8 (5000, 16, 16);
``y`` uint8 (5000,) the character; ``classes`` the class words.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_idx_data import area_downsample  # noqa: E402
from mat_images import class_folders, first_files, folder_builder_main  # noqa: E402

#: (folder name, class word), in class order (the folders' alphabetical order)
CHARACTERS = (("bart_simpson", "bart"), ("charles_montgomery_burns", "burns"), ("homer_simpson", "homer"),
              ("krusty_the_clown", "krusty"), ("lisa_simpson", "lisa"), ("marge_simpson", "marge"),
              ("milhouse_van_houten", "milhouse"), ("moe_szyslak", "moe"), ("ned_flanders", "ned"),
              ("principal_skinner", "skinner"))
PER_CLASS = 500
OUT = Path(__file__).resolve().parent / "data" / "simpsons16.npz"


def read_character(folder: Path) -> np.ndarray:
    """The first PER_CLASS JPEGs of ``folder`` in file-name order, as uint8 (PER_CLASS, 28, 28)."""
    from PIL import Image

    files = first_files(folder, sorted(folder.glob("*.jpg")), PER_CLASS, "JPEG",
                        "pass the dataset/grayscale folder of simpsons-mnist")
    images = [np.asarray(Image.open(f).convert("L"), dtype=np.uint8) for f in files]
    if any(i.shape != (28, 28) for i in images):
        raise SystemExit(f"error: {folder} holds images that are not 28x28")
    return np.stack(images)


def select(grayscale: Path):
    """(x uint8 (10 x PER_CLASS, 16, 16), y uint8) from ``grayscale/train/<character>/``."""
    return class_folders(grayscale / "train", lambda folder: area_downsample(read_character(folder)), CHARACTERS)


def main(argv=None):
    folder_builder_main(__doc__, OUT, "simpsons-mnist's dataset/grayscale folder", select, CHARACTERS, argv)


if __name__ == "__main__":
    main()
