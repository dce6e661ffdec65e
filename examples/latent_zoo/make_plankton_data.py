"""Build ``data/plankton16.npz``, a latent-zoo holdout, from underwater microscope images of ten kinds of plankton.

The National Data Science Bowl 2015 (Kaggle, with the Hatfield Marine Science Center, Oregon State University) gave
30,336 grey images of plankton from the In Situ Ichthyoplankton Imaging System in 121 classes, one organism (dark)
on a white background, 21 to 400 pixels a side; cite Cowen, Sponaugle, Robinson, Luo (2015), "PlanktonSet 1.0:
Plankton imagery data collected from F.G. Walton Smith in Straits of Florida from 2014-06-03 to 2014-06-06 and used
in the 2015 National Data Science Bowl", NOAA NCEI accession 0127422 (terms of use not checked here). It cannot be
downloaded here; Jaime-Rangel/Alexnet_Matlab (commit e0eff0e; no licence stated) commits the training set as
``train/<class>/<id>.jpg``, re-saved as RGB JPEGs whose three channels are equal. They are read with Pillow
(nothing is unpickled).

    git -C Alexnet_Matlab archive HEAD train | tar -x
    python examples/latent_zoo/make_plankton_data.py train

Ten classes with at least PER_CLASS images are used; the first PER_CLASS files of each in file-name order are kept
(3,900). Each image is converted to grey with Pillow (``convert("L")``, ITU-R 601 luma), padded to a square with
white (the background; nothing of the organism is cut), and area-averaged to 16x16 with Pillow's box filter.
Output: ``x`` uint8 (3900, 16, 16); ``y`` uint8 (3900,) the plankton class; ``classes`` the class words.
Two classes are nearly blank at 16x16 and so narrow by nature: ``diatom`` (faint chains) and ``artifact``.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mat_images import class_folders, first_files, folder_builder_main, reduce_files  # noqa: E402

#: (folder name, class word), in class order; one word a class
KINDS = (("diatom_chain_string", "diatom"), ("artifacts", "artifact"), ("trichodesmium_puff", "puff"),
         ("chaetognath_other", "arrowworm"), ("protist_other", "protist"), ("detritus_other", "detritus"),
         ("appendicularian_s_shape", "larvacean"), ("trichodesmium_bowtie", "bowtie"),
         ("copepod_calanoid", "copepod"), ("fecal_pellet", "pellet"))
PER_CLASS = 390
WHITE = 255
OUT = Path(__file__).resolve().parent / "data" / "plankton16.npz"


def reduce(image) -> np.ndarray:
    """A Pillow image as uint8 (16, 16): grey, padded with white to a centred square, box-filtered to 16x16."""
    from PIL import Image

    grey = image.convert("L")
    side = max(grey.size)
    square = Image.new("L", (side, side), WHITE)
    square.paste(grey, ((side - grey.size[0]) // 2, (side - grey.size[1]) // 2))
    return np.asarray(square.resize((16, 16), Image.BOX), dtype=np.uint8)


def read_kind(folder: Path) -> np.ndarray:
    """The first PER_CLASS JPEGs of ``folder`` in file-name order, reduced to uint8 (PER_CLASS, 16, 16)."""
    files = first_files(folder, sorted(folder.glob("*.jpg")), PER_CLASS, "JPEG",
                        "pass the NDSB 'train' folder that holds diatom_chain_string ... fecal_pellet")
    return reduce_files(files, reduce)


def select(root: Path):
    """(x uint8 (10 x PER_CLASS, 16, 16), y uint8) from ``root/<folder>/``."""
    return class_folders(root, read_kind, KINDS)


def main(argv=None):
    folder_builder_main(__doc__, OUT, "the NDSB 'train' folder that holds the plankton class folders", select, KINDS,
                        argv)


if __name__ == "__main__":
    main()
