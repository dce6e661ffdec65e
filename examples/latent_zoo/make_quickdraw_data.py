"""Build ``data/quickdraw16.npz``, the latent zoo's seventh dataset: six classes of Google's Quick, Draw!
(hand-drawn sketches, CC BY 4.0), from the per-class numpy bitmaps committed in the public repository
sukumr/Doodle-Classifier (``data/<class>.npy``, added in commit d0ec14e7cb72 and unchanged since; each the first
3,000 drawings of Google's ``numpy_bitmap/<class>.npy``, shape (3000, 1, 784), white strokes on black).

    python examples/latent_zoo/make_quickdraw_data.py DIR   # DIR holds apple.npy ... fish.npy

Each file's git blob hash must equal the one in that commit's tree (so its bytes are the repository's); the files
are read with ``allow_pickle=False``. The first ``PER_CLASS`` drawings of each class are kept (the size of the
other datasets), area-downsampled from 28x28 to 16x16 as ``make_idx_data.area_downsample`` does.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_idx_data import DATA, save_npz  # noqa: E402

#: class name -> git blob SHA-1 of ``data/<name>.npy`` at sukumr/Doodle-Classifier d0ec14e7cb72
BLOBS = {
    "apple": "372c7139050c73e92aede8ca51a29c4547c030dd",
    "bicycle": "0f2c5aae3a9f465b2ab698bb176334c7622a8e1f",
    "cat": "292b353f8c6b473335e23647a52308c7c7b256dd",
    "diamond": "b3dd0ee3583a811d8476e86684f0e5ce0e02b062",
    "eye": "4ce19c9bb55c1b11bd0ed10d6915eb05510a556d",
    "fish": "a8b906250e0317684a23469e91e6deef6b5e85b5",
}
PER_CLASS = 850


def git_blob_sha1(raw: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(raw) + raw).hexdigest()


def read_class(path: Path, expected_blob: str) -> np.ndarray:
    """The drawings of one class file, (N, 28, 28) uint8, after checking its bytes against the repository's."""
    raw = path.read_bytes()
    if git_blob_sha1(raw) != expected_blob:
        raise SystemExit(f"{path}: its git blob hash is not sukumr/Doodle-Classifier's ({expected_blob}): "
                         "copy the file from that repository's commit d0ec14e7cb72")
    x = np.load(path, allow_pickle=False)
    return x.reshape(-1, 28, 28)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", type=Path, help="the folder holding apple.npy ... fish.npy")
    a = p.parse_args(argv)
    classes = tuple(BLOBS)
    images = [read_class(a.folder / f"{name}.npy", BLOBS[name])[:PER_CLASS] for name in classes]
    x = np.concatenate(images)
    y = np.repeat(np.arange(len(classes), dtype=np.uint8), [len(i) for i in images])
    save_npz(DATA, "quickdraw", x, y, classes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
