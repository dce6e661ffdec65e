"""Build ``data/notmnist16.npz``, the latent zoo's sixth dataset, from notMNIST's test IDX files.

notMNIST (Yaroslav Bulatov 2011): the letters A-J printed in many fonts, white glyphs on black; printed type, not
handwriting or photographs. It cannot be downloaded here. Its 10,000-image test set, converted to MNIST's IDX
format, is committed in the public repository davidflanagan/notMNIST-to-MNIST (commit 17823f4, MIT licence, the
data posted with Bulatov's permission): ``t10k-images-idx3-ubyte.gz`` (MD5 2c87c839a4ef9b238846600eec8c35b7) and
``t10k-labels-idx1-ubyte.gz`` (MD5 7ea9118cbafd0f6e3ee2ad771d782a01), 1,000 images per class. The first 5,000 are
used (the size of the ``mnist`` set), area-downsampled to 16x16 as Fashion-MNIST's.

    python examples/latent_zoo/make_notmnist_data.py IMAGES.gz LABELS.gz [--limit 5000]

Output: ``x`` uint8 (N, 16, 16), ``y`` uint8 (N,), the class names (the letters).
"""
from __future__ import annotations

from pathlib import Path

import make_fashion_data

CLASSES = ("a", "b", "c", "d", "e", "f", "g", "h", "i", "j")
OUT = Path(__file__).resolve().parent / "data" / "notmnist16.npz"


def main(argv=None) -> int:
    return make_fashion_data.main(argv, out=OUT, classes=CLASSES, limit=5000, doc=__doc__)


if __name__ == "__main__":
    raise SystemExit(main())
