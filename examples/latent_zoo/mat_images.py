"""Read a MATLAB 5 file of uint8 images and labels (the 16x16 COIL-20 and USPS and the 32x32 Yale B copies) with
``scipy.io.loadmat``: a plain array container, nothing is unpickled; the command line their builders share, and
the one of the builders that read a folder of images per class (Simpsons-MNIST, PBC), and the reading of the
builders that skip repeated images (FER2013, NEU, the Intel scenes); the square crop around a box and the
fractional area average to 16x16 of the builders that crop (the Hands Dataset, the Persian letters, DeepPCB)."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable, Dict

import numpy as np


def read_uint8_mat(path: Path, images_key: str, labels_key: str, shape: tuple[int, int]):
    """(the ``images_key`` array, checked to be uint8 of ``shape``; the ``labels_key`` array as ints, flattened).
    Anything else is one line and exit status 1."""
    from scipy.io import loadmat

    mat = loadmat(str(path))
    data, labels = mat[images_key], mat[labels_key].ravel().astype(int)
    if data.shape != shape or data.dtype != np.uint8:
        raise SystemExit(f"error: {path} holds {images_key} {data.shape} {data.dtype}; expected {shape} uint8")
    return data, labels


def builder_main(doc: str, out: Path, mat_help: str, build: Callable[[Path], Dict[str, np.ndarray]], argv=None):
    """The command line the MATLAB builders share: one .mat file in, ``build(path)``'s arrays to ``--out`` (npz)."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("mat", type=Path, help=mat_help)
    parser.add_argument("--out", type=Path, default=out)
    args = parser.parse_args(argv)
    write_npz(args.out, build(args.mat))


def write_npz(out: Path, arrays: Dict[str, np.ndarray]) -> None:
    """``arrays`` (``x``, ``y`` and ``classes``) to the npz ``out``, its folder made, and a line saying what it holds."""
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **arrays)
    y = arrays["y"]
    print(f"{out}: {len(y)} images, {len(np.unique(y))} classes, {np.bincount(y).tolist()} per class")


def folder_builder_main(doc: str, out: Path, folder_help: str, select: Callable[[Path], tuple],
                        folders: tuple[tuple[str, str], ...], argv=None):
    """The command line of a builder that reads one folder per class: ``select`` turns the given path into
    (x uint8, y uint8), ``folders`` holds (folder name, class word) in class order."""
    builder_main(doc, out, folder_help, lambda path: dict(zip(("x", "y"), select(path)),
                                                          classes=np.array([w for _, w in folders])), argv)


def class_folders(root: Path, read_class: Callable[[Path], np.ndarray], folders: tuple[tuple[str, str], ...]):
    """(x uint8, y uint8 the class index) from ``read_class(root / folder)`` for each folder, in class order."""
    return stack_classes([read_class(root / folder) for folder, _ in folders])


def stack_classes(parts: list):
    """(x uint8, y uint8 the class index) from each class's images (``parts``, in class order)."""
    return np.concatenate(parts), np.repeat(np.arange(len(parts), dtype=np.uint8), [len(p) for p in parts])


def first_files(folder: Path, files: list, count: int, kind: str, hint: str) -> list:
    """The first ``count`` of ``files`` (``folder``'s, in file-name order); fewer is one line saying how many
    ``kind`` files it holds and what to pass (``hint``)."""
    if len(files) < count:
        raise SystemExit(f"error: {folder} holds {len(files)} {kind} files; {count} are needed ({hint})")
    return files[:count]


def reduce_present_files(files, where, hint: str, reduce: Callable) -> np.ndarray:
    """:func:`reduce_files` once every one of ``files`` exists; else the one-line error naming the first missing
    file of ``where``, how many more are missing, and ``hint`` (what to pass instead)."""
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise SystemExit(f"error: {where} lacks {missing[0]} (and {len(missing) - 1} more); {hint}")
    return reduce_files(files, reduce)


def reduce_files(files, reduce: Callable) -> np.ndarray:
    """Each image file opened with Pillow and turned into a uint8 (16, 16) array by ``reduce``, stacked in order."""
    from PIL import Image

    out = []
    for f in files:
        with Image.open(f) as image:
            out.append(reduce(image))
    return np.stack(out)


def grey_of(image) -> np.ndarray:
    """A Pillow image as float64 grey (Pillow's ``convert("L")``, ITU-R 601 luma), (height, width)."""
    return np.asarray(image.convert("L"), dtype=np.float64)


def grey_square(image, size: int, what: str, whose: str) -> np.ndarray:
    """:func:`grey_of` an image that must be ``size`` x ``size``; otherwise one line naming ``what`` it is and what
    ``whose`` are."""
    grey = grey_of(image)
    if grey.shape != (size, size):
        raise SystemExit(f"error: {what} is {grey.shape[1]}x{grey.shape[0]}; {whose} are {size}x{size}")
    return grey


def grey_square_file(path: Path, size: int, what: str, whose: str) -> np.ndarray:
    """:func:`grey_square` of the image file ``path``, decoded with Pillow."""
    from PIL import Image

    with Image.open(path) as image:
        return grey_square(image, size, what, whose)


