"""Build ``data/rsscn716.npz``, a latent-zoo holdout, from RSSCN7's aerial photographs of seven kinds of scene.

RSSCN7 (Zou, Ni, Zhang, Wang 2015, "Deep Learning Based Feature Selection for Remote Sensing Scene
Classification", IEEE Geoscience and Remote Sensing Letters 12(11):2321-2325; no licence stated: cite the paper)
holds 2,800 RGB JPEG photographs of 400x400 pixels, seven scene classes of 400 each (four sampling scales of 100),
in folders ``aGrass``, ``bField``, ``cIndustry``, ``dRiverLake``, ``eForest``, ``fResident``, ``gParking`` named
``<letter><nnn>.jpg``. It cannot be downloaded here; palewithout/RSSCN7 (commit 6d77849; no licence stated) commits
the seven folders. They are read with Pillow (nothing is unpickled).

    git -C RSSCN7 archive HEAD aGrass bField cIndustry dRiverLake eForest fResident gParking | tar -x
    python examples/latent_zoo/make_rsscn7_data.py .

All 400 photographs of each class are kept in file-name order (2,800). Each is converted to grey with Pillow
(``convert("L")``, ITU-R 601 luma) and area-averaged by 25x25 blocks to 16x16, rounded half to even. Output: ``x``
uint8 (2800, 16, 16); ``y`` uint8 (2800,) the scene class; ``classes`` the class words.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mat_images import centre_area_16, class_folders, folder_builder_main, grey_square, reduce_files  # noqa: E402

#: (folder name, class word), in class order (the folders' alphabetical order)
SCENES = (("aGrass", "grass"), ("bField", "field"), ("cIndustry", "industry"), ("dRiverLake", "river"),
          ("eForest", "forest"), ("fResident", "residence"), ("gParking", "parking"))
PER_CLASS = 400
PHOTO = 400
OUT = Path(__file__).resolve().parent / "data" / "rsscn716.npz"


def reduce(image) -> np.ndarray:
    """A Pillow image as uint8 (16, 16): grey, area-averaged by 25x25 blocks."""
    return centre_area_16(grey_square(image, PHOTO, "a photograph", "RSSCN7's"), PHOTO)


def read_scenes(folder: Path) -> np.ndarray:
    """The PER_CLASS JPEGs of ``folder`` in file-name order, reduced to uint8 (PER_CLASS, 16, 16)."""
    files = sorted(folder.glob("*.jpg"))
    if len(files) != PER_CLASS:
        raise SystemExit(f"error: {folder} holds {len(files)} JPEG files; RSSCN7 has {PER_CLASS} a class (pass the "
                         "folder that holds aGrass ... gParking)")
    return reduce_files(files, reduce)


def select(root: Path):
    """(x uint8 (7 x PER_CLASS, 16, 16), y uint8) from ``root/<folder>/``."""
    return class_folders(root, read_scenes, SCENES)


def main(argv=None):
    folder_builder_main(__doc__, OUT, "the folder that holds RSSCN7's seven class folders", select, SCENES, argv)


if __name__ == "__main__":
    main()
