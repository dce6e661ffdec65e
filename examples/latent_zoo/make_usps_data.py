"""Build ``data/usps16.npz``, the latent zoo's fourteenth dataset, from a copy of the USPS handwritten digits.

The USPS database (Hull 1994, "A database for handwritten text recognition research") holds digits scanned from
envelopes by the U.S. Postal Service, normalised to 16x16 grey images. It cannot be downloaded here.
se2/cis602-01-a3 (commit 009320f) commits a copy as a MATLAB 5 file, ``USPS.mat`` (git blob 0f58dc78, 1,576,274
bytes): ``fea`` uint8 (11000, 256), each row a 16x16 image stored row by row (white digit on black), and ``gnd``
(11000, 1) in 1-10 for the digits 0-9, 1,100 images each. It is read with ``scipy.io.loadmat`` (a plain array
container, nothing is unpickled).

    python examples/latent_zoo/make_usps_data.py USPS.mat

The first 500 images of each digit in stored order are kept (5,000, as for the other digit sets). Output: ``x``
uint8 (5000, 16, 16) as stored, in rows; ``y`` uint8 (5000,) the digit.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mat_images import builder_main, read_uint8_mat  # noqa: E402

PER_CLASS = 500
OUT = Path(__file__).resolve().parent / "data" / "usps16.npz"


def read_usps(path: Path):
    """(images uint8 (11000, 16, 16) in rows, digits (11000,) 0-9) from USPS.mat."""
    data, labels = read_uint8_mat(path, "fea", "gnd", (11000, 256))
    return data.reshape(-1, 16, 16), labels - 1


def select(images: np.ndarray, digits: np.ndarray):
    """The first PER_CLASS images of each digit, in stored order, and their digits."""
    keep = np.concatenate([np.nonzero(digits == d)[0][:PER_CLASS] for d in range(10)])
    keep.sort()
    return np.ascontiguousarray(images[keep]), digits[keep].astype(np.uint8)


def main(argv=None):
    builder_main(__doc__, OUT, "USPS.mat", lambda path: dict(zip(("x", "y"), select(*read_usps(path)))), argv)


if __name__ == "__main__":
    main()
