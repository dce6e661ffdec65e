"""Build ``data/fer16.npz``, a latent-zoo holdout, from FER2013's 48x48 grey faces in seven facial expressions.

FER2013 (Pierre-Luc Carrier and Aaron Courville; the Kaggle "Challenges in Representation Learning: Facial
Expression Recognition" contest; cite Goodfellow et al. 2013, "Challenges in Representation Learning: A report on
three machine learning contests", ICONIP 2013, LNCS 8228, and Neural Networks 64, 2015) holds 35,887 grey 48x48
faces found by web image search, roughly centred and registered, each labelled with one of seven expressions
(terms of use not checked here). It cannot be downloaded here; RecepTahirGunlu/Duygu-Tanima (no licence stated)
commits the common image-folder copy of it (Kaggle "msambare/fer2013") as ``train/<expression>/Training_<id>.jpg``
(28,709) and ``test/<expression>/...``, one-channel JPEGs. Its first commit, 8041c66, holds the images as they came;
later commits re-save them filtered and add augmented copies of ``disgust``, so that commit is read. The
images are read with Pillow (nothing is unpickled).

    git -C Duygu-Tanima archive 8041c66ab014c185bfe459e8e32349fc7b15685a train | tar -x
    python examples/latent_zoo/make_fer_data.py train

All seven classes are used (the folders in name order). FER2013 holds exact duplicates (``disgust`` most: 436 files,
381 distinct images), so each folder's JPEGs are read in file-name order and a file whose decoded pixels equal those
of a file kept before it in that folder is skipped, until PER_CLASS are kept (2,660). One image is kept in both
``fear`` and ``sad``: duplicates across classes are not removed. Each image is converted to grey with Pillow
(``convert("L")``; the files are one-channel, so the value is unchanged), must be 48x48 (square already: nothing is
padded or cropped), and is area-averaged by 3x3 blocks to 16x16, rounded half to even (``mat_images.centre_area_16``
with the whole 48x48 frame). Output: ``x`` uint8 (2660, 16, 16); ``y`` uint8 (2660,) the expression; ``classes`` the
class words. At 16x16 the expressions differ little: every class's within-class variance is 0.90-1.04 of the whole
set's.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mat_images import class_folders, first_distinct_squares, folder_builder_main  # noqa: E402

#: (folder name, class word), in class order (the folders' name order)
EXPRESSIONS = (("angry", "angry"), ("disgust", "disgust"), ("fear", "fear"), ("happy", "happy"),
               ("neutral", "neutral"), ("sad", "sad"), ("surprise", "surprise"))
PER_CLASS = 380  # disgust holds 381 distinct images
SIDE = 48
OUT = Path(__file__).resolve().parent / "data" / "fer16.npz"


def read_expression(folder: Path) -> np.ndarray:
    """The first PER_CLASS distinct JPEGs of ``folder`` in file-name order, area-averaged to uint8 (PER_CLASS, 16,
    16); a file whose pixels repeat an earlier kept file of the folder is skipped."""
    files = sorted(folder.glob("*.jpg"))
    return first_distinct_squares(
        files, SIDE, SIDE, PER_CLASS, lambda f: f"an image in {folder}", "FER2013's images",
        lambda kept: f"{folder} holds {kept} distinct images in {len(files)} JPEG files; {PER_CLASS} are needed (pass "
                     "the FER2013 'train' folder that holds angry ... surprise)")


def select(root: Path):
    """(x uint8 (7 x PER_CLASS, 16, 16), y uint8) from ``root/<expression>/``."""
    return class_folders(root, read_expression, EXPRESSIONS)


def main(argv=None):
    folder_builder_main(__doc__, OUT, "the FER2013 'train' folder that holds the expression folders", select,
                        EXPRESSIONS, argv)


if __name__ == "__main__":
    main()
