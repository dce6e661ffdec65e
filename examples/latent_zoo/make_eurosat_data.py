"""Build ``data/eurosat16.npz``, a latent-zoo holdout, from EuroSAT's Sentinel-2 satellite photographs of land use.

EuroSAT (Helber, Bischke, Dengel, Borth 2019, "EuroSAT: A Novel Dataset and Deep Learning Benchmark for Land Use and
Land Cover Classification", IEEE J-STARS 12(7):2217-2226; MIT licence per phelber/EuroSAT) holds 27,000 RGB JPEG
tiles of 64x64 pixels (10 m a pixel) in ten land-use classes, 2,000-3,000 each, in folders
``2750/<Class>/<Class>_<n>.jpg``. It cannot be downloaded here; FlyBulll/Baris_Cem_Bostancioglu_EuroSAT_RGB (commit
f4fc343, tree 921c8212 for ``data/raw/eurosat/2750``; no licence stated for the repository's own code) commits the
ten folders. They are read with Pillow (nothing is unpickled).

    git -C Baris_Cem_Bostancioglu_EuroSAT_RGB archive HEAD data/raw/eurosat/2750 | tar -x
    python examples/latent_zoo/make_eurosat_data.py data/raw/eurosat/2750

The tiles ``<Class>_1.jpg`` to ``<Class>_<PER_CLASS>.jpg`` of each folder are kept (5,000). Each is converted to grey
with Pillow (``convert("L")``, ITU-R 601 luma) and area-averaged by 4x4 blocks to 16x16, rounded half to even.
Output: ``x`` uint8 (5000, 16, 16); ``y`` uint8 (5000,) the land-use class; ``classes`` the class words.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mat_images import centre_area_16, class_folders, folder_builder_main, grey_square, reduce_present_files  # noqa: E402

#: (folder name, class word), in class order (the folders' alphabetical order); one word a class
LAND = (("AnnualCrop", "cropland"), ("Forest", "forest"), ("HerbaceousVegetation", "meadow"), ("Highway", "highway"),
        ("Industrial", "industrial"), ("Pasture", "pasture"), ("PermanentCrop", "orchard"),
        ("Residential", "residential"), ("River", "river"), ("SeaLake", "lake"))
PER_CLASS = 500
TILE = 64
OUT = Path(__file__).resolve().parent / "data" / "eurosat16.npz"


def reduce(image) -> np.ndarray:
    """A Pillow image as uint8 (16, 16): grey, area-averaged by 4x4 blocks."""
    return centre_area_16(grey_square(image, TILE, "a tile", "EuroSAT's"), TILE)


def read_tiles(folder: Path) -> np.ndarray:
    """``<Class>_1.jpg`` to ``<Class>_<PER_CLASS>.jpg`` of ``folder``, reduced to uint8 (PER_CLASS, 16, 16)."""
    files = [folder / f"{folder.name}_{n}.jpg" for n in range(1, PER_CLASS + 1)]
    return reduce_present_files(files, folder, "pass EuroSAT's 2750 folder", reduce)


def select(root: Path):
    """(x uint8 (10 x PER_CLASS, 16, 16), y uint8) from ``root/<Class>/``."""
    return class_folders(root, read_tiles, LAND)


def main(argv=None):
    folder_builder_main(__doc__, OUT, "EuroSAT's 2750 folder (one folder per class)", select, LAND, argv)


if __name__ == "__main__":
    main()
