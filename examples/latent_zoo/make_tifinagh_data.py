"""Build ``data/tifinagh16.npz``, a latent-zoo holdout, from handwritten letters of the Tifinagh (Amazigh) script.

Tifinagh-MNIST (Issam Seddik, github.com/iseddik/Tifinagh-MNIST, "Tifinagh-MNIST: Amazigh Database for Online
Handwritten Character Recognition"; no paper reference given, cite the repository; no licence file or terms
stated) commits 82,500 28x28 PNGs of the 33 letters of the IRCAM Tifinagh alphabet, white strokes on black, saved
as RGB with three equal channels: ``Dataset/train_data/<n>/<id>_<k>.png`` (2,000 a letter) and
``Dataset/test_data/<n>/`` (500 a letter), folders numbered 0-32. The repository names no letter for a number; the
numbering is the Latin-alphabetical order of the letters' transliterations (a, b, ch, d, e, f, g, h, i, j, k, ...),
as its labelled sample figure (``image.png``) and the glyphs in each folder show. It cannot be downloaded here;
commit af0085c of that repository is used. The images are read with Pillow (nothing is unpickled).

    git -C Tifinagh-MNIST archive HEAD Dataset/train_data | tar -x
    python examples/latent_zoo/make_tifinagh_data.py Dataset/train_data

The first ten folders (0-9) are used, each named by the letter's Unicode name: ``ya`` (a small circle), ``yab``,
``yash``, ``yad``, ``yey``, ``yaf``, ``yag``, ``yah``, ``yi``, ``yazh``; the first PER_CLASS files of each in
file-name order are kept (4,000). Each image is converted to grey with Pillow (``convert("L")``; the channels are
equal, so the value is unchanged), must be 28x28 (square already: nothing is padded or cropped), and is
area-averaged to 16x16 by ``make_idx_data.area_downsample``, the reduction of the zoo's other 28x28 sets (MNIST,
KMNIST, Kannada-MNIST ...). Output: ``x`` uint8 (4000, 16, 16); ``y`` uint8 (4000,) the letter; ``classes`` the
class words. ``ya`` and ``yey`` (two small circles) are small marks, so narrow at 16x16.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_idx_data import area_downsample  # noqa: E402
from mat_images import class_folders, first_files, folder_builder_main, grey_square, reduce_files  # noqa: E402

#: (folder name, class word), in class order; the Unicode name of each letter
LETTERS = (("0", "ya"), ("1", "yab"), ("2", "yash"), ("3", "yad"), ("4", "yey"), ("5", "yaf"), ("6", "yag"),
           ("7", "yah"), ("8", "yi"), ("9", "yazh"))
PER_CLASS = 400
SIDE = 28
OUT = Path(__file__).resolve().parent / "data" / "tifinagh16.npz"


def read_letter(folder: Path) -> np.ndarray:
    """The first PER_CLASS PNGs of ``folder`` in file-name order, area-averaged to uint8 (PER_CLASS, 16, 16)."""
    files = first_files(folder, sorted(folder.glob("*.png")), PER_CLASS, "PNG",
                        "pass the Tifinagh-MNIST 'Dataset/train_data' folder that holds the folders 0 ... 9")
    grey = reduce_files(files, lambda image: grey_square(image, SIDE, f"an image in {folder}",
                                                                      "Tifinagh-MNIST's images"))
    return area_downsample(grey)


def select(root: Path):
    """(x uint8 (10 x PER_CLASS, 16, 16), y uint8) from ``root/<folder>/``."""
    return class_folders(root, read_letter, LETTERS)


def main(argv=None):
    folder_builder_main(__doc__, OUT, "the Tifinagh-MNIST 'Dataset/train_data' folder that holds the letter folders",
                        select, LETTERS, argv)


if __name__ == "__main__":
    main()
