"""Build ``data/coil16.npz``, the latent zoo's twelfth dataset, from a 16x16 copy of COIL-20.

COIL-20 (Nene, Nayar and Murase 1996, "Columbia Object Image Library (COIL-20)", technical report CUCS-005-96;
free for non-commercial research, cite the report) photographs twenty objects on a turntable against black, one
image every 5 degrees: 72 poses per object. It cannot be downloaded here. zhuye88/IK-iVAT (commit e5e25fe)
commits a copy reduced to 16x16 as a MATLAB 5 file, ``COIL20.mat`` (git blob 7c67ce20, 250,380 bytes): ``data``
uint8 (1440, 256), each row a 16x16 image stored column by column, and ``class`` (1440, 1) in 1-20, 72 rows per
object in pose order. It is read with ``scipy.io.loadmat`` (a plain array container, nothing is unpickled).

    python examples/latent_zoo/make_coil_data.py COIL20.mat

Ten of the twenty objects are kept, those that look least alike at 16x16 (the others are a second and third toy
car, a second box, a second block, a second bottle and five cups, pots and tins): ``OBJECTS`` below, named from
the pictures. Output: ``x`` uint8 (720, 16, 16) as stored, transposed to rows; ``y`` uint8 (720,); ``group``
int32 (720,): the 15-degree arc of the pose (three neighbouring poses), unique over classes (class x 100 + arc),
so that the zoo's held-out split holds out whole arcs (:func:`latent_data.split_indices`; six arcs, 18 images per
class: their pixel variance is 0.5-1.1 of the whole class's, where two 30-degree arcs gave 0.2-1.1); the class
names.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mat_images import builder_main, read_uint8_mat  # noqa: E402

#: (COIL-20 object number, class word), in class order
OBJECTS = ((1, "duck"), (2, "block"), (3, "car"), (4, "cat"), (5, "box"), (8, "bottle"), (10, "jar"),
           (11, "mushroom"), (13, "pig"), (18, "teacup"))
POSES = 72
ARC = 3
OUT = Path(__file__).resolve().parent / "data" / "coil16.npz"


def read_coil(path: Path):
    """(images uint8 (1440, 16, 16) in rows, object numbers (1440,)) from the 16x16 COIL20.mat."""
    data, objects = read_uint8_mat(path, "data", "class", (1440, 256))
    return data.reshape(-1, 16, 16).transpose(0, 2, 1), objects


def select(images: np.ndarray, objects: np.ndarray):
    """The kept objects' images, labels and arc groups, each object's poses in stored order."""
    xs, ys, groups = [], [], []
    for label, (number, _) in enumerate(OBJECTS):
        rows = np.nonzero(objects == number)[0]
        if len(rows) != POSES:
            raise SystemExit(f"error: object {number} has {len(rows)} images; expected {POSES}")
        xs.append(images[rows])
        ys.append(np.full(POSES, label, dtype=np.uint8))
        groups.append(label * 100 + np.arange(POSES) // ARC)
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(groups).astype(np.int32)


def arrays(path: Path) -> dict:
    """The npz's arrays: images (contiguous, in rows), labels, arc groups and the class words."""
    x, y, group = select(*read_coil(path))
    return {"x": np.ascontiguousarray(x), "y": y, "group": group, "classes": np.array([w for _, w in OBJECTS])}


def main(argv=None):
    builder_main(__doc__, OUT, "the 16x16 COIL20.mat", arrays, argv)


if __name__ == "__main__":
    main()
