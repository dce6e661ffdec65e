"""Build ``data/emoji16.npz``, a latent-zoo holdout candidate, from OpenMoji: open-source emoji drawn by designers
and students at HfG Schwaebisch Gmuend, eight of their Unicode categories (groups).

OpenMoji (hfg-gmuend/openmoji; graphics under CC BY-SA 4.0 per its README) commits one 72x72 RGBA PNG per emoji,
``color/72x72/<hexcode>.png``, and their metadata, ``data/openmoji.json`` (a list of emoji in Unicode order, each
with ``hexcode``, ``group``, ``subgroups``, ``skintone``, ...). The official repository is too large to copy here;
the copy read is the OpenMoji 15.0 release (4,147 emoji) as committed in tommyettinger/openmoji-atlas (commit 7ba0cfe,
CC BY-SA 4.0 per its LICENSE.txt): ``openmoji-72x72-color/<hexcode>.png`` and
``openmoji-assembler/assets/openmoji.json``. The images are read with Pillow (nothing is unpickled).

    git -C openmoji-atlas archive 7ba0cfe openmoji-72x72-color openmoji-assembler/assets/openmoji.json | tar -x
    python examples/latent_zoo/make_emoji_data.py openmoji-assembler/assets/openmoji.json openmoji-72x72-color

The builder takes eight groups, ``flags``, ``smileys-emotion`` (its faces: without the ``heart`` and ``emotion``
subgroups), ``people-body``, ``animals-nature``, ``food-drink``, ``travel-places``, ``objects`` and ``symbols``, and
reads each group's emoji in the metadata's order. It skips a skin-tone variant (``skintone`` set, or a hexcode
holding a modifier 1F3FB-1F3FF) and a gendered or hair-style variant of a person (a sequence holding the female or
male sign 2640 or 2642 or a hair style 1F9B0-1F9B3, or one that starts with man 1F468 or woman 1F469: near copies
of the neutral person emoji).
Each kept PNG is composited over white, converted to grey (Pillow's ``convert("L")``) and area-averaged from 72x72
to 16x16 with fractional pixel weights (``mat_images.area_16``; no crop: the emoji are drawn centred on their
canvas), rounded half to even. An image whose grey pixels occur under two groups is skipped, and so is one that
repeats a kept image of its group; the first PER_CLASS = 100 of each group are kept (800 in all; the faces have 127
usable, the fewest). Output: ``x`` uint8 (800, 16, 16); ``y`` uint8 (800,) the group's rank among the eight;
``classes`` the class words.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mat_images import first_distinct_crops, write_npz  # noqa: E402

#: (group, subgroups left out, class word), in class order
GROUPS = (("flags", (), "flag"), ("smileys-emotion", ("heart", "emotion"), "face"), ("people-body", (), "person"),
          ("animals-nature", (), "animal"), ("food-drink", (), "food"), ("travel-places", (), "place"),
          ("objects", (), "object"), ("symbols", (), "symbol"))
TONES = ("1F3FB", "1F3FC", "1F3FD", "1F3FE", "1F3FF")
#: in a sequence: the female and male signs and the four hair styles (red, curly, bald, white)
VARIANT_PARTS = ("2640", "2642", "1F9B0", "1F9B1", "1F9B2", "1F9B3")
PER_CLASS = 100
SIDE = 72
OUT = Path(__file__).resolve().parent / "data" / "emoji16.npz"


def variant(entry: dict) -> bool:
    """Whether the metadata ``entry`` is a skin-tone, gendered or hair-style variant (skipped)."""
    parts = entry["hexcode"].split("-")
    if entry.get("skintone") or any(p in TONES for p in parts):
        return True
    return len(parts) > 1 and (parts[0] in ("1F468", "1F469") or any(p in VARIANT_PARTS for p in parts))


def label_of(entry: dict):
    """The class index of the metadata ``entry``, or None where it is in none of GROUPS (or a variant)."""
    for label, (group, left_out, _) in enumerate(GROUPS):
        if entry["group"] == group and entry["subgroups"] not in left_out:
            return None if variant(entry) else label
    return None


def emoji_grey(path: Path, name: str) -> np.ndarray:
    """uint8 (SIDE, SIDE): the RGBA PNG ``path`` composited over white, in grey (``name`` in errors)."""
    from PIL import Image

    if not path.is_file():
        raise SystemExit(f"error: {name} is missing (pass the copy's 72x72 colour PNG folder)")
    with Image.open(path) as image:
        rgba = image.convert("RGBA")
    if rgba.size != (SIDE, SIDE):
        raise SystemExit(f"error: {name} is {rgba.size[0]}x{rgba.size[1]}; the emoji are {SIDE}x{SIDE}")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return np.asarray(Image.alpha_composite(white, rgba).convert("L"), dtype=np.uint8)


def select(meta: Path, pngs: Path):
    """(x uint8 (8 x PER_CLASS, 16, 16), y uint8) from the metadata ``meta`` (``openmoji.json``) and the PNG folder
    ``pngs`` (``<hexcode>.png``)."""
    try:
        entries = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise SystemExit(f"error: {meta} is not readable JSON ({e}; pass the copy's openmoji.json)") from None
    items = []
    for entry in entries:
        label = label_of(entry)
        if label is not None:
            name = f"{entry['hexcode']}.png"
            items.append((label, emoji_grey(pngs / name, name)))
    return first_distinct_crops(items, list(enumerate(word for _, _, word in GROUPS)), PER_CLASS, "group")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("meta", type=Path, help="the copy's openmoji.json (data/openmoji.json upstream)")
    parser.add_argument("pngs", type=Path, help="the copy's 72x72 colour PNG folder (color/72x72 upstream)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    x, y = select(args.meta, args.pngs)
    write_npz(args.out, dict(x=x, y=y, classes=np.array([word for _, _, word in GROUPS])))


if __name__ == "__main__":
    main()
