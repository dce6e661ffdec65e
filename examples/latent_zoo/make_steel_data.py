"""Build ``data/steel16.npz``, a latent-zoo holdout, from the NEU surface defect database: grey photographs of six
kinds of defect on hot-rolled steel strip.

The NEU surface defect database (Kechen Song and Yunhui Yan, Northeastern University, China; cite K. Song and Y. Yan,
"A noise robust method based on completed local binary patterns for hot-rolled steel strip surface defects",
Applied Surface Science 285, 2013) holds 1,800 grey 200x200 images, 300 of each of six defects: crazing, inclusion,
patches, pitted surface, rolled-in scale and scratches. It is offered free for research from the authors' page; no
formal licence is stated there or in the copy read here. It cannot be downloaded here;
siddhartamukherjee/NEU-DET-Steel-Surface-Defect-Detection (commit 351bee2; no licence stated) commits its NEU-DET
release as ``<defect>_<n>.jpg``, n = 1 ... 300: 1,770 in ``IMAGES`` and 30 (five of each defect) moved to
``Validation_Images``, 200x200 JPEGs stored as RGB with equal channels. The images are read with Pillow (nothing is
unpickled).

    git -C NEU-DET-Steel-Surface-Defect-Detection archive 351bee2 IMAGES Validation_Images | tar -x
    python examples/latent_zoo/make_steel_data.py .

The builder reads ``<defect>_<n>.jpg`` from the folder it is given and from that folder's subfolders (so either the
one NEU-DET ``IMAGES`` folder or this copy's two folders). The database holds one exact duplicate (``patches_105``
is ``patches_101``), so each defect's files are read in the order of n and a file whose decoded pixels equal those of
a file kept before it of that defect is skipped, until PER_CLASS = 299 are kept (1,794 in all; of every defect but
``patches`` files 1-299). Each image is converted to grey with Pillow (``convert("L")``, ITU-R 601 luma; the channels
are equal, so the value is unchanged), must be 200x200, is cropped to its central 192x192 and area-averaged by 12x12
blocks to 16x16, rounded half to even (``mat_images.centre_area_16``). Output: ``x`` uint8 (1794, 16, 16); ``y`` uint8
(1794,) the defect; ``classes`` the class words (``crazing``, ``inclusion``, ``patches``, ``pitted``, ``scale``,
``scratches``).
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mat_images import first_distinct_squares, folder_builder_main, stack_classes  # noqa: E402

#: (file-name prefix, class word), in class order (the prefixes' name order)
DEFECTS = (("crazing", "crazing"), ("inclusion", "inclusion"), ("patches", "patches"),
           ("pitted_surface", "pitted"), ("rolled-in_scale", "scale"), ("scratches", "scratches"))
PER_CLASS = 299  # patches holds 299 distinct images
SIDE, CROP = 200, 192
OUT = Path(__file__).resolve().parent / "data" / "steel16.npz"
NAME = re.compile(r"(.+)_(\d+)\.jpg")


def defect_files(root: Path) -> dict:
    """{prefix: [its ``<prefix>_<n>.jpg`` files of ``root`` and ``root``'s subfolders, in the order of n]}; a name
    found twice is one line and exit status 1."""
    found = {prefix: {} for prefix, _ in DEFECTS}
    for f in sorted(root.glob("*.jpg")) + sorted(root.glob("*/*.jpg")):
        match = NAME.fullmatch(f.name)
        if match and match[1] in found:
            if int(match[2]) in found[match[1]]:
                raise SystemExit(f"error: {root} holds {f.name} twice; pass one copy of the NEU-DET images")
            found[match[1]][int(match[2])] = f
    return {prefix: [files[n] for n in sorted(files)] for prefix, files in found.items()}


def read_defect(prefix: str, files: list) -> np.ndarray:
    """The first PER_CLASS distinct of ``files`` (one defect's, in the order of n), reduced to uint8 (PER_CLASS,
    16, 16); a file whose pixels repeat an earlier kept file is skipped."""
    return first_distinct_squares(
        files, SIDE, CROP, PER_CLASS, lambda f: f.name, "the NEU surface defect database's images",
        lambda kept: f"{kept} distinct images in {len(files)} {prefix}_<n>.jpg files; {PER_CLASS} are needed (pass "
                     "the folder that holds the NEU-DET images, or their IMAGES and Validation_Images)")


def select(root: Path):
    """(x uint8 (6 x PER_CLASS, 16, 16), y uint8) from ``root``'s ``<defect>_<n>.jpg`` files."""
    files = defect_files(root)
    return stack_classes([read_defect(prefix, files[prefix]) for prefix, _ in DEFECTS])


def main(argv=None):
    folder_builder_main(__doc__, OUT, "the folder that holds the NEU-DET images (<defect>_<n>.jpg), or its "
                        "subfolders", select, DEFECTS, argv)


if __name__ == "__main__":
    main()
