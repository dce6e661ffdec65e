"""Build ``data/mstar16.npz``, a latent-zoo holdout, from MSTAR's synthetic-aperture radar chips of ten vehicles.

MSTAR (the AFRL/DARPA Moving and Stationary Target Acquisition and Recognition public release; Ross et al. 1998,
"Standard SAR ATR evaluation experiments using the MSTAR public release data set", Proc. SPIE 3370; distributed by
AFRL's SDMS for research, no explicit licence found) holds X-band SAR chips of ten military vehicles at two
depression angles. It cannot be downloaded here; hunterlew/mstar_deeplearning_project (commit 3761624, tree
9a597c1c for ``classification/caffe/data/mstar``; no licence stated for the repository) commits them as 128x128
8-bit grey JPEGs in ``train/<k>/`` (17 degrees) and ``val/<k>/`` (15 degrees), the class k the standard ten in
alphabetical order (the repository's ``m_showboxes.m``: 2S1, BMP2, BRDM2, BTR60, BTR70, D7, T62, T72, ZIL131,
ZSU234; 428-573 chips each). They are read with Pillow (nothing is unpickled).

    git -C mstar_deeplearning_project archive HEAD classification/caffe/data/mstar | tar -x
    python examples/latent_zoo/make_mstar_data.py classification/caffe/data/mstar

The first ``PER_CLASS`` chips of each class are kept, ``train/<k>/`` then ``val/<k>/`` in file-name order (4,200).
Each is centre-cropped to 64x64 (the vehicle and its shadow; the outer clutter alone lets a nearest-neighbour
classifier tell the classes apart) and area-averaged by 4x4 blocks to 16x16, rounded half to even. In file-name
order a class's chips sweep round the vehicle, neighbours a few degrees of azimuth apart and nearly alike, so each
run of ``RUN`` consecutive chips is one ``group`` and the held-out split takes whole runs (as ``coil``'s arcs).
Output: ``x`` uint8 (4200, 16, 16); ``y`` uint8 (4200,) the vehicle; ``group`` int32 (4200,) its run
(class x 100 + run); ``classes`` the class words.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mat_images import builder_main, centre_area_16, class_folders, grey_square, reduce_files  # noqa: E402

#: (folder name, class word), in class order: the vehicle's name or code spelled as one lower-case word
VEHICLES = (("0", "gvozdika"), ("1", "bmp"), ("2", "brdm"), ("3", "btrsixty"), ("4", "btrseventy"), ("5", "bulldozer"),
            ("6", "tsixtytwo"), ("7", "tseventytwo"), ("8", "zil"), ("9", "shilka"))
PER_CLASS = 420
RUN = 10  # consecutive chips a group
CHIP, CROP = 128, 64
OUT = Path(__file__).resolve().parent / "data" / "mstar16.npz"


def reduce(image) -> np.ndarray:
    """A Pillow image as uint8 (16, 16): grey, centre-cropped to CROP x CROP, area-averaged by 4x4 blocks."""
    return centre_area_16(grey_square(image, CHIP, "a chip", "these MSTAR chips"), CROP)


def read_vehicle(folder: Path) -> np.ndarray:
    """The first PER_CLASS chips of ``<root>/train/<k>`` then ``<root>/val/<k>``, ``folder`` being ``<root>/<k>``."""
    root, k = folder.parent, folder.name
    files = [f for split in ("train", "val") for f in sorted((root / split / k).glob("*.jpeg"))]
    if len(files) < PER_CLASS:
        raise SystemExit(f"error: class {k} holds {len(files)} JPEG chips in train/ and val/; {PER_CLASS} are needed "
                         "(pass the folder that holds train/ and val/)")
    return reduce_files(files[:PER_CLASS], reduce)


def select(root: Path):
    """(x uint8 (10 x PER_CLASS, 16, 16), y uint8, group int32) from ``root/train/<k>/`` and ``root/val/<k>/``."""
    x, y = class_folders(root, read_vehicle, VEHICLES)
    group = y.astype(np.int32) * 100 + np.tile(np.arange(PER_CLASS) // RUN, len(VEHICLES)).astype(np.int32)
    return x, y, group


def build(root: Path) -> dict:
    x, y, group = select(root)
    return {"x": x, "y": y, "group": group, "classes": np.array([w for _, w in VEHICLES])}


def main(argv=None):
    builder_main(__doc__, OUT, "the MSTAR folder that holds train/ and val/", build, argv)


if __name__ == "__main__":
    main()
