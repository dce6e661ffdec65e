"""Build ``data/tibetan16.npz``, a latent-zoo holdout candidate, from TibetanMNIST: the ten numerals of the Tibetan
script, written by hand.

TibetanMNIST (Yuan Mingqi, Cairang Xianmu, Tang Ji'an and others, Minzu University of China, 2018; CC BY-NC-SA 4.0;
bat67/TibetanMNIST, commit 7178952) holds 17,768 350x350 grey JPEGs (white strokes on black, the numeral filling the
frame), cut from about thirty scanned sheets, in ``Datasets/TibetanMnist/<digit>_<sheet>_<index>.jpg``
(1,302-2,134 a numeral). The images are read with Pillow (nothing is unpickled).

    git -C TibetanMNIST archive 7178952 Datasets/TibetanMnist | tar -x
    python examples/latent_zoo/make_tibetan_data.py Datasets/TibetanMnist

The builder reads the ``<digit>_<sheet>_<index>.jpg`` files of the folder it is given (another name, such as the
copy's stray ``6.jpg``, is ignored); each must be 350x350. An image whose decoded pixels occur under two numerals is
skipped (it has no one label; the copy at 7178952 has none). A numeral's files are taken spread over the sheets: the
first of each sheet (sheets in number order, a sheet's files in index order), then the second of each, and so on;
the first PER_CLASS = 400 whose pixels repeat no kept image are kept (``9`` holds 63 repeats, seven of them among its
first 407 files). Each is area-averaged from 350x350 to 16x16 as the MNIST-like sets are
(``make_idx_data.area_downsample``: torch's adaptive average pooling). Output: ``x`` uint8 (4000, 16, 16); ``y``
uint8 (4000,) the numeral; ``classes`` the class words, the numerals' Tibetan names (``lekor``, ``chig``, ``nyi``,
``sum``, ``zhi``, ``nga``, ``druk``, ``dun``, ``gye``, ``gu``).
"""
from __future__ import annotations

import hashlib
import re
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_idx_data import area_downsample  # noqa: E402
from mat_images import builder_main, grey_square_file, stack_classes  # noqa: E402

#: the class words, numerals 0-9 in class order
NUMERALS = ("lekor", "chig", "nyi", "sum", "zhi", "nga", "druk", "dun", "gye", "gu")
PER_CLASS = 400
SIDE = 350
NAME = re.compile(r"^(\d)_(\d+)_(\d+)\.jpg$")
OUT = Path(__file__).resolve().parent / "data" / "tibetan16.npz"


def read_grey(path: Path) -> np.ndarray:
    """float64 (350, 350): ``path`` decoded grey; another size is one line and exit 1."""
    return grey_square_file(path, SIDE, path.name, "TibetanMNIST's images")


def numeral_files(root: Path) -> list:
    """Per numeral 0-9, its ``<digit>_<sheet>_<index>.jpg`` files under ``root`` spread over the sheets: rank 0 of
    every sheet (in sheet order), then rank 1 of every sheet, ..., a file's rank being its place in its sheet's index
    order."""
    found: list = [dict() for _ in NUMERALS]
    for f in root.iterdir():
        m = NAME.match(f.name)
        if m:
            found[int(m[1])].setdefault(int(m[2]), []).append((int(m[3]), f))
    spread = []
    for sheets in found:
        ranked = [(rank, sheet, f) for sheet, files in sheets.items()
                  for rank, (_, f) in enumerate(sorted(files, key=lambda t: t[0]))]
        spread.append([f for _, _, f in sorted(ranked, key=lambda t: t[:2])])
    return spread


def select(root: Path):
    """(x uint8 (10 x PER_CLASS, 16, 16), y uint8) from the TibetanMNIST folder ``root``."""
    files = numeral_files(root)
    digest = {f: hashlib.sha256(read_grey(f).tobytes()).hexdigest() for numeral in files for f in numeral}
    owners: dict = {}
    for label, numeral in enumerate(files):
        for f in numeral:
            owners.setdefault(digest[f], set()).add(label)
    parts = []
    for label, numeral in enumerate(files):
        seen, kept = set(), []
        for f in numeral:
            key = digest[f]
            if len(owners[key]) > 1 or key in seen:
                continue
            seen.add(key)
            kept.append(f)
            if len(kept) == PER_CLASS:
                break
        if len(kept) < PER_CLASS:
            raise SystemExit(f"error: {len(kept)} distinct images of numeral {label} ({NUMERALS[label]}, "
                             f"{label}_<sheet>_<index>.jpg); {PER_CLASS} are needed")
        parts.append(area_downsample(np.stack([read_grey(f) for f in kept])))
    return stack_classes(parts)


def main(argv=None):
    builder_main(__doc__, OUT, "the TibetanMNIST folder of <digit>_<sheet>_<index>.jpg files (Datasets/TibetanMnist)",
                 lambda path: dict(zip(("x", "y"), select(path)), classes=np.array(NUMERALS)), argv)


if __name__ == "__main__":
    main()
