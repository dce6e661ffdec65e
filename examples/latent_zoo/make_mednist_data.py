"""Build ``data/mednist16.npz``, a latent-zoo holdout candidate, from MedNIST: radiology images (CT, MRI and X-ray) of
six kinds of scan.

MedNIST (gathered from TCIA, the RSNA Bone Age Challenge and the NIH Chest X-ray dataset for a deep-learning course of
the Mayo Clinic; no licence is stated where it is committed) holds 58,954 64x64 grey JPEG images of six kinds:
abdomen CT, breast MRI, chest X-ray (CXR), chest CT, hand X-ray and head CT. It cannot be downloaded here;
apolanco3225/Medical-MNIST-Classification (commit a8942ee; no licence stated) commits them as
``resized/<Class>/<id>.jpeg``. The images are read with Pillow (nothing is unpickled).

    git -C Medical-MNIST-Classification archive a8942ee resized | tar -x
    python examples/latent_zoo/make_mednist_data.py resized

The builder reads ``<Class>/<id>.jpeg`` from the folder it is given. A file whose bytes occur under two classes is
skipped (it has no one label; the copy at a8942ee has none). A class's files in the order of their ids are slices of
one scan after another, so neighbouring ids are often the same patient: the builder takes every ``stride``-th file in
id order first (``stride`` = the class's file count // PER_CLASS, so the picks span the whole class), then the files
between them in id order, and keeps the first PER_CLASS = 300 whose decoded pixels repeat no file kept before them
(AbdomenCT and HeadCT hold byte copies: 346 and 93). Each image must be 64x64 grey and is area-averaged by 4x4 blocks
to 16x16, rounded half to even (``mat_images.centre_area_16``). Output: ``x`` uint8 (1800, 16, 16); ``y`` uint8
(1800,) the kind; ``classes`` the class words (``abdomen``, ``breast``, ``xray``, ``chest``, ``hand``, ``head``).
"""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mat_images import first_distinct_squares, folder_builder_main, stack_classes  # noqa: E402

#: (folder, class word), in class order
KINDS = (("AbdomenCT", "abdomen"), ("BreastMRI", "breast"), ("CXR", "xray"), ("ChestCT", "chest"), ("Hand", "hand"),
         ("HeadCT", "head"))
PER_CLASS = 300
SIDE = CROP = 64
OUT = Path(__file__).resolve().parent / "data" / "mednist16.npz"


def kind_files(root: Path) -> dict:
    """{folder: its ``<folder>/<id>.jpeg`` files under ``root`` in the order of id, less those whose bytes occur under
    another class}."""
    found = {folder: sorted((f for f in root.glob(f"{folder}/*.jpeg") if f.stem.isdigit()), key=lambda f: int(f.stem))
             for folder, _ in KINDS}
    digest = {f: hashlib.sha256(f.read_bytes()).hexdigest() for files in found.values() for f in files}
    owners: dict = {}
    for folder, files in found.items():
        for f in files:
            owners.setdefault(digest[f], set()).add(folder)
    shared = {h for h, folders in owners.items() if len(folders) > 1}
    return {folder: [f for f in files if digest[f] not in shared] for folder, files in found.items()}


def spread_order(files: list, count: int) -> list:
    """``files`` reordered: every ``len(files) // count``-th first (they span the list), then the others in order."""
    stride = max(1, len(files) // count)
    picks = files[::stride]
    return picks + [f for i, f in enumerate(files) if i % stride]


def read_kind(folder: str, files: list) -> np.ndarray:
    """The first PER_CLASS distinct of ``files`` (one class's, in :func:`spread_order`), uint8 (PER_CLASS, 16, 16)."""
    return first_distinct_squares(
        spread_order(files, PER_CLASS), SIDE, CROP, PER_CLASS, lambda f: f"{folder}/{f.name}", "MedNIST's images",
        lambda kept: f"{kept} distinct images in {len(files)} {folder}/<id>.jpeg files; {PER_CLASS} are needed (pass "
                     "the copy's resized folder)")


def select(root: Path):
    """(x uint8 (6 x PER_CLASS, 16, 16), y uint8) from ``root``'s ``<Class>/<id>.jpeg`` files."""
    files = kind_files(root)
    return stack_classes([read_kind(folder, files[folder]) for folder, _ in KINDS])


def main(argv=None):
    folder_builder_main(__doc__, OUT, "the folder that holds the MedNIST class folders (<Class>/<id>.jpeg)", select,
                        KINDS, argv)


if __name__ == "__main__":
    main()
