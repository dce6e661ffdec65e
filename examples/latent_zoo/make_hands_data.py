"""Build ``data/hands16.npz``, a latent-zoo holdout candidate, from the Hands Dataset of Soubhi Hadri: photographed
hands, one or two a photograph, each holding up zero to five fingers, indoors and outdoors.

The Hands Dataset (SubhiH/HandsDataset, commit 73228cb; Apache License 2.0 per its ``LICENSE``; made for the
HandGesturesDroneController project) commits 1,557 JPEG photographs (800x600 RGB, twelve of them 1600x1200) as
``images/<name>.jpg`` (and copies of them split in ``images/train`` and ``images/test``) with a box per hand in
``data/train_labels.csv`` (1,381 boxes) and ``data/test_labels.csv`` (349 boxes):
``filename,width,height,class,xmin,ymin,xmax,ymax``, the class ``<fingers>-hand``, 0 to 5. The photographs are read
with Pillow and the tables with the csv module (nothing is unpickled).

    git -C HandsDataset archive 73228cb data images | tar -x
    python examples/latent_zoo/make_hands_data.py .

The builder reads the rows of ``train_labels.csv`` and then of ``test_labels.csv`` (the folder it is given holds
``data/`` and ``images/``); a class other than ``0-hand`` .. ``5-hand`` or a width and height other than the
photograph's is one line and exit 1. Each box becomes a square crop: its side the box's longer side (at most the
photograph's shorter side), centred on the box and shifted inside the photograph where it would cross an edge
(``mat_images.square_crop``); the crop in grey (Pillow's ``convert("L")``) is area-averaged to 16x16 with
fractional pixel weights, rounded half to even (``mat_images.area_16``). A crop whose grey pixels occur under two
classes is skipped (the copy at 73228cb has none), and so is one that repeats a kept crop of its class; the first
PER_CLASS = 200 of each class in row order are kept (1,200 in all; the fewest, ``four``, has 210 boxes). Output:
``x`` uint8 (1200, 16, 16); ``y`` uint8 (1200,) the number of fingers; ``classes`` the class words (``fist``,
``one``, ``two``, ``three``, ``four``, ``five``).
"""
from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mat_images import first_distinct_crops, folder_builder_main, grey_of, square_crop  # noqa: E402

#: (the table's class, class word), in class order: the number of fingers held up
HANDS = (("0-hand", "fist"), ("1-hand", "one"), ("2-hand", "two"), ("3-hand", "three"), ("4-hand", "four"),
         ("5-hand", "five"))
PER_CLASS = 200
TABLES = ("data/train_labels.csv", "data/test_labels.csv")
FIELDS = ["filename", "width", "height", "class", "xmin", "ymin", "xmax", "ymax"]
OUT = Path(__file__).resolve().parent / "data" / "hands16.npz"


def read_rows(root: Path) -> list:
    """[(file name, class index, (xmin, ymin, xmax, ymax), (width, height))] of the two tables, in row order."""
    classes = {name: i for i, (name, _) in enumerate(HANDS)}
    rows = []
    for table in TABLES:
        path = root / table
        if not path.is_file():
            raise SystemExit(f"error: {root} lacks {table} (pass the folder that holds the copy's data/ and images/)")
        with open(path, newline="") as f:
            reader = csv.reader(f)
            if next(reader, None) != FIELDS:
                raise SystemExit(f"error: {path} does not start with the header {','.join(FIELDS)}")
            for n, row in enumerate(reader, start=2):
                if len(row) != len(FIELDS) or row[3] not in classes:
                    raise SystemExit(f"error: {path} line {n}: {','.join(row)!r} is not a box of 0-hand .. 5-hand")
                w, h, *box = (int(v) for v in row[1:3] + row[4:])
                rows.append((row[0], classes[row[3]], tuple(box), (w, h)))
    return rows


def crop_of(root: Path, name: str, box: tuple, size: tuple) -> np.ndarray:
    """float64 (side, side): the grey square crop of ``box`` in ``images/<name>``; a size other than the table's is
    one line and exit 1."""
    from PIL import Image

    with Image.open(root / "images" / name) as image:
        grey = grey_of(image)
    if (grey.shape[1], grey.shape[0]) != size:
        raise SystemExit(f"error: images/{name} is {grey.shape[1]}x{grey.shape[0]}; its table says "
                         f"{size[0]}x{size[1]}")
    left, top, side = square_crop(box, *size)
    return grey[top:top + side, left:left + side]


def select(root: Path):
    """(x uint8 (6 x PER_CLASS, 16, 16), y uint8) from the copy's ``data/`` tables and ``images/`` under ``root``."""
    crops = [(label, crop_of(root, name, box, size)) for name, label, box, size in read_rows(root)]
    return first_distinct_crops(crops, list(enumerate(word for _, word in HANDS)), PER_CLASS, "fingers")


def main(argv=None):
    folder_builder_main(__doc__, OUT, "the copy's root folder (holding data/train_labels.csv, data/test_labels.csv "
                        "and images/)", select, HANDS, argv)


if __name__ == "__main__":
    main()
