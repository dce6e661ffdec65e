"""Build ``data/arabic16.npz``, a latent-zoo holdout candidate, from handwritten letters of the Arabic alphabet.

The Arabic Handwritten Characters Dataset (AHCD; Ahmed El-Sawy, Mohamed Loey and Hazem EL-Bakry, "Arabic handwritten
characters recognition using convolutional neural network", WSEAS Transactions on Computer Research 5, 2017; no
licence is stated) holds 16,800 32x32 grey letters, ``alef`` to ``yeh`` (28 classes, labels 1-28 in alphabetical
order), written ten times each by 60 people: 13,440 for training (480 a letter) and 3,360 for testing (120 a letter,
other writers). It cannot be downloaded here; mloey/Arabic-Handwritten-Characters-Dataset (commit 13dd650) commits it
as ``Arabic Handwritten Characters Dataset CSV.zip``: ``csvTrainImages 13440x1024.csv`` and ``csvTestImages
3360x1024.csv`` (one image a row, 1,024 integers 0-255, white strokes on black, stored column by column: a row
reshaped to 32x32 is the letter transposed) and ``csvTrainLabel 13440x1.csv`` / ``csvTestLabel 3360x1.csv``. The
zip is read with ``zipfile`` and the CSV text with numpy (nothing is unpickled).

    git -C Arabic-Handwritten-Characters-Dataset archive 13dd650 "Arabic Handwritten Characters Dataset CSV.zip" | tar -x
    python examples/latent_zoo/make_arabic_data.py "Arabic Handwritten Characters Dataset CSV.zip"

Ten letters of distinct skeleton are used (``LETTERS``: AHCD label, class word): alef, beh, jeem, dal, seen, tah, ain,
kaf, meem, waw. A letter's rows are taken in the order training file then test file, each in row order (the training
file holds a letter in 60 runs of eight rows; no writer is named); an image whose pixels occur under two of the 28
letters is skipped (it has no one label; the copy at 13dd650 has none), and the first PER_CLASS = 400 whose pixels
repeat no kept image are kept (all from the training writers). Each image is transposed upright and area-averaged by
2x2 blocks to 16x16, rounded half to even (``mat_images.centre_area_16``). Output: ``x`` uint8 (4000, 16, 16); ``y``
uint8 (4000,) the letter; ``classes`` the class words.
"""
from __future__ import annotations

import io
import sys
import zipfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mat_images import builder_main, first_distinct_of_each  # noqa: E402

#: (AHCD label, class word), in class order
LETTERS = ((1, "alef"), (2, "beh"), (5, "jeem"), (8, "dal"), (12, "seen"), (16, "tah"), (18, "ain"), (22, "kaf"),
           (24, "meem"), (27, "waw"))
PER_CLASS = 400
SIDE = 32
#: (images member, labels member, rows) in reading order
PARTS = (("csvTrainImages 13440x1024.csv", "csvTrainLabel 13440x1.csv", 13440),
         ("csvTestImages 3360x1024.csv", "csvTestLabel 3360x1.csv", 3360))
OUT = Path(__file__).resolve().parent / "data" / "arabic16.npz"


def read_csv(archive: zipfile.ZipFile, member: str, shape: tuple) -> np.ndarray:
    """``member`` of ``archive`` as integers of ``shape`` (each 0-255); anything else is one line and exit 1."""
    try:
        text = archive.read(member).decode("ascii")
    except KeyError:
        raise SystemExit(f"error: the zip lacks {member!r} (pass the AHCD 'Arabic Handwritten Characters Dataset "
                         "CSV.zip')") from None
    values = np.loadtxt(io.StringIO(text), delimiter=",", dtype=np.int64, ndmin=2)
    if shape[1] == 1:
        values = values.reshape(-1, 1)
    if values.shape != shape or values.min() < 0 or values.max() > 255:
        raise SystemExit(f"error: {member} holds {values.shape} values {values.min()}-{values.max()}; expected "
                         f"{shape} in 0-255")
    return values


def read_all(path: Path):
    """(images uint8 (n, 32, 32) upright, labels int (n,)): the training file's rows, then the test file's."""
    images, labels = [], []
    with zipfile.ZipFile(path) as archive:
        for image_member, label_member, rows in PARTS:
            flat = read_csv(archive, image_member, (rows, SIDE * SIDE))
            images.append(flat.astype(np.uint8).reshape(rows, SIDE, SIDE).transpose(0, 2, 1))
            labels.append(read_csv(archive, label_member, (rows, 1)).ravel())
    return np.concatenate(images), np.concatenate(labels)


def select(path: Path):
    """(x uint8 (10 x PER_CLASS, 16, 16), y uint8) from the AHCD CSV zip at ``path``."""
    images, labels = read_all(path)
    return first_distinct_of_each(list(zip(labels, images)), LETTERS, PER_CLASS, "label")


def main(argv=None):
    builder_main(__doc__, OUT, "the AHCD 'Arabic Handwritten Characters Dataset CSV.zip'",
                 lambda path: dict(zip(("x", "y"), select(path)), classes=np.array([w for _, w in LETTERS])), argv)


if __name__ == "__main__":
    main()
