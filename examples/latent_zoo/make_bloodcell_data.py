"""Build ``data/bloodcell16.npz``, a latent-zoo holdout, from the PBC dataset's photographs of single blood cells.

The PBC dataset (Acevedo, Merino, Alferez, Molina, Boldu, Rodellar 2020, "A dataset of microscopic peripheral blood
cell images for development of automatic recognition systems", Data in Brief 30:105474; Mendeley Data
doi:10.17632/snkd93bnjr.1; CC BY 4.0, attribution required: cite the paper) holds 17,092 JPEG photographs of normal
peripheral blood cells, mostly 360x363 RGB (a few 360x360 or 366x369), one cell centred in each, in eight folders
``PBC_dataset_normal_DIB/<type>/<PREFIX>_<number>.jpg``. It cannot be downloaded here;
AuralinACC/Blood-Cell-Classification (commit d2e7b75, MIT licence for its own code; tree d98b1b2e for
``PBC_dataset_normal_DIB``) commits the eight folders (plus one macOS ``.DS_169665.jpg`` index file in
``neutrophil``, which is skipped: names starting with a dot are not read). They are read with Pillow (nothing is
unpickled).

    git -C Blood-Cell-Classification archive HEAD PBC_dataset_normal_DIB | tar -x
    python examples/latent_zoo/make_bloodcell_data.py PBC_dataset_normal_DIB

The first ``PER_CLASS`` JPEGs of each folder in file-name order are kept (4,000). Each is converted to grey with
Pillow (``convert("L")``, ITU-R 601 luma), centre-cropped to 192x192 (the centred cell with a little of the red
cells around it; a whole 352x352 frame left the cell a few pixels wide at 16x16 and the frames closer together) and
area-averaged by 12x12 blocks to 16x16, rounded half to even (the exact area average, as
``make_idx_data.area_downsample`` does for 28x28). In file-name order the ``neutrophil`` rows are band
neutrophils (``BNE_``) and the ``immature`` rows (folder ``ig``, immature granulocytes) are ``IG_`` then
metamyelocytes (``MMY_``). Output: ``x`` uint8 (4000, 16, 16); ``y`` uint8 (4000,)
the cell type; ``classes`` the class words.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mat_images import (centre_area_16, class_folders, first_files, folder_builder_main, grey_of,  # noqa: E402
                        reduce_files)

#: (folder name, class word), in class order (the folders' alphabetical order)
CELLS = (("basophil", "basophil"), ("eosinophil", "eosinophil"), ("erythroblast", "erythroblast"),
         ("ig", "immature"), ("lymphocyte", "lymphocyte"), ("monocyte", "monocyte"),
         ("neutrophil", "neutrophil"), ("platelet", "platelet"))
PER_CLASS = 500
CROP = 192  # 16 x 12: a centre crop around the cell that 16x16 area-averages exactly
OUT = Path(__file__).resolve().parent / "data" / "bloodcell16.npz"


def reduce(image) -> np.ndarray:
    """A Pillow image as uint8 (16, 16): grey, centre-cropped to CROP x CROP, area-averaged by 12x12 blocks."""
    grey = grey_of(image)
    h, w = grey.shape
    if h < CROP or w < CROP:
        raise SystemExit(f"error: an image is {w}x{h}; at least {CROP}x{CROP} is needed")
    return centre_area_16(grey, CROP)


def read_cells(folder: Path) -> np.ndarray:
    """The first PER_CLASS JPEGs of ``folder`` in file-name order, reduced to uint8 (PER_CLASS, 16, 16)."""
    jpegs = sorted(f for f in folder.glob("*.jpg") if not f.name.startswith("."))  # not macOS's .DS_* files
    return reduce_files(first_files(folder, jpegs, PER_CLASS, "JPEG", "pass the PBC_dataset_normal_DIB folder"), reduce)


def select(root: Path):
    """(x uint8 (8 x PER_CLASS, 16, 16), y uint8) from ``root/<cell type>/``."""
    return class_folders(root, read_cells, CELLS)


def main(argv=None):
    folder_builder_main(__doc__, OUT, "the PBC_dataset_normal_DIB folder", select, CELLS, argv)


if __name__ == "__main__":
    main()