def centre_area_16(grey: np.ndarray, crop: int) -> np.ndarray:
    """uint8 (16, 16): the centre ``crop`` x ``crop`` of ``grey`` area-averaged by (crop / 16)-square blocks, rounded
    half to even. ``crop`` must be a multiple of 16 and at most the image's height and width."""
    h, w = grey.shape
    top, left, block = (h - crop) // 2, (w - crop) // 2, crop // 16
    area = grey[top:top + crop, left:left + crop].reshape(16, block, 16, block)
    return np.rint(area.mean(axis=(1, 3))).clip(0, 255).astype(np.uint8)


def square_crop(box: tuple, width: int, height: int) -> tuple:
    """(left, top, side) of the square crop of ``box`` (xmin, ymin, xmax, ymax) in a ``width`` x ``height``
    photograph: the box's longer side (at most the photograph's shorter side), centred on the box, shifted inside."""
    xmin, ymin, xmax, ymax = box
    side = min(max(xmax - xmin, ymax - ymin, 1), width, height)
    left = min(max(int(np.floor((xmin + xmax - side) / 2)), 0), width - side)
    top = min(max(int(np.floor((ymin + ymax - side) / 2)), 0), height - side)
    return left, top, side


def area_weights(side: int) -> np.ndarray:
    """(16, side): row i the share of each of ``side`` pixels in the i-th of 16 equal bins, each row summing to 1."""
    edges = np.arange(side + 1, dtype=np.float64)
    bins = np.linspace(0.0, side, 17)
    lo = np.maximum(edges[None, :-1], bins[:-1, None])
    hi = np.minimum(edges[None, 1:], bins[1:, None])
    return np.clip(hi - lo, 0.0, None) * (16.0 / side)


def area_16(grey: np.ndarray) -> np.ndarray:
    """uint8 (16, 16): a square float grey array area-averaged to 16x16 (fractional weights), rounded half to even."""
    w = area_weights(grey.shape[0])
    return np.rint(w @ grey @ w.T).clip(0, 255).astype(np.uint8)


def first_distinct_of_each(items: list, classes, count: int, what: str, key: Callable = None,
                           reduce: Callable = None) -> tuple:
    """The first ``count`` images of each class ``(label, word)`` of ``classes`` among ``items`` ((label, image)
    pairs, in order), without an image that occurs under two labels or repeats within its own (compared by
    ``key(image)``: its bytes by default), each reduced by ``reduce`` (:func:`centre_area_16` of the whole square by
    default); stacked by :func:`stack_classes`. ``what`` names a label in the error (numeral, label)."""
    key = key or (lambda image: image.tobytes())
    reduce = reduce or (lambda image: centre_area_16(image.astype(np.float64), image.shape[0]))
    owners: dict = {}
    for label, image in items:
        owners.setdefault(key(image), set()).add(int(label))
    parts = []
    for label, word in classes:
        seen, kept = set(), []
        for label_, image in items:
            k = key(image)
            if label_ != label or len(owners[k]) > 1 or k in seen:
                continue
            seen.add(k)
            kept.append(reduce(image))
            if len(kept) == count:
                break
        if len(kept) < count:
            raise SystemExit(f"error: {len(kept)} distinct images of {word} ({what} {label}); {count} are needed")
        parts.append(np.stack(kept))
    return stack_classes(parts)


def first_distinct_crops(items: list, classes, count: int, what: str) -> tuple:
    """:func:`first_distinct_of_each` of square crops of any size (``items``: (label, grey crop) pairs, in order):
    compared by their size and uint8 pixels, each area-averaged to 16x16 by :func:`area_16` (the builders that crop
    around a box: the Hands Dataset, the Persian letters, DeepPCB)."""
    return first_distinct_of_each(items, classes, count, what, reduce=area_16,
                                  key=lambda crop: (crop.shape, crop.astype(np.uint8).tobytes()))


def first_distinct_squares(files: list, side: int, crop: int, count: int, name_of: Callable[[Path], str], whose: str,
                           shortage: Callable[[int], str]) -> np.ndarray:
    """uint8 (count, 16, 16): :func:`first_distinct` of ``files``, each read with Pillow as a grey ``side`` x
    ``side`` square (:func:`grey_square`; another size is one line naming ``name_of(file)`` and what ``whose``
    are); fewer than ``count`` distinct is one line, ``shortage(how many were kept)``, and exit status 1."""
    kept = first_distinct(files, lambda f: grey_square_file(f, side, name_of(f), whose), crop, count)
    if len(kept) < count:
        raise SystemExit(f"error: {shortage(len(kept))}")
    return np.stack(kept)


def first_distinct(files: list, read_grey: Callable, crop: int, count: int) -> list:
    """The first ``count`` of ``files`` whose grey pixels (``read_grey(file)``, a square array) repeat no earlier kept
    file's, each reduced by :func:`centre_area_16` to its central ``crop`` square; fewer where the files run out."""
    seen, kept = set(), []
    for f in files:
        grey = read_grey(f)
        key = grey.astype(np.uint8).tobytes()
        if key not in seen:
            seen.add(key)
            kept.append(centre_area_16(grey, crop))
            if len(kept) == count:
                break
    return kept
