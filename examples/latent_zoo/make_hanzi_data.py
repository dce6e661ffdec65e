"""Build ``data/hanzi16.npz``, a latent-zoo holdout, from Chinese MNIST's handwritten Chinese numerals.

Chinese MNIST (Gabriel Preda 2020, Kaggle dataset "gpreda/chinese-mnist", from a collection made at Newcastle
University; cite the Kaggle dataset; its terms of use and provenance not checked here) holds 15,000 grey 64x64 JPEGs
of 15 Chinese numeral characters, each written ten times by each of 100 people, thin light strokes on black:
``data/data/input_<suite>_<sample>_<code>.jpg``, the suite the writer (1-100), the sample the repetition (1-10), the
code the character (1-15). It cannot be downloaded here; CoderSerio/chinese-mnist (commit 1080f20, its only commit;
no licence stated) commits all 15,000 files as ``dataset/data/data/`` with the dataset's ``chinese_mnist.csv``. The
images are read with Pillow (nothing is unpickled).

    git -C chinese-mnist archive 1080f20396fc73689510a578115a1225c39cfef1 dataset/data/data | tar -x
    python examples/latent_zoo/make_hanzi_data.py dataset/data/data

The ten numerals zero to nine are used: codes 1-10 (``chinese_mnist.csv`` maps code 1 to value 0, 零, through code 10
to value 9, 九; codes 11-15, ten to a hundred million, are left out), each named by its pinyin. Of each, the files of
writers 1-40, samples 1-10 are kept in that order (writer by writer; PER_CLASS = 400 a class, 4,000; no two kept
files of a code have equal pixels). Each image is converted to grey with Pillow (``convert("L")``; the files are
one-channel, so the value is unchanged), must be 64x64 (nothing is padded or cropped: some kept characters touch the
frame's edge), is area-averaged by 4x4 blocks to 16x16 and then stretched linearly so that its brightest 16x16 pixel
is 255, rounded half to even. The stretch is there because the strokes are one to two pixels wide: the plain 4x4
average of a kept file peaks at 57 on average, where the images of every other zoo set peak at 146-255 on average.
Output: ``x`` uint8 (4000, 16, 16); ``y`` uint8 (4000,) the numeral; ``classes`` the class words. Each class's
within-class variance is 0.55-1.24 of the whole set's: ``yi`` (one stroke) 0.55, ``qi`` 0.75, ``ba`` and ``jiu``
0.82, ``wu`` and ``liu`` 0.89, ``er`` 0.98, ``ling`` 1.00, ``san`` 1.12, ``si`` 1.24.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mat_images import folder_builder_main, grey_square, reduce_present_files  # noqa: E402

#: (code in the file names, class word), in class order: the numerals 0-9 by their pinyin
NUMERALS = ((1, "ling"), (2, "yi"), (3, "er"), (4, "san"), (5, "si"), (6, "wu"), (7, "liu"), (8, "qi"), (9, "ba"),
            (10, "jiu"))
WRITERS = 40  # suites 1..WRITERS
SAMPLES = 10  # each writer's ten repetitions of a character
PER_CLASS = WRITERS * SAMPLES
SIDE = 64
OUT = Path(__file__).resolve().parent / "data" / "hanzi16.npz"


def reduce(image) -> np.ndarray:
    """A Pillow image as uint8 (16, 16): grey, area-averaged by 4x4 blocks, stretched so its maximum is 255."""
    grey = grey_square(image, SIDE, "an image", "Chinese MNIST's images")
    area = grey.reshape(16, SIDE // 16, 16, SIDE // 16).mean(axis=(1, 3))
    peak = area.max()
    if peak == 0:
        raise SystemExit("error: an image is black throughout; Chinese MNIST's images hold a character")
    return np.rint(area * (255.0 / peak)).clip(0, 255).astype(np.uint8)


def read_numeral(root: Path, code: int) -> np.ndarray:
    """``input_<writer>_<sample>_<code>.jpg`` of ``root`` for writers 1..WRITERS, samples 1..SAMPLES (writer by
    writer), reduced to uint8 (PER_CLASS, 16, 16)."""
    files = [root / f"input_{w}_{s}_{code}.jpg" for w in range(1, WRITERS + 1) for s in range(1, SAMPLES + 1)]
    return reduce_present_files(files, root, "pass Chinese MNIST's data/data folder", reduce)


def select(root: Path):
    """(x uint8 (10 x PER_CLASS, 16, 16), y uint8) from ``root/input_*_*_<code>.jpg``."""
    parts = [read_numeral(root, code) for code, _ in NUMERALS]
    return np.concatenate(parts), np.repeat(np.arange(len(parts), dtype=np.uint8), PER_CLASS)


def main(argv=None):
    folder_builder_main(__doc__, OUT, "Chinese MNIST's data/data folder (input_<suite>_<sample>_<code>.jpg)",
                        select, NUMERALS, argv)


if __name__ == "__main__":
    main()
