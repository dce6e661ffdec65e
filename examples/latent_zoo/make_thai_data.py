"""Build ``data/thai16.npz``, a latent-zoo holdout candidate, from the Thai handwriting number dataset
(kittinan/thai-handwriting-number): Thai numerals drawn by hand on a web page's canvas, eight of the ten.

The dataset (kittinan/thai-handwriting-number, commit 7a79c7b; MIT License per its ``LICENSE``) commits 3,882 PNG
images, mostly 300x300 RGBA (opaque), black strokes on white, each one numeral drawn on the canvas of the project's
collection page: ``data/raw/thai-handwriting-number.appspot.com/<n>/<id>.png``, one folder a numeral, ``1`` to
``9`` and ``10`` for zero; the same ``<id>`` names recur across the folders.
The images are read with Pillow (nothing is unpickled).

    git -C thai-handwriting-number archive 7a79c7b data/raw | tar -x
    python examples/latent_zoo/make_thai_data.py data/raw/thai-handwriting-number.appspot.com

The builder takes eight numerals, ``๐ ๑ ๒ ๓ ๕ ๖ ๗ ๙`` (zero to nine without four and eight, the pair a linear
model on 16x16 pixels confuses with each other most), and reads each numeral's PNGs in file-name order. It skips an
image named in the dataset's own list of drawings that match no numeral (DIRTY, from its ``src/thainumber.py``), one
other than SIDE x SIDE = 300x300 (182 of the 3,882), and one with no pixel darker than INK = 128 (a blank canvas).
Each kept image is converted to grey (Pillow's ``convert("L")``); the square around its ink
(``make_persian_data.ink_square``: the ink box's longer side, centred, shifted inside) is area-averaged to 16x16 with
fractional pixel weights (``mat_images.area_16``), rounded half to even. A crop whose pixels occur under two
numerals is skipped, and so is one that repeats a kept crop of its numeral; the first PER_CLASS = 150 of each
numeral are kept (1,200 in all). Output: ``x`` uint8 (1200, 16, 16); ``y`` uint8 (1200,) the numeral's rank among
the eight; ``classes`` the class words, the numerals' Thai names.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_persian_data import ink_box, ink_square  # noqa: E402
from mat_images import first_distinct_crops, folder_builder_main, grey_of  # noqa: E402

#: (folder name, class word), in class order (the numerals' values)
NUMERALS = (("10", "sun"), ("1", "nueng"), ("2", "song"), ("3", "sam"), ("5", "ha"), ("6", "hok"), ("7", "chet"),
            ("9", "kao"))
#: the drawings the dataset's src/thainumber.py removes from every numeral's folder (they match no numeral)
DIRTY = ("7c9108fe-b240-4632-a024-f1ee922962ec", "20_a2178975-acff-4afe-88b9-f6fee8694ceb",
         "de366cab-6532-42ed-9926-38351927019b", "76c2e443-c8d1-40b0-96a9-073548c9617b",
         "21_e95ad3b8-30cb-47ad-9f68-2a5bb7aeb5bb", "e95ad3b8-30cb-47ad-9f68-2a5bb7aeb5bb",
         "fb05cb2a-c27b-4476-8cff-74f5ddbc8224", "078c1b18-e672-466d-a30b-f49a81710be6",
         "67ce79dc-de9c-4956-ad7b-fabf7aa9c6fa", "729207eb-f3f7-46e2-986a-74f990296da4",
         "420994cc-5e99-42eb-84b6-2392486a33b6", "0a9af826-aaf4-45da-9d46-e1b5dc486264")
PER_CLASS = 150
SIDE = 300
OUT = Path(__file__).resolve().parent / "data" / "thai16.npz"


def usable(path: Path) -> bool:
    """Whether the PNG ``path`` is kept: not in DIRTY, SIDE x SIDE, and some pixel darker than INK."""
    if path.stem in DIRTY:
        return False
    from PIL import Image

    with Image.open(path) as image:
        return image.size == (SIDE, SIDE) and ink_box(grey_of(image)) is not None


def letter_crop(path: Path, name: str) -> np.ndarray:
    """uint8 (side, side): the grey square crop around the ink of the numeral image ``path`` (``name`` in errors;
    the name the letter builders' shared test calls)."""
    return ink_square(path, SIDE, name)


def select(root: Path):
    """(x uint8 (8 x PER_CLASS, 16, 16), y uint8) from ``root/<n>/*.png`` (the copy's
    ``data/raw/thai-handwriting-number.appspot.com/``)."""
    items = []
    for label, (folder, word) in enumerate(NUMERALS):
        pngs = [f for f in sorted((root / folder).glob("*.png")) if not f.name.startswith(".")]
        if not pngs:
            raise SystemExit(f"error: {root}/{folder} holds no PNG ({word}; pass the copy's "
                             "data/raw/thai-handwriting-number.appspot.com/)")
        items += [(label, letter_crop(f, f"{folder}/{f.name}")) for f in pngs if usable(f)]
    return first_distinct_crops(items, list(enumerate(word for _, word in NUMERALS)), PER_CLASS, "numeral")


def main(argv=None):
    folder_builder_main(__doc__, OUT, "the copy's data/raw/thai-handwriting-number.appspot.com/ folder (one folder "
                        "per numeral)", select, NUMERALS, argv)


if __name__ == "__main__":
    main()
