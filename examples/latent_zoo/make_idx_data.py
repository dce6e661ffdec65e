"""Build the latent zoo's IDX-format datasets (``data/<dataset>16.npz``) from their raw 28x28 IDX files.

    python examples/latent_zoo/make_idx_data.py DATASET IMAGES.gz LABELS [--limit N]

None of the six can be downloaded here; each source is a public repository that commits the files:

* ``fashion`` (the third dataset): Fashion-MNIST (Xiao, Rasul and Vollgraf 2017, MIT licence,
  github.com/zalandoresearch/fashion-mnist). The images used are the first 4,443 of its 10,000 test images, the
  part a truncated ``t10k-images-idx3-ubyte.gz`` (1,966,080 bytes) committed in fredguth/reax
  (``data/FashionMNIST/raw/``) decompresses to; the labels are its full ``t10k-labels-idx1-ubyte``. A complete
  file gives the same first 4,443 images (pass ``--limit 4443``).
* ``kmnist`` (the fifth): Kuzushiji-MNIST (Clanuwat et al. 2018, "Deep Learning for Classical Japanese
  Literature", CC BY-SA 4.0, ROIS-DS Center for Open Data in the Humanities), cursive hiragana. Its complete test
  files ``t10k-images-idx3-ubyte.gz`` and ``t10k-labels-idx1-ubyte.gz`` are committed, as torchvision downloads
  them, in zzc18765/AiPremiumClass (``week3_codes/data/KMNIST/raw/``, commit 6154acb; MD5
  5c965bf0a639b31b8f53240b1b52f4d7 and 7320c461ea6c1c855c0b718fb2a4b134, the published files'). The first 5,000
  of its 10,000 test images are used (the size of the ``mnist`` set).
* ``notmnist`` (the sixth): notMNIST (Yaroslav Bulatov 2011), the letters A-J printed in many fonts. Its 10,000
  test images, converted to IDX, are committed in davidflanagan/notMNIST-to-MNIST (commit 17823f4, MIT licence,
  the data posted with Bulatov's permission): ``t10k-images-idx3-ubyte.gz`` (MD5
  2c87c839a4ef9b238846600eec8c35b7) and ``t10k-labels-idx1-ubyte.gz`` (MD5 7ea9118cbafd0f6e3ee2ad771d782a01),
  1,000 per class. The first 5,000 are used.
* ``kannada`` (the eighth): Kannada-MNIST (Prabhu 2019, "Kannada-MNIST: A new handwritten digits dataset for the
  Kannada language", arXiv:1908.01242), the numerals 0-9 of the Kannada script written by 65 native writers. Its
  10,000 test images are committed by the author in vinayprabhu/Kannada_MNIST (commit f8390ec,
  ``data/output_tensors/MNIST_format/``): ``X_kannada_MNIST_test-idx3-ubyte.gz`` (git blob 1dc875a6, sha256
  4628f3fa...) and ``y_kannada_MNIST_test-idx1-ubyte.gz`` (git blob 46809f48, sha256 645db590...), classes in
  turn (0, 1, ..., 9, 0, ...). The first 5,000 are used, 500 per class. The repository has no licence file and
  asks to cite the paper.
* ``digmnist`` (the ninth): Dig-MNIST, the same paper's second set: the same ten Kannada numerals written by
  volunteers who were mostly not native writers of the script, scanned separately (thicker, noisier strokes; the
  author calls it out-of-domain for Kannada-MNIST). Committed in the same repository and commit:
  ``X_dig_MNIST-idx3-ubyte.gz`` (git blob 5ae535fc, sha256 abda37c5...) and ``y_dig_MNIST-idx1-ubyte.gz`` (git
  blob 6ea1e2fc, sha256 321fa413...), 10,240 images cycling through the classes. The first 5,000 are used.
* ``oracle`` (the eleventh): Oracle-MNIST (Wang and Deng 2024, "A dataset of oracle characters for benchmarking
  machine learning algorithms", Scientific Data; Apache-2.0), scans of 3,000-year-old Chinese oracle-bone
  characters, noisy and worn, in ten classes. Its test files are committed by the authors in wm-bupt/oracle-mnist
  (commit b6cb263, ``data/oracle/``): ``t10k-images-idx3-ubyte.gz`` (sha256 ca5e631c...) and
  ``t10k-labels-idx1-ubyte.gz`` (sha256 e10758de...), 3,000 images, 300 per class; all are used (the training
  files are not in the repository). The class names are the paper's (big, sun, moon, cattle, next, field, not,
  arrow, time, wood), as recalled here: only the prompt words depend on them.

Output: ``x`` uint8 (N, 16, 16) area-downsampled from 28x28 and rounded, ``y`` uint8 (N,), the class names.
"""
from __future__ import annotations

import argparse
import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parent / "data"
#: per dataset: the class names and the default --limit (the first N images)
DATASETS = {
    "fashion": (("t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
                 "ankle boot"), None),
    "kmnist": (("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"), 5000),
    "notmnist": (("a", "b", "c", "d", "e", "f", "g", "h", "i", "j"), 5000),
    "kannada": (("sonne", "ondu", "eradu", "mooru", "nalku", "aidu", "aaru", "elu", "entu", "ombattu"), 5000),
    "digmnist": (("sonne", "ondu", "eradu", "mooru", "nalku", "aidu", "aaru", "elu", "entu", "ombattu"), 5000),
    "oracle": (("big", "sun", "moon", "cattle", "next", "field", "not", "arrow", "time", "wood"), None),
}


def read_images(path: Path) -> np.ndarray:
    """Every complete 28x28 image in an IDX file, gzip-compressed (possibly truncated) or not."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(raw)  # tolerates a truncated stream
    magic, n, rows, cols = struct.unpack(">IIII", raw[:16])
    assert magic == 2051 and (rows, cols) == (28, 28), "not an IDX image file of 28x28 images"
    complete = min(n, (len(raw) - 16) // (rows * cols))
    return np.frombuffer(raw[16:16 + complete * 784], dtype=np.uint8).reshape(complete, 28, 28)


def read_labels(path: Path) -> np.ndarray:
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    magic, n = struct.unpack(">II", raw[:8])
    assert magic == 2049, "not an IDX label file"
    return np.frombuffer(raw[8:8 + n], dtype=np.uint8)


def area_downsample(x: np.ndarray, size: int = 16) -> np.ndarray:
    """28x28 -> 16x16 by the same area averaging as torch's adaptive_avg_pool2d (the MNIST data's)."""
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(x.astype(np.float32)).unsqueeze(1)
    return F.adaptive_avg_pool2d(t, size).squeeze(1).round().clamp(0, 255).to(torch.uint8).numpy()


def save_npz(folder: Path, dataset: str, x: np.ndarray, y: np.ndarray, classes) -> Path:
    """``folder/<dataset>16.npz``: the 28x28 images ``x`` area-downsampled to 16x16, their labels and class names."""
    out = folder / f"{dataset}16.npz"
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, x=area_downsample(x), y=y, classes=np.array(classes))
    print(f"{out}: {len(x)} images, per class {np.bincount(y, minlength=len(classes)).tolist()}")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", choices=sorted(DATASETS))
    p.add_argument("images", type=Path)
    p.add_argument("labels", type=Path)
    p.add_argument("--limit", type=int, help="keep the first N images (default: the dataset's)")
    a = p.parse_args(argv)
    classes, default_limit = DATASETS[a.dataset]
    limit = default_limit if a.limit is None else a.limit
    x = read_images(a.images)[:limit]
    save_npz(DATA, a.dataset, x, read_labels(a.labels)[: len(x)], classes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
