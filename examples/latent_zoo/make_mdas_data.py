"""Build ``data/mdas16.npz``, a latent-zoo holdout candidate, from handwritten arithmetic operator symbols.

The MDAS Symbol Dataset (Jason MacLeod, 2024, MIT licence; jdmacleod/handwritten-calculator, commit c00b70f, as
``mdas_symbol_dataset/mdas_symbols_v1.zip``) holds 6,006 28x28 grey PNGs (white strokes on black) of six
symbols: plus, obelus (division sign), slash, cross (multiplication x), dot (multiplication dot) and minus, in
``symbols_partitioned/{train,val,test}/<class folder>/``. The symbols were written by hand by two people; the
dataset's own script then added rotated and mirrored copies of each (plus, cross, dot: five copies; obelus, minus:
three; slash: one), saved under a bare ``<uuid>.png``, while a drawn original keeps its class in its name:
``<class folder>-<uuid>.png`` (167 plus, 250 obelus, 500 slash, 167 cross, 167 dot, 250 minus). Only those originals
are read: a rotated or mirrored copy is no new drawing. The zip is read with ``zipfile`` and each PNG with Pillow.

    git -C handwritten-calculator show c00b70f:mdas_symbol_dataset/mdas_symbols_v1.zip > mdas_symbols_v1.zip
    python examples/latent_zoo/make_mdas_data.py mdas_symbols_v1.zip

A class's originals are taken in the order of their file names (the uuid after the class name, whatever the
partition); an image whose pixels occur under two classes is skipped (it has no one label; the copy at c00b70f has
none), and the first PER_CLASS = 167 whose pixels repeat no kept image are kept (minus holds one repeat). Each image
is area-averaged from 28x28 to 16x16 as the MNIST-like sets are (``make_idx_data.area_downsample``). Output: ``x``
uint8 (1002, 16, 16); ``y`` uint8 (1002,) the symbol; ``classes`` the class words.
"""
from __future__ import annotations

import io
import sys
import zipfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_idx_data import area_downsample  # noqa: E402
from mat_images import builder_main, stack_classes  # noqa: E402

#: (class folder, class word), in class order
SYMBOLS = (("addition_plus", "plus"), ("division_obelus", "obelus"), ("division_slash", "slash"),
           ("multiplication_cross", "cross"), ("multiplication_dot", "dot"), ("subtraction_minus", "minus"))
PER_CLASS = 167
SIDE = 28
ROOT = "symbols_partitioned/"
OUT = Path(__file__).resolve().parent / "data" / "mdas16.npz"


def originals(archive: zipfile.ZipFile) -> dict:
    """{class folder: its drawn originals' member names (``<split>/<folder>/<folder>-<uuid>.png``) in file-name
    order}."""
    found: dict = {folder: [] for folder, _ in SYMBOLS}
    for member in archive.namelist():
        parts = member.split("/")
        if len(parts) == 4 and member.startswith(ROOT) and parts[2] in found and parts[3].startswith(parts[2] + "-") \
                and parts[3].endswith(".png"):
            found[parts[2]].append(member)
    return {folder: sorted(members, key=lambda m: m.rsplit("/", 1)[1]) for folder, members in found.items()}


def read_png(archive: zipfile.ZipFile, member: str) -> np.ndarray:
    """uint8 (28, 28): ``member`` decoded grey; another size is one line and exit 1."""
    from PIL import Image

    with Image.open(io.BytesIO(archive.read(member))) as image:
        grey = np.array(image.convert("L"))
    if grey.shape != (SIDE, SIDE):
        raise SystemExit(f"error: {member} is {grey.shape[1]}x{grey.shape[0]}; the MDAS symbols are {SIDE}x{SIDE}")
    return grey


def select(path: Path):
    """(x uint8 (6 x PER_CLASS, 16, 16), y uint8) from the MDAS zip at ``path``."""
    with zipfile.ZipFile(path) as archive:
        found = originals(archive)
        images = {folder: [read_png(archive, m) for m in members] for folder, members in found.items()}
    owners: dict = {}
    for folder, grey in images.items():
        for image in grey:
            owners.setdefault(image.tobytes(), set()).add(folder)
    parts = []
    for folder, word in SYMBOLS:
        seen, kept = set(), []
        for image in images[folder]:
            key = image.tobytes()
            if len(owners[key]) > 1 or key in seen:
                continue
            seen.add(key)
            kept.append(image)
            if len(kept) == PER_CLASS:
                break
        if len(kept) < PER_CLASS:
            raise SystemExit(f"error: {len(kept)} distinct drawn {word} images ({folder}-<uuid>.png); {PER_CLASS} are "
                             "needed")
        parts.append(area_downsample(np.stack(kept)))
    return stack_classes(parts)


def main(argv=None):
    builder_main(__doc__, OUT, "the MDAS 'mdas_symbols_v1.zip'",
                 lambda path: dict(zip(("x", "y"), select(path)), classes=np.array([w for _, w in SYMBOLS])), argv)


if __name__ == "__main__":
    main()
