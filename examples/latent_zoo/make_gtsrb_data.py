"""Build ``data/gtsrb16.npz``, the latent zoo's tenth dataset, from ten GTSRB class folders of 32x32 PPM frames.

GTSRB (Stallkamp et al. 2012, "Man vs. computer: benchmarking machine learning algorithms for traffic sign
recognition") cannot be downloaded here. hergerr/traffic-sign-recognition (commit 80c6270, images added in
de4dbcb) commits its training frames resized to 32x32 RGB, one folder per class (``NN_name/TTTTT_FFFFF.ppm``:
track ``TTTTT``, frame ``FFFFF``; a track is about 30 frames of one physical sign, filmed as a car approached it).
Ten visually distinct classes were copied; every file's git blob hash matches that commit's (the copy's
``GIT_BLOBS.txt``). The repository has no licence file; GTSRB asks to cite the paper.

    python examples/latent_zoo/make_gtsrb_data.py DIR      # DIR/<NN_name>/*.ppm, the ten folders below

Per class, up to ``PER_CLASS`` frames evenly spaced over the name-sorted files (every track contributes).
Output: ``x`` uint8 (N, 16, 16): grey (ITU-R 601 luma of the RGB, rounded) 2x2-area-averaged from 32x32 and
rounded; ``y`` uint8 (N,); ``group`` int32 (N,): the frame's track, unique over classes (class x 100000 + track),
so that the zoo's held-out split can hold out whole tracks (:func:`latent_data.split_indices`); the class names.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

FOLDERS = ("01_speed30", "09_nopassing", "12_priority", "13_yield", "14_stop", "17_noentry", "18_caution",
           "25_roadwork", "35_ahead", "38_keepright")
CLASSES = ("thirty", "nopassing", "priority", "yield", "stop", "noentry", "caution", "roadwork", "ahead",
           "keepright")
PER_CLASS = 500
OUT = Path(__file__).resolve().parent / "data" / "gtsrb16.npz"


def read_ppm(path: Path) -> np.ndarray:
    """A binary (P6) 8-bit PPM as uint8 (H, W, 3); no other format is accepted."""
    raw = path.read_bytes()
    fields, pos = [], 0
    while len(fields) < 4:  # magic, width, height, maxval; '#' comments run to the end of the line
        while raw[pos:pos + 1].isspace():
            pos += 1
        if raw[pos:pos + 1] == b"#":
            pos = raw.index(b"\n", pos) + 1
            continue
        end = pos
        while not raw[end:end + 1].isspace():
            end += 1
        fields.append(raw[pos:end])
        pos = end
    magic, width, height, maxval = fields[0], int(fields[1]), int(fields[2]), int(fields[3])
    if magic != b"P6" or maxval != 255:
        raise ValueError(f"{path}: not an 8-bit binary PPM")
    pixels = np.frombuffer(raw[pos + 1:pos + 1 + width * height * 3], dtype=np.uint8)
    return pixels.reshape(height, width, 3)


def grey16(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma, rounded, then 2x2 area averages (32x32 -> 16x16), rounded."""
    g = np.rint(rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114)
    h, w = g.shape
    return np.rint(g.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))).clip(0, 255).astype(np.uint8)


def evenly_spaced(files: list, n: int) -> list:
    if len(files) <= n:
        return files
    return [files[int(i * len(files) / n)] for i in range(n)]


def build(folder: Path, per_class: int = PER_CLASS):
    xs, ys, groups = [], [], []
    for label, name in enumerate(FOLDERS):
        for path in evenly_spaced(sorted((folder / name).glob("*.ppm")), per_class):
            xs.append(grey16(read_ppm(path)))
            ys.append(label)
            groups.append(label * 100000 + int(path.name.split("_")[0]))
    return np.stack(xs), np.array(ys, dtype=np.uint8), np.array(groups, dtype=np.int32)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", type=Path)
    p.add_argument("--out", type=Path, default=OUT)
    a = p.parse_args(argv)
    x, y, group = build(a.folder)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(a.out, x=x, y=y, group=group, classes=np.array(CLASSES))
    print(f"{a.out}: {len(x)} images, per class {np.bincount(y, minlength=len(CLASSES)).tolist()}, "
          f"{len(set(group.tolist()))} tracks")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
