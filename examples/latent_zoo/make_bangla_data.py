"""Build ``data/bangla16.npz``, a latent-zoo holdout candidate, from CMATERdb 3.1.1: the ten numerals of the Bangla
(Bengali) script, written by hand.

CMATERdb 3.1.1 (the handwritten Bangla numeral database of the CMATER laboratory, Jadavpur University, Kolkata; Das
et al., Applied Soft Computing 12, 2012; Apache License 2.0 per its Google Code project) holds 6,000 numerals, 600 a
numeral, dark strokes on white. It cannot be downloaded here; prabhuomkar/CMATERdb (commit e65568b; Apache License
2.0) commits it resized to 32x32 RGB (the three channels equal) as ``datasets/bangla-numerals/training-images.npz``
(5,000 images, 500 a numeral: ``images`` uint8 (5000, 32, 32, 3), ``labels`` int64, the numeral 0-9, a numeral's
rows together) and ``testing-images.npz`` (1,000 more). The npz is read with ``numpy.load(allow_pickle=False)``
(nothing is unpickled).

    git -C CMATERdb archive e65568b datasets/bangla-numerals/training-images.npz | tar -x
    python examples/latent_zoo/make_bangla_data.py datasets/bangla-numerals/training-images.npz

The builder reads the training file only; its images must be uint8 (n, 32, 32, 3) with equal channels (the grey is
the first channel). An image whose pixels occur under two numerals is skipped (it has no one label; the copy at
e65568b has none). A numeral's rows are read in file order and the first PER_CLASS = 400 whose pixels repeat no kept
image are kept (the copy's training file holds 8 rows that repeat an earlier row of their numeral, five of them
before the 400th kept of ``3``, ``5``, ``7`` and ``8``). Each is area-averaged by 2x2 blocks to 16x16, rounded half
to even (``mat_images.centre_area_16``). Output: ``x`` uint8 (4000, 16, 16); ``y`` uint8 (4000,) the numeral;
``classes`` the class words, the numerals' Bangla names (``shunno``, ``ek``, ``dui``, ``tin``, ``char``, ``panch``,
``chhoy``, ``shat``, ``aat``, ``noy``).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mat_images import builder_main, first_distinct_of_each  # noqa: E402

#: the class words, numerals 0-9 in class order
NUMERALS = ("shunno", "ek", "dui", "tin", "char", "panch", "chhoy", "shat", "aat", "noy")
PER_CLASS = 400
SIDE = 32
OUT = Path(__file__).resolve().parent / "data" / "bangla16.npz"


def read_npz(path: Path):
    """(images uint8 (n, 32, 32) grey, labels int (n,)) from the copy's ``training-images.npz``; anything else is
    one line and exit 1."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            images, labels = npz["images"], npz["labels"]
    except (KeyError, ValueError, OSError) as e:
        raise SystemExit(f"error: {path} is not the copy's training-images.npz ({e})") from None
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (SIDE, SIDE, 3):
        raise SystemExit(f"error: {path} holds images {images.shape} {images.dtype}; expected (n, {SIDE}, {SIDE}, 3) "
                         "uint8")
    if labels.shape != images.shape[:1] or labels.min() < 0 or labels.max() >= len(NUMERALS):
        raise SystemExit(f"error: {path} holds labels {labels.shape} {labels.min()}-{labels.max()}; expected one "
                         f"numeral 0-9 an image")
    if not ((images[..., 0] == images[..., 1]) & (images[..., 1] == images[..., 2])).all():
        raise SystemExit(f"error: {path}: the images' three channels differ; the copy's are grey")
    return images[..., 0], labels.astype(int)


def select(path: Path):
    """(x uint8 (10 x PER_CLASS, 16, 16), y uint8) from the copy's ``training-images.npz`` at ``path``."""
    images, labels = read_npz(path)
    return first_distinct_of_each(list(zip(labels, images)), list(enumerate(NUMERALS)), PER_CLASS, "numeral")


def main(argv=None):
    builder_main(__doc__, OUT, "the copy's datasets/bangla-numerals/training-images.npz",
                 lambda path: dict(zip(("x", "y"), select(path)), classes=np.array(NUMERALS)), argv)


if __name__ == "__main__":
    main()
