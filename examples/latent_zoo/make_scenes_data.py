"""Build ``data/scenes16.npz``, a latent-zoo holdout, from the Intel Image Classification scenes: ground-level photographs
of six kinds of natural and urban scene.

The Intel Image Classification data (the Intel Scene Classification Challenge of Analytics Vidhya, later offered on
Kaggle; no open licence is stated) holds about 25,000 150x150 colour photographs of six scenes: buildings, forest,
glacier, mountain, sea and street. It cannot be downloaded here; afroozsheikh/Intel-Image-Classifier (commit 268f8fc;
no licence stated) commits 10,899 of them, resized to 100x100, as ``{train,test}/<scene>/<id>.jpg`` under their
original ids. The images are read with Pillow (nothing is unpickled).

    git -C Intel-Image-Classifier archive 268f8fc train test | tar -x
    python examples/latent_zoo/make_scenes_data.py .

The builder reads ``<scene>/<id>.jpg`` from the folder it is given and from its subfolders (the copy's ``train`` and
``test``). A file whose bytes occur more than once anywhere under the folder is skipped: that copy files nine images
twice, seven of them under two scenes, and an image filed under two scenes has no one label. Each scene's files are
then read in the order of their ids, and a file whose decoded pixels equal those of a file kept before it of that
scene is skipped, until PER_CLASS = 300 are kept (1,800 in all). Each image is converted to grey with Pillow
(``convert("L")``, ITU-R 601 luma), must be 100x100, is cropped to its central 96x96 and area-averaged by 6x6 blocks
to 16x16, rounded half to even (``mat_images.centre_area_16``). Output: ``x`` uint8 (1800, 16, 16); ``y`` uint8
(1800,) the scene; ``classes`` the class words (``buildings``, ``forest``, ``glacier``, ``mountain``, ``sea``,
``street``).
"""
from __future__ import annotations

import hashlib
import sys
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mat_images import first_distinct_squares, folder_builder_main, stack_classes  # noqa: E402

#: (folder, class word), in class order
SCENES = tuple((s, s) for s in ("buildings", "forest", "glacier", "mountain", "sea", "street"))
PER_CLASS = 300
SIDE, CROP = 100, 96
OUT = Path(__file__).resolve().parent / "data" / "scenes16.npz"


def scene_files(root: Path) -> dict:
    """{scene: its ``<scene>/<id>.jpg`` files under ``root`` and ``root``'s subfolders, in the order of id, less those
    whose bytes occur more than once}; an id found twice in one scene is one line and exit status 1."""
    found = {scene: {} for scene, _ in SCENES}
    for scene in found:
        for f in sorted(root.glob(f"{scene}/*.jpg")) + sorted(root.glob(f"*/{scene}/*.jpg")):
            if not f.stem.isdigit():
                continue
            if int(f.stem) in found[scene]:
                raise SystemExit(f"error: {root} holds {scene}/{f.name} twice; pass one copy of the scene images")
            found[scene][int(f.stem)] = f
    digest = {f: hashlib.sha256(f.read_bytes()).hexdigest() for files in found.values() for f in files.values()}
    repeated = {h for h, n in Counter(digest.values()).items() if n > 1}
    return {scene: [files[i] for i in sorted(files) if digest[files[i]] not in repeated]
            for scene, files in found.items()}


def read_scene(scene: str, files: list) -> np.ndarray:
    """The first PER_CLASS distinct of ``files`` (one scene's, in the order of id), reduced to uint8 (PER_CLASS, 16,
    16); a file whose pixels repeat an earlier kept file is skipped."""
    return first_distinct_squares(
        files, SIDE, CROP, PER_CLASS, lambda f: f"{scene}/{f.name}", "the Intel scene copy's images",
        lambda kept: f"{kept} distinct images in {len(files)} {scene}/<id>.jpg files; {PER_CLASS} are needed (pass the "
                     "folder that holds the copy's train and test folders)")


def select(root: Path):
    """(x uint8 (6 x PER_CLASS, 16, 16), y uint8) from ``root``'s ``<scene>/<id>.jpg`` files."""
    files = scene_files(root)
    return stack_classes([read_scene(scene, files[scene]) for scene, _ in SCENES])


def main(argv=None):
    folder_builder_main(__doc__, OUT, "the folder that holds the scene images (<scene>/<id>.jpg), or the copy's "
                        "train and test folders", select, SCENES, argv)


if __name__ == "__main__":
    main()
