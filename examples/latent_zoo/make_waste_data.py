"""Build ``data/waste16.npz``, a latent-zoo holdout candidate, from TrashNet of Gary Thung and Mindy Yang:
photographs of single pieces of waste, sorted by the material they are recycled as.

TrashNet (garythung/trashnet; MIT License per its ``LICENSE``; G. Thung and M. Yang 2016, "Classification of Trash
for Recyclability Status", Stanford CS229) holds 2,527 photographs, each of one object (a box, a bottle, a can, a
sheet, a wrapper) on a white poster board in sunlight or room light, resized by its authors to 512x384 (portrait:
384 wide, 512 high) RGB JPEG, in six folders ``dataset-resized/<material>/<material><n>.jpg``: cardboard 403, glass
501, metal 410, paper 594, plastic 482, trash 137. The trashnet repository commits them as one 40 MB zip, which the
copy here cannot hold; congduytran12/Trash-Classification- (commit 00212f2) commits the six folders unzipped, the
same counts and names. The images are read with Pillow (nothing is unpickled).

    git -C Trash-Classification- archive 00212f2 dataset-resized | tar -x
    python examples/latent_zoo/make_waste_data.py dataset-resized

The builder reads each folder's JPEGs in file-name order (``glass1``, ``glass10``, ``glass100``, ...); an image
other than 384x512 is one line and exit 1. Each is converted to grey (Pillow's ``convert("L")``), centre-cropped to
its upper-and-lower-trimmed 384x384 square and area-averaged by 24x24 blocks to 16x16, rounded half to even
(``mat_images.centre_area_16``). An image whose grey pixels occur under two materials is skipped (three such
images: the same photograph filed twice), and so is one that repeats a kept image of its material (none); the
first PER_CLASS = 130 of each material in file order are kept (780 in all; ``trash``, the smallest folder, has 137,
the fewest of any class, so fewer than the 150-200 of the other holdouts). Output: ``x`` uint8 (780, 16, 16); ``y``
uint8 (780,) the material in folder order; ``classes`` the class words (``cardboard``, ``glass``, ``metal``,
``paper``, ``plastic``, ``trash``).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mat_images import centre_area_16, first_distinct_of_each, folder_builder_main, grey_of  # noqa: E402

#: (folder name, class word), in class order (the folders' alphabetical order)
MATERIALS = (("cardboard", "cardboard"), ("glass", "glass"), ("metal", "metal"), ("paper", "paper"),
             ("plastic", "plastic"), ("trash", "trash"))
PER_CLASS = 130
WIDTH, HEIGHT = 384, 512
CROP = 384  # 16 x 24: the centred square of the portrait photograph
OUT = Path(__file__).resolve().parent / "data" / "waste16.npz"


def read_grey(path: Path, name: str) -> np.ndarray:
    """uint8 (HEIGHT, WIDTH): the photograph ``path`` in grey (``name`` in errors)."""
    from PIL import Image

    with Image.open(path) as image:
        grey = grey_of(image)
    if grey.shape != (HEIGHT, WIDTH):
        raise SystemExit(f"error: {name} is {grey.shape[1]}x{grey.shape[0]}; the photographs are {WIDTH}x{HEIGHT}")
    return grey.astype(np.uint8)


def select(root: Path):
    """(x uint8 (6 x PER_CLASS, 16, 16), y uint8) from ``root/<material>/*.jpg`` (the copy's dataset-resized/)."""
    items = []
    for label, (folder, _) in enumerate(MATERIALS):
        jpegs = sorted(f for f in (root / folder).glob("*.jpg") if not f.name.startswith("."))
        if not jpegs:
            raise SystemExit(f"error: {root / folder} holds no JPEG (pass the copy's dataset-resized/ folder)")
        items += [(label, read_grey(f, f"{folder}/{f.name}")) for f in jpegs]
    return first_distinct_of_each(items, list(enumerate(word for _, word in MATERIALS)), PER_CLASS, "material",
                                  key=lambda grey: grey.tobytes(),
                                  reduce=lambda grey: centre_area_16(grey.astype(np.float64), CROP))


def main(argv=None):
    folder_builder_main(__doc__, OUT, "the copy's dataset-resized/ folder (one folder of photographs per material)",
                        select, MATERIALS, argv)


if __name__ == "__main__":
    main()
