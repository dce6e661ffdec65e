"""Build ``data/omniglot16.npz``, the latent zoo's fifteenth dataset, from the two small Omniglot sets.

Omniglot (Lake, Salakhutdinov and Tenenbaum 2015, "Human-level concept learning through probabilistic program
induction"; MIT licence) holds characters of 50 alphabets, each drawn once by 20 people on Amazon Mechanical Turk,
as 105x105 black-on-white PNGs. It cannot be downloaded here. brendenlake/omniglot (commit 057f034) commits two
small background sets, ``python/images_background_small1.zip`` (git blob 9f7a8841, 1,319,022 bytes) and
``python/images_background_small2.zip`` (git blob 83525876, 1,580,917 bytes), five alphabets each; Greek and Latin
are in both, the same files. They are read with ``zipfile`` and Pillow (nothing is unpickled).

    python examples/latent_zoo/make_omniglot_data.py images_background_small1.zip images_background_small2.zip

The class is the alphabet (eight: ``ALPHABETS``), so one prompt names a script of 17-47 characters by 20 hands: a
coarse, many-moded class, where every earlier dataset's class is one digit, letter, object or person. Each
alphabet's drawings are sorted by character and file name, duplicates across the two sets dropped, and
``PER_CLASS`` of them kept, evenly spaced over that order (every character keeps some). Each is inverted (white ink
on black) and area-averaged (Pillow's box filter) from 105x105 to 16x16. Output: ``x`` uint8 (2720, 16, 16);
``y`` uint8 (2720,) the alphabet; ``classes`` the class words.
"""
from __future__ import annotations

import argparse
import io
import zipfile
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

#: (folder name in the zips, class word), in class order
ALPHABETS = (("Balinese", "balinese"), ("Early_Aramaic", "aramaic"), ("Greek", "greek"), ("Korean", "korean"),
             ("Latin", "latin"), ("Japanese_(katakana)", "katakana"), ("Sanskrit", "sanskrit"),
             ("Tagalog", "tagalog"))
PER_CLASS = 340  # Tagalog, the smallest alphabet here, has 17 characters x 20 drawings
SIZE = 16
OUT = Path(__file__).resolve().parent / "data" / "omniglot16.npz"


def drawings(zips: List[Path]) -> Dict[str, Dict[Tuple[str, str], bytes]]:
    """alphabet folder -> {(character folder, file name): PNG bytes}, over every zip (a file in two zips once)."""
    found: Dict[str, Dict[Tuple[str, str], bytes]] = {}
    for path in zips:
        with zipfile.ZipFile(path) as z:
            for name in z.namelist():
                parts = name.split("/")
                if len(parts) == 4 and parts[3].endswith(".png"):
                    found.setdefault(parts[1], {}).setdefault((parts[2], parts[3]), z.read(name))
    return found


def to_16(png: bytes) -> np.ndarray:
    """One 105x105 black-on-white drawing as a 16x16 uint8 image, white ink on black, area-averaged."""
    from PIL import Image

    ink = 255 - np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.uint8)
    return np.asarray(Image.fromarray(ink).resize((SIZE, SIZE), Image.BOX), dtype=np.uint8)


def evenly_spaced(n: int, k: int) -> np.ndarray:
    """``k`` indices spread evenly over ``range(n)``, first and last included."""
    if n < k:
        raise SystemExit(f"error: an alphabet has {n} drawings; {k} are needed")
    return np.round(np.linspace(0, n - 1, k)).astype(int)


def select(found: Dict[str, Dict[Tuple[str, str], bytes]]):
    """(x uint8 (8 x PER_CLASS, 16, 16), y uint8): each alphabet's kept drawings, in sorted order."""
    xs, ys = [], []
    for label, (folder, _) in enumerate(ALPHABETS):
        if folder not in found:
            raise SystemExit(f"error: no alphabet {folder} in the zips; pass images_background_small1.zip and "
                             "images_background_small2.zip")
        keys = sorted(found[folder])
        xs += [to_16(found[folder][keys[i]]) for i in evenly_spaced(len(keys), PER_CLASS)]
        ys.append(np.full(PER_CLASS, label, dtype=np.uint8))
    return np.stack(xs), np.concatenate(ys)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("zips", type=Path, nargs="+", help="images_background_small1.zip and ..._small2.zip")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    x, y = select(drawings(args.zips))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, x=x, y=y, classes=np.array([w for _, w in ALPHABETS]))
    print(f"{args.out}: {len(y)} images, {len(ALPHABETS)} classes, {np.bincount(y).tolist()} per class")


if __name__ == "__main__":
    main()
