"""Build ``data/kmnist16.npz``, the latent zoo's fifth dataset, from Kuzushiji-MNIST's raw IDX files.

Kuzushiji-MNIST (Clanuwat et al. 2018, "Deep Learning for Classical Japanese Literature", CC BY-SA 4.0, ROIS-DS
Center for Open Data in the Humanities) cannot be downloaded here. Its complete test files
``t10k-images-idx3-ubyte.gz`` and ``t10k-labels-idx1-ubyte.gz`` are committed, as torchvision downloads them, in
the public repository zzc18765/AiPremiumClass (``week3_codes/data/KMNIST/raw/``, commit 6154acb; MD5
5c965bf0a639b31b8f53240b1b52f4d7 and 7320c461ea6c1c855c0b718fb2a4b134, the published files'). The first 5,000 of
its 10,000 test images are used (the size of the ``mnist`` set), area-downsampled to 16x16 as Fashion-MNIST's.

    python examples/latent_zoo/make_kmnist_data.py IMAGES.gz LABELS.gz [--limit 5000]

Output: ``x`` uint8 (N, 16, 16), ``y`` uint8 (N,), the class names (romanised hiragana).
"""
from __future__ import annotations

from pathlib import Path

import make_fashion_data

CLASSES = ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo")
OUT = Path(__file__).resolve().parent / "data" / "kmnist16.npz"


def main(argv=None) -> int:
    return make_fashion_data.main(argv, out=OUT, classes=CLASSES, limit=5000, doc=__doc__)


if __name__ == "__main__":
    raise SystemExit(main())
