"""Build ``data/pcb16.npz``, a latent-zoo holdout candidate, from DeepPCB of Sanli Tang et al.: defects on printed
circuit boards, in binarized scans of the boards' copper.

DeepPCB (tangsanli5201/DeepPCB, commit 08e98c4; MIT License per its ``LICENSE``) commits 1,500 pairs of 640x640
grey JPEG images, a defect-free template and an aligned tested image, cropped from line-scan CCD images of boards
(about 48 pixels a millimetre) and binarized (copper black, board white), in eleven groups, as
``PCBData/group<g>/<g>/<stem>_test.jpg`` and ``<stem>_temp.jpg``, with the tested image's defects in
``PCBData/group<g>/<g>_not/<stem>.txt``, one a line: ``x1 y1 x2 y2 type``, the box's corners and the type 1 open, 2
short, 3 mousebite, 4 spur, 5 spurious copper, 6 pin hole (3 to 12 defects an image, most of them drawn in by hand
after the real ones, per its README). The images are read with Pillow and the text files as text (nothing is
unpickled).

    git -C DeepPCB archive 08e98c4 PCBData | tar -x
    python examples/latent_zoo/make_pcb_data.py PCBData

The builder reads the annotation files in path order (the groups in name order, the files in name order within
a group) and their lines in order; a line other than five integers, a type outside 1..6, a missing tested image
or one other than 640x640 is one line and exit 1. Each defect's box on the tested image becomes a square crop: its
side the box's longer side, centred on the box and shifted inside the image where it would cross an edge
(``mat_images.square_crop``); the crop in grey (Pillow's ``convert("L")``) is area-averaged to 16x16 with
fractional pixel weights, rounded half to even (``mat_images.area_16``). A crop whose grey pixels occur under two
types is skipped, and so is one that repeats a kept crop of its type; the first PER_CLASS = 200 of each type in
file order are kept (1,200 in all). Output: ``x`` uint8 (1200, 16, 16); ``y`` uint8 (1200,) the type less one;
``classes`` the class words (``open``, ``short``, ``mousebite``, ``spur``, ``copper``, ``pinhole``).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mat_images import first_distinct_crops, folder_builder_main, grey_square_file, square_crop  # noqa: E402

#: (the annotation's type, class word), in class order
DEFECTS = ((1, "open"), (2, "short"), (3, "mousebite"), (4, "spur"), (5, "copper"), (6, "pinhole"))
PER_CLASS = 200
SIDE = 640
OUT = Path(__file__).resolve().parent / "data" / "pcb16.npz"


def read_boxes(path: Path) -> list:
    """[(class index, (xmin, ymin, xmax, ymax))] of the annotation file ``path``, in line order."""
    boxes = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 5 or not all(f.lstrip("-").isdigit() for f in fields) or not 1 <= int(fields[4]) <= 6:
            raise SystemExit(f"error: {path} line {n}: {line!r} is not 'x1 y1 x2 y2 type' with a type 1..6")
        x1, y1, x2, y2, kind = (int(f) for f in fields)
        boxes.append((kind - 1, (x1, y1, x2, y2)))
    return boxes


def defect_crops(note: Path) -> list:
    """[(class index, uint8 grey square crop)] of the defects that ``note`` (``<g>_not/<stem>.txt``) lists on its
    tested image (``<g>/<stem>_test.jpg``)."""
    image = note.parent.parent / note.parent.name[:-len("_not")] / f"{note.stem}_test.jpg"
    name = f"{image.parent.parent.name}/{image.parent.name}/{image.name}"
    if not image.is_file():
        raise SystemExit(f"error: {name} is missing (pass the copy's PCBData/ folder)")
    grey = grey_square_file(image, SIDE, name, "the tested images")
    crops = []
    for label, box in read_boxes(note):
        left, top, side = square_crop(box, SIDE, SIDE)
        crops.append((label, grey[top:top + side, left:left + side].astype(np.uint8)))
    return crops


def select(root: Path):
    """(x uint8 (6 x PER_CLASS, 16, 16), y uint8) from the annotation files under ``root`` (the copy's PCBData/)."""
    notes = sorted(root.glob("group*/*_not/*.txt")) if root.is_dir() else []
    if not notes:
        raise SystemExit(f"error: {root} holds no group*/*_not/*.txt annotation file (pass the copy's PCBData/ folder)")
    items = [item for note in notes for item in defect_crops(note)]
    return first_distinct_crops(items, list(enumerate(word for _, word in DEFECTS)), PER_CLASS, "type")


def main(argv=None):
    folder_builder_main(__doc__, OUT, "the copy's PCBData/ folder (one folder of images and one of annotations per "
                        "group)", select, DEFECTS, argv)


if __name__ == "__main__":
    main()
