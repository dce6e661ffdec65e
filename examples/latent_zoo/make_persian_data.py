"""Build ``data/persian16.npz``, a latent-zoo holdout candidate, from the Image dataset of Persian letters of Jafar
Farganlooj: single Persian letters printed (rendered from a font), one image per letter and font.

The dataset (mehr32/Image-dataset-of-Persian-letters, commit 0b1b853; GNU General Public License v3.0 per its
``LICENSE``) commits 6,272 PNG images, 512x512 RGB, black letters on white, of the 32 letters of the Persian
alphabet in 196 fonts (most of them Persian typefaces, B Nazanin, Lotus, Mitra, Sahel, Vazir, ..., with bold,
italic, outline and shadow cuts) as ``output/<font>/<letter>_<font>.png``, with a caption file beside each. The
images are read with Pillow (nothing is unpickled).

    git -C Image-dataset-of-Persian-letters archive 0b1b853 output | tar -x
    python examples/latent_zoo/make_persian_data.py output

The builder takes eight letters, none of them among the ten handwritten ones of ``arabic`` (three of them letters
Persian adds to the Arabic alphabet: peh, che, zhe; the others sad, feh, lam, nun and he), and reads the
font folders in name order; a missing image, one other than 512x512 or one without ink (no grey pixel under
INK = 128) is one line and exit 1. Each image is cropped to a square around its ink's box (the box's longer side,
centred on the box, shifted inside the image: ``mat_images.square_crop``), and the crop in grey (Pillow's
``convert("L")``) is area-averaged to 16x16 with fractional pixel weights, rounded half to even
(``mat_images.area_16``): every letter fills its square whatever its font's size and placement. A crop whose grey
pixels occur under two letters is skipped, and so is one that repeats a kept crop of its letter (fonts that differ
only in their digits, such as the ``-FD`` cuts, draw the same letters: 45 of the 196 fonts repeat an earlier one
for these letters); the first PER_CLASS = 150 of each letter in font order are kept (1,200 in all; every letter
has 151 distinct). Output: ``x`` uint8 (1200, 16, 16); ``y`` uint8 (1200,) the letter; ``classes`` the class
words, the letters' names as the dataset spells them (``peh``, ``che``, ``zhe``, ``sad``, ``feh``, ``lam``,
``nun``, ``he``).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mat_images import first_distinct_crops, folder_builder_main, grey_square_file, square_crop  # noqa: E402

#: (the file names' letter, class word), in class order: the Persian alphabet's order
LETTERS = (("peh", "peh"), ("che", "che"), ("zhe", "zhe"), ("sad", "sad"), ("feh", "feh"), ("lam", "lam"),
           ("nun", "nun"), ("he", "he"))
PER_CLASS = 150
SIDE = 512
INK = 128
OUT = Path(__file__).resolve().parent / "data" / "persian16.npz"


def ink_box(grey: np.ndarray) -> tuple:
    """(xmin, ymin, xmax, ymax), the max exclusive, of the pixels darker than INK; None where there are none."""
    ys, xs = np.nonzero(grey < INK)
    if not len(ys):
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def ink_square(path: Path, size: int, name: str) -> np.ndarray:
    """uint8 (side, side): the grey square crop around the ink of the ``size`` x ``size`` image ``path`` (``name``
    in errors); the letter and numeral builders (persian, kazakh, greek, thai) share it."""
    grey = grey_square_file(path, size, name, "the dataset's images")
    box = ink_box(grey)
    if box is None:
        raise SystemExit(f"error: {name} has no pixel darker than {INK}")
    left, top, side = square_crop(box, size, size)
    return grey[top:top + side, left:left + side].astype(np.uint8)


def letter_crop(path: Path, name: str) -> np.ndarray:
    """uint8 (side, side): the grey square crop around the ink of the image ``path`` (``name`` in errors)."""
    if not path.is_file():
        raise SystemExit(f"error: {name} is missing (pass the copy's output/ folder)")
    return ink_square(path, SIDE, name)


def select(root: Path):
    """(x uint8 (8 x PER_CLASS, 16, 16), y uint8) from the font folders under ``root`` (the copy's ``output/``)."""
    fonts = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if not fonts:
        raise SystemExit(f"error: {root} holds no font folder (pass the copy's output/ folder)")
    items = [(label, letter_crop(root / font / f"{letter}_{font}.png", f"{font}/{letter}_{font}.png"))
             for font in fonts for label, (letter, _) in enumerate(LETTERS)]
    return first_distinct_crops(items, list(enumerate(word for _, word in LETTERS)), PER_CLASS, "letter")


def main(argv=None):
    folder_builder_main(__doc__, OUT, "the copy's output/ folder (one folder of letter images per font)", select,
                        LETTERS, argv)


if __name__ == "__main__":
    main()
