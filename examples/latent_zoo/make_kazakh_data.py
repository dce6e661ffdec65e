"""Build ``data/kazakh16.npz``, a latent-zoo holdout candidate, from QazaqMNIST (Aroaky/QMNIST): single Cyrillic
letters drawn by hand on a graphics tablet, eight of the nine letters the Kazakh alphabet adds to the Russian one.

QazaqMNIST (Aroaky/QMNIST, commit c4637c4; Creative Commons Attribution-ShareAlike 4.0 per its ``README.md`` and
``LICENSE.txt``) holds 19,285 images of the 42 letters of the Kazakh Cyrillic alphabet, each 278x278 RGB PNG, one
folder a letter: ``dataset/<letter>/<name>.png``. The 33 Russian letters are taken from CoMNIST (GregVial/CoMNIST,
anti-aliased); the nine Kazakh letters were drawn for QazaqMNIST with its ``draw.py`` (black strokes five pixels
wide on white, 349-390 a letter), 3,339 images. Only those are read, so that every class comes from one source
and one pen: eight of the nine (``\u04d9 \u0493 \u049b \u04a3 \u04e9 \u04af \u04bb \u0456``); the ninth,
``\u04b1`` (straight u with stroke), is ``\u04af`` (straight u) with a cross-bar, which 16x16 barely keeps. The
images are read with Pillow (nothing is unpickled; ``dataset/\u043a/`` also commits a ``model.pth``, never read).

    git -C QMNIST archive c4637c4 dataset/\u04d9 dataset/\u0493 ... dataset/\u0456 | tar -x   # the eight folders
    python examples/latent_zoo/make_kazakh_data.py dataset

The builder reads each letter's PNGs in file-name order (random names, as ``draw.py`` writes them); an image other
than 278x278 is one line and exit 1. Each is converted to grey (Pillow's ``convert("L")``); the square around its
ink (pixels darker than INK = 128, ``make_persian_data.ink_box``; its longer side, centred, shifted inside:
``mat_images.square_crop``) is cut out and area-averaged to 16x16 with fractional pixel weights
(``mat_images.area_16``), rounded half to even. A crop whose pixels occur under two letters is skipped, and so is
one that repeats a kept crop of its letter; the first PER_CLASS = 200 of each letter in file order are kept (1,600
in all). Output: ``x`` uint8 (1600, 16, 16); ``y`` uint8 (1600,) the letter in the Kazakh alphabet's order;
``classes`` the class words, the letters' Latin names (``ae``, ``ghe``, ``qa``, ``eng``, ``oe``, ``ue``, ``ha``,
``i``).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_persian_data import ink_square  # noqa: E402
from mat_images import first_distinct_crops, folder_builder_main  # noqa: E402

#: (folder name, class word), in class order (the Kazakh alphabet's): schwa, ghe with stroke, qa (ka with
#: descender), eng (en with descender), barred o, straight u, shha, dotted i
LETTERS = (("\u04d9", "ae"), ("\u0493", "ghe"), ("\u049b", "qa"), ("\u04a3", "eng"), ("\u04e9", "oe"),
           ("\u04af", "ue"), ("\u04bb", "ha"), ("\u0456", "i"))
PER_CLASS = 200
SIDE = 278
OUT = Path(__file__).resolve().parent / "data" / "kazakh16.npz"


def letter_crop(path: Path, name: str) -> np.ndarray:
    """uint8 (side, side): the grey square crop around the ink of the image ``path`` (``name`` in errors)."""
    return ink_square(path, SIDE, name)


def select(root: Path):
    """(x uint8 (8 x PER_CLASS, 16, 16), y uint8) from ``root/<letter>/*.png`` (the copy's ``dataset/``)."""
    items = []
    for label, (folder, word) in enumerate(LETTERS):
        pngs = sorted(f for f in (root / folder).glob("*.png") if not f.name.startswith("."))
        if not pngs:
            raise SystemExit(f"error: {root / folder} holds no PNG ({word}; pass the copy's dataset/ folder)")
        items += [(label, letter_crop(f, f"{folder}/{f.name}")) for f in pngs]
    return first_distinct_crops(items, list(enumerate(word for _, word in LETTERS)), PER_CLASS, "letter")


def main(argv=None):
    folder_builder_main(__doc__, OUT, "the copy's dataset/ folder (one folder of images per letter)", select,
                        LETTERS, argv)


if __name__ == "__main__":
    main()
