"""Build ``data/greek16.npz``, a latent-zoo holdout candidate, from GreekNet (TUEML/GreekNet): single Greek letters
drawn by hand in the project's own labelling program, eight of the 24.

GreekNet (TUEML/GreekNet, commit c62694e; GNU General Public License v3.0 per its ``LICENSE``) commits 3,648 PNG
images, 224x224 grey, black strokes on white, of the 24 letters of the Greek alphabet, drawn one at a time on the
canvas of its ``gui/main.py`` (a round pen, saved as a 224x224 crop of the canvas): ``Dataset/train/<Letter>/
<n>_<Letter>.png`` (128 a letter) and ``Dataset/test/<Letter>/`` (24 a letter); ``Dataset/sample_sizes/`` repeats
subsets of ``train/`` and is not read. Capitals and small letters are mixed as the writers chose (``Gamma`` is
mostly a small gamma, ``Eta`` a small eta). The images are read with Pillow (nothing is unpickled).

    git -C GreekNet archive c62694e Dataset/train Dataset/test | tar -x
    python examples/latent_zoo/make_greek_data.py Dataset

The builder takes eight letters whose shapes differ the most at 16x16 (``epsilon``, ``iota``, ``kappa``,
``lambda``, ``mu``, ``omicron``, ``tau``, ``phi``) and reads each letter's ``train/`` PNGs, then its ``test/`` PNGs,
in file-name order; an image other than 224x224 is one line and exit 1. Each is converted to grey (Pillow's
``convert("L")``); the square around its ink (pixels darker than INK = 128, ``make_persian_data.ink_box``; its
longer side, centred, shifted inside: ``mat_images.square_crop``) is cut out and area-averaged to 16x16 with
fractional pixel weights (``mat_images.area_16``), rounded half to even. A crop whose pixels occur under two letters
is skipped, and so is one that repeats a kept crop of its letter; the first PER_CLASS = 150 of each letter are kept
(1,200 in all). Output: ``x`` uint8 (1200, 16, 16); ``y`` uint8 (1200,) the letter in the Greek alphabet's order;
``classes`` the class words, the letters' English names.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_persian_data import ink_square  # noqa: E402
from mat_images import first_distinct_crops, folder_builder_main  # noqa: E402

#: (folder name, class word), in class order (the Greek alphabet's)
LETTERS = (("Epsilon", "epsilon"), ("Iota", "iota"), ("Kappa", "kappa"), ("Lambda", "lambda"), ("My", "mu"),
           ("Omikron", "omicron"), ("Tau", "tau"), ("Phi", "phi"))
#: the dataset's two folders, read in this order
PARTS = ("train", "test")
PER_CLASS = 150
SIDE = 224
OUT = Path(__file__).resolve().parent / "data" / "greek16.npz"


def letter_crop(path: Path, name: str) -> np.ndarray:
    """uint8 (side, side): the grey square crop around the ink of the image ``path`` (``name`` in errors)."""
    return ink_square(path, SIDE, name)


def select(root: Path):
    """(x uint8 (8 x PER_CLASS, 16, 16), y uint8) from ``root/<part>/<Letter>/*.png`` (the copy's ``Dataset/``)."""
    items = []
    for label, (folder, word) in enumerate(LETTERS):
        pngs = [f for part in PARTS for f in sorted((root / part / folder).glob("*.png")) if not f.name.startswith(".")]
        if not pngs:
            raise SystemExit(f"error: {root}/{{train,test}}/{folder} hold no PNG ({word}; pass the copy's Dataset/)")
        items += [(label, letter_crop(f, f"{f.parent.parent.name}/{folder}/{f.name}")) for f in pngs]
    return first_distinct_crops(items, list(enumerate(word for _, word in LETTERS)), PER_CLASS, "letter")


def main(argv=None):
    folder_builder_main(__doc__, OUT, "the copy's Dataset/ folder (train/ and test/, one folder per letter)", select,
                        LETTERS, argv)


if __name__ == "__main__":
    main()
