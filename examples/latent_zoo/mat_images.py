"""Read a MATLAB 5 file of uint8 images and labels (the 16x16 COIL-20 and USPS and the 32x32 Yale B copies) with
``scipy.io.loadmat``: a plain array container, nothing is unpickled."""
from __future__ import annotations

from pathlib import Path

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
