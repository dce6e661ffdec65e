"""The CIFAR batch reader of the latent zoo's fourth dataset: labels and complete images from a truncated pickle,
read without unpickling."""
import importlib.util
import pickle
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "latent_zoo" / "make_cifar_data.py"


def _load(name: str):
    """The latent zoo's script ``name``.py as a module."""
    spec = importlib.util.spec_from_file_location(name, SCRIPT.parent / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def reader():
    return _load("make_cifar_data")


def _batch(rng) -> tuple[bytes, np.ndarray, list[int]]:
    data = rng.integers(0, 256, size=(10000, 3072), dtype=np.uint8)
    labels = [int(v) for v in rng.integers(0, 10, size=10000)]
    raw = pickle.dumps({"batch_label": "test", "labels": labels, "data": data.tobytes(), "filenames": []},
                       protocol=3)
    return raw, data, labels


def test_truncated_batch_gives_every_label_and_the_complete_images(reader):
    raw, data, labels = _batch(np.random.default_rng(0))
    cut = raw[: len(raw) // 7]  # about 1,400 images' bytes survive
    images = reader.read_images(cut)
    assert 1000 < len(images) < 10000
    assert np.array_equal(images.reshape(len(images), -1), data[: len(images)])
    assert reader.read_labels(cut).tolist() == labels


def test_grey_is_luma_then_2x2_area_average(reader):
    x = np.zeros((1, 3, 32, 32), dtype=np.uint8)
    x[0, 0, :2, :2] = 200  # red in the top-left 2x2 block
    x[0, 1, :2, 0] = 100   # green in half of it
    grey = reader.grey_16(x)
    assert grey.shape == (1, 16, 16)
    assert grey[0, 0, 0] == round(0.299 * 200 + 0.587 * 100 / 2)
    assert grey[0, 1:, :].max() == 0 and grey[0, :, 1:].max() == 0


def test_a_file_without_the_array_is_refused(reader):
    with pytest.raises(ValueError, match="30,720,000-byte"):
        reader.read_images(pickle.dumps({"labels": [0]}, protocol=3))


def _idx_files(tmp_path, rng, n=40):
    import gzip
    import struct
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n).astype(np.uint8)
    image_gz = gzip.compress(struct.pack(">IIII", 2051, n, 28, 28) + images.tobytes())
    (tmp_path / "images.gz").write_bytes(image_gz[: len(image_gz) * 3 // 4])  # truncated, as the fashion copy is
    (tmp_path / "labels.gz").write_bytes(gzip.compress(struct.pack(">II", 2049, n) + labels.tobytes()))
    return images, labels


def test_the_idx_readers_give_the_complete_images_of_a_truncated_file_and_every_label(tmp_path):
    idx = _load("make_idx_data")
    images, labels = _idx_files(tmp_path, np.random.default_rng(1))
    got = idx.read_images(tmp_path / "images.gz")
    assert 10 < len(got) < 40 and np.array_equal(got, images[: len(got)])
    assert np.array_equal(idx.read_labels(tmp_path / "labels.gz"), labels)


@pytest.mark.parametrize("dataset, names", [
    ("kmnist", ["o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"]),
    ("notmnist", list("abcdefghij")),
    ("kannada", ["sonne", "ondu", "eradu", "mooru", "nalku", "aidu", "aaru", "elu", "entu", "ombattu"]),
    ("digmnist", ["sonne", "ondu", "eradu", "mooru", "nalku", "aidu", "aaru", "elu", "entu", "ombattu"]),
])
def test_the_idx_builder_writes_16x16_area_averages_with_their_labels(tmp_path, monkeypatch, dataset, names):
    idx = _load("make_idx_data")
    images, labels = _idx_files(tmp_path, np.random.default_rng(2))
    monkeypatch.setattr(idx, "DATA", tmp_path)
    assert idx.main([dataset, str(tmp_path / "images.gz"), str(tmp_path / "labels.gz"), "--limit", "8"]) == 0
    with np.load(tmp_path / f"{dataset}16.npz", allow_pickle=False) as d:
        x, y, classes = d["x"], d["y"], d["classes"]
    assert x.shape == (8, 16, 16) and x.dtype == np.uint8 and np.array_equal(y, labels[:8])
    assert list(classes) == names
    flat = np.full((1, 28, 28), 77, dtype=np.uint8)  # a constant image stays constant under area averaging
    assert (idx.area_downsample(flat) == 77).all()


def _sketch_files(folder: Path, names, rng) -> dict:
    """Quick, Draw!-shaped class files (N, 1, 784) uint8 and their git blob hashes."""
    qd = _load("make_quickdraw_data")
    blobs = {}
    for name in names:
        np.save(folder / f"{name}.npy", rng.integers(0, 256, size=(6, 1, 784), dtype=np.uint8))
        blobs[name] = qd.git_blob_sha1((folder / f"{name}.npy").read_bytes())
    return blobs


def test_the_quickdraw_builder_keeps_the_first_drawings_of_each_class_in_order(tmp_path, monkeypatch):
    qd = _load("make_quickdraw_data")
    blobs = _sketch_files(tmp_path, ("apple", "bicycle", "cat"), np.random.default_rng(3))
    monkeypatch.setattr(qd, "BLOBS", blobs)
    monkeypatch.setattr(qd, "DATA", tmp_path)
    monkeypatch.setattr(qd, "PER_CLASS", 4)
    assert qd.main([str(tmp_path)]) == 0
    with np.load(tmp_path / "quickdraw16.npz", allow_pickle=False) as d:
        x, y, classes = d["x"], d["y"], d["classes"]
    assert x.shape == (12, 16, 16) and list(y) == [0] * 4 + [1] * 4 + [2] * 4
    assert list(classes) == ["apple", "bicycle", "cat"]
    first_cat = np.load(tmp_path / "cat.npy").reshape(-1, 28, 28)[:1]
    assert np.array_equal(x[8:9], _load("make_idx_data").area_downsample(first_cat))


def test_the_quickdraw_builder_refuses_a_file_that_is_not_the_repository_s(tmp_path, monkeypatch):
    qd = _load("make_quickdraw_data")
    blobs = _sketch_files(tmp_path, ("apple",), np.random.default_rng(4))
    monkeypatch.setattr(qd, "BLOBS", {"apple": "0" * 40})
    monkeypatch.setattr(qd, "DATA", tmp_path)
    with pytest.raises(SystemExit, match="git blob hash"):
        qd.main([str(tmp_path)])
    assert blobs["apple"] != "0" * 40 and not (tmp_path / "quickdraw16.npz").exists()


def _ppm(path: Path, rgb: np.ndarray, comment: bool = False) -> None:
    header = b"P6\n" + (b"# a comment\n" if comment else b"") + f"{rgb.shape[1]} {rgb.shape[0]}\n255\n".encode()
    path.write_bytes(header + rgb.astype(np.uint8).tobytes())


def test_the_gtsrb_reader_reads_binary_ppm_and_refuses_other_formats(tmp_path):
    gt = _load("make_gtsrb_data")
    rgb = np.random.default_rng(3).integers(0, 256, size=(32, 32, 3))
    _ppm(tmp_path / "a.ppm", rgb, comment=True)
    assert np.array_equal(gt.read_ppm(tmp_path / "a.ppm"), rgb)
    (tmp_path / "b.ppm").write_bytes(b"P3\n2 2\n255\n" + b"0 " * 12)
    with pytest.raises(ValueError, match="not an 8-bit binary PPM"):
        gt.read_ppm(tmp_path / "b.ppm")
    flat = np.zeros((32, 32, 3)) + [200, 100, 50]  # luma 0.299*200 + 0.587*100 + 0.114*50 = 124.2 -> 124
    assert (gt.grey16(flat) == 124).all() and gt.grey16(flat).shape == (16, 16)


def test_the_gtsrb_builder_keeps_each_frame_s_track_as_its_group(tmp_path, monkeypatch):
    gt = _load("make_gtsrb_data")
    monkeypatch.setattr(gt, "PER_CLASS", 3)
    rng = np.random.default_rng(4)
    for name in gt.FOLDERS:
        (tmp_path / name).mkdir()
        for track, frame in ((0, 0), (0, 1), (7, 0), (7, 1), (9, 0)):
            _ppm(tmp_path / name / f"{track:05d}_{frame:05d}.ppm", rng.integers(0, 256, size=(32, 32, 3)))
    x, y, group = gt.build(tmp_path, per_class=3)
    assert x.shape == (30, 16, 16) and np.bincount(y).tolist() == [3] * 10
    # evenly spaced over the five sorted files: indices 0, 1, 3 -> tracks 0, 0, 7
    assert group[:3].tolist() == [0, 0, 7] and group[3:6].tolist() == [100000, 100000, 100007]


def test_a_grouped_split_holds_out_whole_groups_and_enough_of_each_class():
    import sys

    import torch

    sys.path.insert(0, str(SCRIPT.parent))
    data = _load("latent_data")
    y = torch.tensor([c for c in range(3) for _ in range(40)])
    group = torch.tensor([c * 100 + i // 4 for c in range(3) for i in range(40)])  # ten groups of 4 per class
    train, held = data._grouped_split(y, group, per_class=6)
    assert set(group[train].tolist()).isdisjoint(group[held].tolist())
    assert sorted(torch.cat([train, held]).tolist()) == list(range(120))
    assert [int((y[held] == c).sum()) for c in range(3)] == [8, 8, 8]  # two whole groups reach 6


def test_the_coil_builder_keeps_ten_objects_in_rows_with_their_pose_arcs(tmp_path):
    from scipy.io import savemat

    coil = _load("make_coil_data")
    images = np.zeros((1440, 16, 16), dtype=np.uint8)
    images[:, 0, 1] = 7  # one pixel of the first row: a stored (column-major) image puts it in the first column
    for k in range(1440):
        images[k, 15, 15] = k % 72  # the pose
    objects = np.repeat(np.arange(1, 21), 72)
    images[:, 15, 14] = objects
    columns = images.transpose(0, 2, 1).reshape(1440, 256)  # MATLAB stores each image column by column
    savemat(tmp_path / "COIL20.mat", {"data": columns, "class": objects[:, None].astype(np.uint8)})
    x, y, group = coil.select(*coil.read_coil(tmp_path / "COIL20.mat"))
    assert x.shape == (720, 16, 16) and np.bincount(y).tolist() == [72] * 10
    assert (x[:, 0, 1] == 7).all() and (x[:, 1, 0] == 0).all()  # rows again
    assert x[y == 9][:, 15, 14].tolist() == [coil.OBJECTS[9][0]] * 72  # the tenth class is its object
    assert x[y == 0][:, 15, 15].tolist() == list(range(72))  # poses in stored order
    assert group[:6].tolist() == [0, 0, 0, 1, 1, 1] and group[-1] == 9 * 100 + 23  # 15-degree arcs per class
    savemat(tmp_path / "bad.mat", {"data": columns[:, :100], "class": objects[:, None]})
    with pytest.raises(SystemExit, match="expected \\(1440, 256\\) uint8"):
        coil.read_coil(tmp_path / "bad.mat")


def test_the_yaleb_builder_keeps_the_first_ten_people_as_2x2_area_averages_in_rows(tmp_path):
    from scipy.io import savemat

    yale = _load("make_yaleb_data")
    labels = np.repeat(np.arange(1, 39), 64)[:2414]
    images = np.zeros((2414, 32, 32), dtype=np.uint8)
    images[:, 0, 2:4] = 200  # one 2x2 block of the first rows: (0, 1) at 16x16 once in rows, halved
    images[:, 1, 2:4] = 0
    images[:, 31, 31] = labels  # the person, in the last pixel
    columns = images.transpose(0, 2, 1).reshape(2414, 1024).T  # MATLAB: one column per image, column by column
    savemat(tmp_path / "YaleB_32x32.mat", {"features": columns, "Label": labels[None, :].astype(np.uint8)})
    x, y = yale.select(*yale.read_yaleb(tmp_path / "YaleB_32x32.mat"))
    assert x.shape == (640, 16, 16) and np.bincount(y).tolist() == [64] * 10
    assert (x[:, 0, 1] == 100).all() and (x[:, 1, 0] == 0).all()  # (200 + 200 + 0 + 0) / 4, in rows
    assert np.array_equal(x[:, 15, 15], np.rint((labels[labels <= 10]) / 4).astype(np.uint8))
    savemat(tmp_path / "bad.mat", {"features": columns[:100], "Label": labels[None, :]})
    with pytest.raises(SystemExit, match="expected \\(1024, 2414\\) uint8"):
        yale.read_yaleb(tmp_path / "bad.mat")


def test_the_usps_builder_keeps_the_first_500_of_each_digit_in_stored_order_and_rows(tmp_path):
    from scipy.io import savemat

    usps = _load("make_usps_data")
    gnd = np.tile(np.arange(1, 11), 1100)  # 1-10 for the digits 0-9, interleaved
    images = np.zeros((11000, 16, 16), dtype=np.uint8)
    images[:, 0, 1] = 7  # a pixel of the first row: rows as stored
    images[:, 15, 15] = np.arange(11000) // 10 % 256  # the image's place among its digit's, mod 256
    images[:, 15, 0] = gnd  # the label, in the last row's first pixel
    savemat(tmp_path / "USPS.mat", {"fea": images.reshape(11000, 256), "gnd": gnd[:, None].astype(np.uint8)})
    x, y = usps.select(*usps.read_usps(tmp_path / "USPS.mat"))
    assert x.shape == (5000, 16, 16) and np.bincount(y).tolist() == [500] * 10
    assert (x[:, 0, 1] == 7).all() and (x[:, 1, 0] == 0).all()
    assert np.array_equal(x[:, 15, 0], y + 1)  # digit d is label d + 1
    assert x[y == 3][:, 15, 15].tolist() == [k % 256 for k in range(500)]  # its first 500, in stored order
    savemat(tmp_path / "bad.mat", {"fea": images.reshape(11000, 256)[:100], "gnd": gnd[:100, None]})
    with pytest.raises(SystemExit, match="expected \\(11000, 256\\) uint8"):
        usps.read_usps(tmp_path / "bad.mat")


def _omniglot_zip(path, alphabets: dict, mark) -> None:
    """A zip laid out as Omniglot's small sets: ``root/alphabet/characterNN/NNNN_DD.png``, 105x105 black on white,
    the drawing's ink ``mark(alphabet, character, drawer)`` in a 7x7 block at the top left."""
    import io
    import zipfile

    from PIL import Image

    with zipfile.ZipFile(path, "w") as z:
        for alphabet, (characters, drawers) in alphabets.items():
            for c in range(characters):
                for d in range(drawers):
                    img = np.full((105, 105), 255, dtype=np.uint8)
                    img[:7, :7] = 255 - mark(alphabet, c, d)
                    buf = io.BytesIO()
                    Image.fromarray(img).save(buf, format="PNG")
                    z.writestr(f"{path.stem}/{alphabet}/character{c + 1:02d}/{c:04d}_{d + 1:02d}.png", buf.getvalue())


def test_the_omniglot_builder_keeps_340_per_alphabet_spread_over_its_characters_once_each(tmp_path):
    omni = _load("make_omniglot_data")
    names = [folder for folder, _ in omni.ALPHABETS]
    sizes = dict(zip(names, [(24, 20), (22, 20), (24, 20), (40, 20), (26, 20), (47, 20), (42, 20), (17, 20)]))
    first, second = dict(list(sizes.items())[:5]), dict(list(sizes.items())[2:])  # Greek and Latin in both
    mark = lambda alphabet, c, d: (names.index(alphabet) * 30 + c) % 256  # noqa: E731
    _omniglot_zip(tmp_path / "images_background_small1.zip", first, mark)
    _omniglot_zip(tmp_path / "images_background_small2.zip", second, mark)
    found = omni.drawings([tmp_path / "images_background_small1.zip", tmp_path / "images_background_small2.zip"])
    assert len(found["Greek"]) == 24 * 20  # once, though in both zips
    x, y = omni.select(found)
    assert x.shape == (8 * 340, 16, 16) and np.bincount(y).tolist() == [340] * 8
    # the 7x7 block covers the first 105/16-pixel box: its ink lands at (0, 0), white on black; none elsewhere
    assert (x[:, 1:, :] == 0).all() and (x[:, :, 2:] == 0).all()
    katakana = x[y == names.index("Japanese_(katakana)")][:, 0, 0].astype(int)
    assert set(katakana) == {150 + c for c in range(47)}  # every character keeps some
    assert np.all(np.diff(katakana) >= 0)  # in sorted order, character by character
    tagalog = x[y == names.index("Tagalog")][:, 0, 0].astype(int)
    assert np.bincount(tagalog - 210).tolist() == [20] * 17  # the smallest alphabet whole
    with pytest.raises(SystemExit, match="no alphabet Tagalog"):
        omni.select({k: v for k, v in found.items() if k != "Tagalog"})


def test_the_simpsons_builder_keeps_the_first_500_train_frames_of_each_character_area_averaged(tmp_path):
    from PIL import Image

    simpsons = _load("make_simpsons_data")
    grey = tmp_path / "grayscale"
    for label, (folder, _) in enumerate(simpsons.CHARACTERS):
        (grey / "train" / folder).mkdir(parents=True)
        for k in reversed(range(503)):  # written out of order: the builder sorts by file name
            level = 20 * label + (7 if k >= 500 else 0)  # the three frames after the first 500 differ
            img = np.full((28, 28), level, dtype=np.uint8)
            img[:7, :7] = 200  # a bright top-left block: it stays in the top-left corner at 16x16
            Image.fromarray(img).save(grey / "train" / folder / f"pic_{k:04d}.jpg", quality=100)
    x, y = simpsons.select(grey)
    assert x.shape == (5000, 16, 16) and np.bincount(y).tolist() == [500] * 10
    centre = x[:, 8:, 8:].astype(int)  # far from the block: each frame's flat level, within JPEG's rounding
    assert np.abs(centre - 20 * y[:, None, None].astype(int)).max() <= 2
    assert (x[:, 0, 0] > 150).all() and (x[:, 15, 15] < 200).all()  # the block, top left only
    (grey / "train" / "ned_flanders" / "pic_0000.jpg").unlink()
    for k in range(1, 5):
        (grey / "train" / "ned_flanders" / f"pic_{k:04d}.jpg").unlink()
    with pytest.raises(SystemExit, match="ned_flanders holds 498 JPEG files; 500 are needed"):
        simpsons.select(grey)


def test_the_bloodcell_builder_keeps_the_first_500_cells_of_each_type_centre_cropped_and_area_averaged(tmp_path):
    from PIL import Image

    blood = _load("make_bloodcell_data")
    root = tmp_path / "PBC_dataset_normal_DIB"
    crop, block = blood.CROP, blood.CROP // 16
    for label, (folder, _) in enumerate(blood.CELLS):
        (root / folder).mkdir(parents=True)
        for k in reversed(range(503)):  # written out of order: the builder sorts by file name
            level = 20 * label + (7 if k >= 500 else 0)  # the three images after the first 500 differ
            img = np.full((363, 360), 250, dtype=np.uint8)  # 360 wide, 363 high, as most PBC photographs
            top, left = (363 - crop) // 2, (360 - crop) // 2
            img[top:top + crop, left:left + crop] = level  # the border outside the centre crop is dropped
            img[top:top + block, left:left + block] = 200  # one bright block: the top-left output pixel
            Image.fromarray(img).convert("RGB").save(root / folder / f"X_{k:04d}.jpg", quality=100)
    (root / "neutrophil" / ".DS_0000.jpg").write_bytes(b"\0\0\0\1Bud1")  # macOS junk, skipped
    x, y = blood.select(root)
    assert x.shape == (4000, 16, 16) and x.dtype == np.uint8 and np.bincount(y).tolist() == [500] * 8
    inner = x[:, 1:, 1:].astype(int)  # away from the block: each image's flat level, within JPEG's rounding
    assert np.abs(inner - 20 * y[:, None, None].astype(int)).max() <= 3
    assert (x[:, 0, 0] > 150).all() and (x[:, 15, 15] < 160).all()  # the block, top left only
    for k in range(3):
        (root / "platelet" / f"X_{k:04d}.jpg").unlink()
    (root / "platelet" / "X_0003.jpg").rename(root / "platelet" / "X_0003.png")
    with pytest.raises(SystemExit, match="platelet holds 499 JPEG files; 500 are needed"):
        blood.select(root)


def test_the_eurosat_builder_keeps_tiles_1_to_500_of_each_class_as_4x4_area_averages(tmp_path):
    from PIL import Image

    euro = _load("make_eurosat_data")
    root = tmp_path / "2750"
    for label, (folder, _) in enumerate(euro.LAND):
        (root / folder).mkdir(parents=True)
        for n in range(1, 504):  # _1 .. _503: the three after _500 differ, and _1000-like names sort before _2
            level = 20 * label + (7 if n > 500 else 0)
            img = np.full((64, 64), level, dtype=np.uint8)
            img[:4, :4] = 200  # one 4x4 block: the top-left output pixel
            Image.fromarray(img).convert("RGB").save(root / folder / f"{folder}_{n}.jpg", quality=100)
    x, y = euro.select(root)
    assert x.shape == (5000, 16, 16) and x.dtype == np.uint8 and np.bincount(y).tolist() == [500] * 10
    inner = x[:, 1:, 1:].astype(int)  # away from the block: each tile's flat level, within JPEG's rounding
    assert np.abs(inner - 20 * y[:, None, None].astype(int)).max() <= 3
    assert (x[:, 0, 0] > 150).all() and (x[:, 15, 15] < 200).all()  # the block, top left only
    (root / "River" / "River_17.jpg").unlink()
    with pytest.raises(SystemExit, match="River lacks River_17.jpg"):
        euro.select(root)
    Image.new("RGB", (32, 32)).save(root / "River" / "River_17.jpg")
    with pytest.raises(SystemExit, match="a tile is 32x32"):
        euro.select(root)


def test_the_mstar_builder_keeps_420_chips_a_vehicle_train_then_val_centre_cropped_in_runs_of_ten(tmp_path):
    from PIL import Image

    mstar = _load("make_mstar_data")
    root = tmp_path / "mstar"
    crop, block = mstar.CROP, mstar.CROP // 16
    top = (mstar.CHIP - crop) // 2
    for label, (folder, _) in enumerate(mstar.VEHICLES):
        for split, count, shift in (("train", 300, 0), ("val", 130, 3)):  # 300 + 120 kept, then 10 more left out
            (root / split / folder).mkdir(parents=True)
            for k in reversed(range(count)):  # written out of order: the builder sorts by file name
                level = 20 * label + shift + (7 if split == "val" and k >= 120 else 0)
                img = np.full((mstar.CHIP, mstar.CHIP), 250, dtype=np.uint8)  # the clutter outside the crop: dropped
                img[top:top + crop, top:top + crop] = level
                img[top:top + block, top:top + block] = 200  # one bright block: the top-left output pixel
                Image.fromarray(img).save(root / split / folder / f"{k:05d}.jpeg", quality=100)
    x, y, group = mstar.select(root)
    assert x.shape == (4200, 16, 16) and x.dtype == np.uint8 and np.bincount(y).tolist() == [420] * 10
    inner = x[:, 1:, 1:].astype(int)  # away from the block: each chip's flat level, within JPEG's rounding
    want = 20 * y.astype(int) + np.tile(np.r_[np.zeros(300), np.full(120, 3)], 10).astype(int)  # train, then val
    assert np.abs(inner - want[:, None, None]).max() <= 2
    assert (x[:, 0, 0] > 150).all() and (x[:, 15, 15] < 200).all()  # the block, top left only
    assert group.tolist() == [c * 100 + i // 10 for c in range(10) for i in range(420)]
    for k in range(125):
        (root / "val" / "9" / f"{k:05d}.jpeg").unlink()
    with pytest.raises(SystemExit, match="class 9 holds 305 JPEG chips"):
        mstar.select(root)


def test_the_rsscn7_builder_keeps_all_400_photographs_of_each_scene_as_25x25_area_averages(tmp_path):
    from PIL import Image

    rsscn7 = _load("make_rsscn7_data")
    for label, (folder, _) in enumerate(rsscn7.SCENES):
        (tmp_path / folder).mkdir()
        for k in reversed(range(1, 401)):  # written out of order: the builder sorts by file name
            img = np.full((400, 400), 20 * label + (5 if k > 200 else 0), dtype=np.uint8)
            img[:25, :25] = 220  # one 25x25 block: the top-left output pixel
            Image.fromarray(img).convert("RGB").save(tmp_path / folder / f"{folder[0]}{k:03d}.jpg", quality=100)
    x, y = rsscn7.select(tmp_path)
    assert x.shape == (2800, 16, 16) and x.dtype == np.uint8 and np.bincount(y).tolist() == [400] * 7
    want = 20 * y.astype(int) + np.tile(np.r_[np.zeros(200), np.full(200, 5)], 7).astype(int)  # file-name order
    assert np.abs(x[:, 1:, 1:].astype(int) - want[:, None, None]).max() <= 2
    assert (x[:, 0, 0] > 180).all() and (x[:, 15, 15] < 200).all()  # the block, top left only
    (tmp_path / "gParking" / "g017.jpg").unlink()
    with pytest.raises(SystemExit, match="gParking holds 399 JPEG files; RSSCN7 has 400"):
        rsscn7.select(tmp_path)


def test_the_plankton_builder_pads_each_image_with_white_and_keeps_the_first_390_of_each_kind(tmp_path):
    from PIL import Image

    plankton = _load("make_plankton_data")
    for label, (folder, _) in enumerate(plankton.KINDS):
        (tmp_path / folder).mkdir()
        for k in reversed(range(400)):  # written out of order: the builder sorts by file name
            img = np.full((32, 64), 20 * label + (5 if k >= 195 else 0), dtype=np.uint8)  # wide: padded above, below
            Image.fromarray(img).convert("RGB").save(tmp_path / folder / f"{1000 + k}.jpg", quality=100)
    x, y = plankton.select(tmp_path)
    assert x.shape == (3900, 16, 16) and x.dtype == np.uint8 and np.bincount(y).tolist() == [390] * 10
    want = 20 * y.astype(int) + np.tile(np.r_[np.zeros(195), np.full(195, 5)], 10).astype(int)  # file-name order
    assert np.abs(x[:, 5:11, :].astype(int) - want[:, None, None]).max() <= 2  # the image, rows 4-11 of 16
    assert (x[:, :3, :] >= 253).all() and (x[:, 13:, :] >= 253).all()  # white padding above and below
    for k in range(11):
        (tmp_path / "fecal_pellet" / f"{1000 + k}.jpg").unlink()
    with pytest.raises(SystemExit, match="fecal_pellet holds 389 JPEG files; 390 are needed"):
        plankton.select(tmp_path)


def test_the_tifinagh_builder_area_averages_each_28x28_letter_and_keeps_the_first_400_of_each(tmp_path):
    from PIL import Image

    tifinagh = _load("make_tifinagh_data")
    names = sorted(f"{n}_{k}.png" for n in range(205) for k in (0, 2))  # 410 a letter; "100_0" sorts before "2_0"
    for label, (folder, _) in enumerate(tifinagh.LETTERS):
        (tmp_path / folder).mkdir()
        for rank in reversed(range(len(names))):  # written out of order: the builder sorts by file name
            img = np.zeros((28, 28), dtype=np.uint8)
            img[:, :14] = 20 * label + 10 + (5 if rank >= 200 else 0)  # left half lit, right half black
            Image.fromarray(img).convert("RGB").save(tmp_path / folder / names[rank])
    x, y = tifinagh.select(tmp_path)
    assert x.shape == (4000, 16, 16) and x.dtype == np.uint8 and np.bincount(y).tolist() == [400] * 10
    want = 20 * y.astype(int) + 10 + np.tile(np.r_[np.zeros(200), np.full(200, 5)], 10).astype(int)  # name order
    assert (x[:, :, :8] == want[:, None, None]).all() and (x[:, :, 8:] == 0).all()  # 28 -> 16 by area, exactly
    Image.new("RGB", (30, 28)).save(tmp_path / "3" / "0_0.png")
    with pytest.raises(SystemExit, match="an image in .*3 is 30x28; Tifinagh-MNIST's images are 28x28"):
        tifinagh.select(tmp_path)
    (tmp_path / "3" / "0_0.png").unlink()  # 409 left, enough
    for name in names[:11]:
        (tmp_path / "9" / name).unlink()
    with pytest.raises(SystemExit, match="9 holds 399 PNG files; 400 are needed"):
        tifinagh.select(tmp_path)


def test_the_fer_builder_area_averages_each_48x48_face_and_keeps_the_first_380_distinct_of_each(tmp_path):
    from PIL import Image

    fer = _load("make_fer_data")
    names = sorted(f"Training_{n}.jpg" for n in range(10, 405))  # 395 a class; "Training_100" before "Training_11"
    for label, (folder, _) in enumerate(fer.EXPRESSIONS):
        (tmp_path / folder).mkdir()
        for rank in reversed(range(len(names))):  # written out of order: the builder sorts by file name
            code = rank if rank != 6 else 5  # the file at rank 6 repeats rank 5's pixels: skipped
            img = np.zeros((48, 48), dtype=np.uint8)
            img[:, :24] = 20 * label + 10 + (5 if rank >= 190 else 0)  # left half lit, by file-name rank
            img[:8, 24:32], img[:8, 32:40] = 10 * (code // 20), 10 * (code % 20)  # makes each file distinct
            Image.fromarray(img).save(tmp_path / folder / names[rank], quality=100)
    x, y = fer.select(tmp_path)
    assert x.shape == (2660, 16, 16) and x.dtype == np.uint8 and np.bincount(y).tolist() == [380] * 7
    kept = np.tile(np.arange(380), 7)
    ranks = np.where(kept < 6, kept, kept + 1)  # the repeat at rank 6 is not kept
    want = 20 * y.astype(int) + 10 + np.where(ranks >= 190, 5, 0)
    assert (x[:, :, :8] == want[:, None, None]).all()  # 48 -> 16 by 3x3 area averages, exactly
    assert (x[:, 3:, 8:] == 0).all()  # below the code blocks, the dark right half
    assert all(len({im.tobytes() for im in x[y == k]}) == 380 for k in range(7))
    Image.new("L", (50, 48)).save(tmp_path / "sad" / "Training_0.jpg")
    with pytest.raises(SystemExit, match="an image in .*sad is 50x48; FER2013's images are 48x48"):
        fer.select(tmp_path)
    (tmp_path / "sad" / "Training_0.jpg").unlink()
    for name in names[-15:]:
        (tmp_path / "surprise" / name).unlink()
    with pytest.raises(SystemExit, match="surprise holds 379 distinct images in 380 JPEG files; 380 are needed"):
        fer.select(tmp_path)

def _hanzi_file(path: Path, level: int, writer: int, sample: int) -> None:
    """A 64x64 Chinese-MNIST-like JPEG of flat 8x8 blocks (exact at quality 100): a 200 block top left, the band of
    rows 24-39 at ``level``, and codes of the writer and the sample in the bottom-left blocks."""
    from PIL import Image

    img = np.zeros((64, 64), dtype=np.uint8)
    img[:8, :8] = 200  # the brightest pixel: the stretch maps 200 to 255
    img[24:40, :] = level
    img[56:, :8], img[56:, 8:16] = 4 * writer + 1, 10 * sample + 3  # odd: never 20 mod 40, so never x.5 after
    Image.fromarray(img).save(path, quality=100)


def test_the_hanzi_builder_keeps_writers_1_to_40_of_numerals_0_to_9_area_averaged_and_stretched_to_255(tmp_path):
    from PIL import Image

    hanzi = _load("make_hanzi_data")
    for label, (code, _) in enumerate(hanzi.NUMERALS):
        for writer in range(1, 42):  # writer 41 is left out
            for sample in range(1, 11):
                _hanzi_file(tmp_path / f"input_{writer}_{sample}_{code}.jpg", 10 * label + 35, writer, sample)
    for sample in range(1, 11):  # code 11, the numeral ten, is left out
        _hanzi_file(tmp_path / f"input_1_{sample}_11.jpg", 250, 1, sample)
    x, y = hanzi.select(tmp_path)
    assert x.shape == (4000, 16, 16) and x.dtype == np.uint8 and np.bincount(y).tolist() == [400] * 10
    stretch = 255 / 200
    writers, samples = np.tile(np.repeat(np.arange(1, 41), 10), 10), np.tile(np.arange(1, 11), 400)
    assert (x[:, :2, :2] == 255).all()  # the 200 block, 4x4-averaged and stretched
    assert (x[:, 6:10, :] == np.rint((10 * y + 35) * stretch)[:, None, None]).all()  # rows 24-39 -> rows 6-9
    assert (x[:, 14:, :2] == np.rint((4 * writers + 1) * stretch)[:, None, None]).all()  # writer by writer ...
    assert (x[:, 14:, 2:4] == np.rint((10 * samples + 3) * stretch)[:, None, None]).all()  # ... sample by sample
    assert (x[:, :2, 2:] == 0).all() and (x[:, 2:6] == 0).all() and (x[:, 10:14] == 0).all()  # black elsewhere
    assert (x[:, 14:, 4:] == 0).all()
    Image.new("L", (60, 64)).save(tmp_path / "input_7_3_4.jpg")
    with pytest.raises(SystemExit, match="an image is 60x64; Chinese MNIST's images are 64x64"):
        hanzi.select(tmp_path)
    Image.new("L", (64, 64)).save(tmp_path / "input_7_3_4.jpg")
    with pytest.raises(SystemExit, match="an image is black throughout"):
        hanzi.select(tmp_path)
    (tmp_path / "input_7_3_4.jpg").unlink()
    (tmp_path / "input_40_10_4.jpg").unlink()
    with pytest.raises(SystemExit, match=r"lacks input_7_3_4\.jpg \(and 1 more\); pass Chinese MNIST's data/data"):
        hanzi.select(tmp_path)


def test_the_signs_builder_keeps_the_first_203_100x100_photos_of_each_digit_cropped_and_area_averaged(tmp_path):
    from PIL import Image

    signs = _load("make_signs_data")
    for label, (folder, _) in enumerate(signs.DIGITS):
        (tmp_path / folder).mkdir()
        for k in range(205):  # flat RGB images (exact in JPEG at quality 100): the level says class and file
            level = 10 * label + 30 + k % 7
            Image.new("RGB", (100, 100), (level, level, level)).save(tmp_path / folder / f"IMG_{k:04d}.JPG",
                                                                        quality=100)
    Image.new("RGB", (120, 120), (250, 250, 250)).save(tmp_path / "7" / "IMG_0000.JPG")  # an original: left out
    x, y = signs.select(tmp_path)
    assert x.shape == (2030, 16, 16) and x.dtype == np.uint8 and np.bincount(y).tolist() == [203] * 10
    first = np.arange(203) % 7
    keep7 = (np.arange(1, 204)) % 7  # digit 7 lost its file 0, so its first 203 are files 1-203
    expected = np.concatenate([10 * d + 30 + (keep7 if d == 7 else first) for d in range(10)])
    assert (x == expected[:, None, None]).all()
    for k in range(200, 205):
        (tmp_path / "3" / f"IMG_{k:04d}.JPG").unlink()
    with pytest.raises(SystemExit, match="3 holds 200 100x100 JPEG files; 203 are needed"):
        signs.select(tmp_path)


def test_the_steel_builder_keeps_the_first_distinct_images_of_each_defect_in_number_order_cropped_and_averaged(
        tmp_path, monkeypatch):
    from PIL import Image

    steel = _load("make_steel_data")
    monkeypatch.setattr(steel, "PER_CLASS", 5)
    (tmp_path / "IMAGES").mkdir()
    (tmp_path / "Validation_Images").mkdir()
    numbers = (1, 2, 3, 10, 11, 20)  # the first five by number: 1, 2, 3, 10, 11 (by name: 1, 10, 11, 2, 20)

    def save(path: Path, level: int, size: int = 200) -> None:
        img = np.full((size, size), level, dtype=np.uint8)  # flat 8x8 blocks: exact in a JPEG at quality 100
        img[:8] = 250  # the top block row: its outer 4 rows are cropped away, its inner 4 enter the first 16x16 row
        Image.fromarray(img).convert("RGB").save(path, quality=100)

    for label, (prefix, _) in enumerate(steel.DEFECTS):
        for n in numbers:
            folder = tmp_path / ("Validation_Images" if n == 3 else "IMAGES")
            save(folder / f"{prefix}_{n}.jpg", 30 + 20 * label + n)
    (tmp_path / "IMAGES" / "patches_2.jpg").write_bytes((tmp_path / "IMAGES" / "patches_1.jpg").read_bytes())
    save(tmp_path / "IMAGES" / "rust_1.jpg", 7)  # not a defect of the six: ignored
    x, y = steel.select(tmp_path)
    assert x.shape == (30, 16, 16) and x.dtype == np.uint8 and np.bincount(y).tolist() == [5] * 6
    kept = {label: [1, 2, 3, 10, 11] for label in range(6)}
    kept[2] = [1, 3, 10, 11, 20]  # patches_2 repeats patches_1: skipped
    levels = np.array([30 + 20 * label + n for label in range(6) for n in kept[label]])
    assert (x[:, 1:, :] == levels[:, None, None]).all()
    assert (x[:, 0, :] == np.rint((4 * 250 + 8 * levels) / 12)[:, None]).all()  # 4 rows of 250, 8 of the level
    save(tmp_path / "IMAGES" / "rolled-in_scale_11.jpg", 40, size=120)
    with pytest.raises(SystemExit, match="rolled-in_scale_11.jpg is 120x120; the NEU surface defect database's"):
        steel.select(tmp_path)
    save(tmp_path / "IMAGES" / "rolled-in_scale_11.jpg", 40)
    save(tmp_path / "IMAGES" / "crazing_3.jpg", 40)
    with pytest.raises(SystemExit, match="holds crazing_3.jpg twice"):
        steel.select(tmp_path)
    (tmp_path / "IMAGES" / "crazing_3.jpg").unlink()
    (tmp_path / "IMAGES" / "patches_20.jpg").unlink()
    with pytest.raises(SystemExit, match=r"4 distinct images in 5 patches_<n>\.jpg files; 5 are needed"):
        steel.select(tmp_path)


def test_the_scenes_builder_drops_images_filed_twice_and_keeps_the_first_distinct_of_each_scene_in_id_order(
        tmp_path, monkeypatch):
    from PIL import Image

    scenes = _load("make_scenes_data")
    monkeypatch.setattr(scenes, "PER_CLASS", 4)
    ids = (2, 10, 3, 1, 9)  # by id: 1, 2, 3, 9, 10 (by name: 1, 10, 2, 3, 9)

    def save(path: Path, level: int, size: int = 100, kind: str = "JPEG") -> None:
        img = np.full((size, size), level, dtype=np.uint8)  # flat 6x6 blocks: exact in a JPEG at quality 100
        img[:6] = 250  # the top block row: its outer 2 rows are cropped away, its inner 4 enter the first 16x16 row
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).convert("RGB").save(path, kind, quality=100)

    def level(label: int, i: int) -> int:
        return 10 + 40 * label + i  # distinct across scenes and ids

    for label, (scene, _) in enumerate(scenes.SCENES):
        for i in ids:
            save(tmp_path / ("test" if i == 10 else "train") / scene / f"{i}.jpg", level(label, i))
    train = tmp_path / "train"
    # filed under two scenes (a byte copy): dropped from both; a pixel repeat within a scene (other bytes): skipped
    (train / "street" / "1.jpg").write_bytes((train / "buildings" / "1.jpg").read_bytes())
    save(train / "forest" / "2.jpg", level(1, 1), kind="PNG")
    save(train / "sea" / "notes.jpg", 9)  # not an id: ignored
    x, y = scenes.select(tmp_path)
    assert x.shape == (24, 16, 16) and x.dtype == np.uint8 and np.bincount(y).tolist() == [4] * 6
    kept = {label: [1, 2, 3, 9] for label in range(6)}
    kept[0] = kept[5] = [2, 3, 9, 10]  # buildings/1 and street/1 are one file under two scenes
    kept[1] = [1, 3, 9, 10]  # forest/2 repeats forest/1's pixels
    levels = np.array([level(label, i) for label in range(6) for i in kept[label]])
    assert (x[:, 1:, :] == levels[:, None, None]).all()
    assert (x[:, 0, :] == np.rint((4 * 250 + 2 * levels) / 6)[:, None]).all()  # 4 rows of 250, 2 of the level
    save(train / "glacier" / "9.jpg", 40, size=120)
    with pytest.raises(SystemExit, match="glacier/9.jpg is 120x120; the Intel scene copy's images are 100x100"):
        scenes.select(tmp_path)
    save(train / "glacier" / "9.jpg", 40)
    save(tmp_path / "test" / "sea" / "9.jpg", 44)
    with pytest.raises(SystemExit, match="holds sea/9.jpg twice"):
        scenes.select(tmp_path)
    (tmp_path / "test" / "sea" / "9.jpg").unlink()
    (tmp_path / "test" / "buildings" / "10.jpg").unlink()  # buildings keeps 2, 3, 9: one short
    with pytest.raises(SystemExit, match=r"3 distinct images in 3 buildings/<id>\.jpg files; 4 are needed"):
        scenes.select(tmp_path)


def test_the_mednist_builder_spreads_its_picks_over_each_kind_and_skips_copies_under_two_kinds_and_repeats(
        tmp_path, monkeypatch):
    from PIL import Image

    mednist = _load("make_mednist_data")
    monkeypatch.setattr(mednist, "PER_CLASS", 3)
    assert [f for f in mednist.spread_order(list(range(10)), 3)] == [0, 3, 6, 9, 1, 2, 4, 5, 7, 8]

    def save(path: Path, level: int, size: int = 64) -> None:
        img = np.full((size, size), level, dtype=np.uint8)
        img[:8] = 250  # one row of JPEG blocks: the first two rows of 4x4 blocks, exact at quality 100
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(path, "JPEG", quality=100)

    def level(label: int, i: int) -> int:
        return 10 + 30 * label + 2 * i  # distinct across kinds and ids

    for label, (folder, _) in enumerate(mednist.KINDS):
        for i in range(9):  # stride 3: ids 0, 3, 6 first, then 1, 2, 4, 5, 7, 8
            save(tmp_path / folder / f"{i:06d}.jpeg", level(label, i))
    (tmp_path / "Hand" / "000003.jpeg").write_bytes((tmp_path / "HeadCT" / "000003.jpeg").read_bytes())  # two kinds
    save(tmp_path / "CXR" / "000006.jpeg", level(2, 0))  # repeats CXR 0's pixels: skipped
    save(tmp_path / "ChestCT" / "notes.jpeg", 9)  # not an id: ignored
    x, y = mednist.select(tmp_path)
    assert x.shape == (18, 16, 16) and x.dtype == np.uint8 and np.bincount(y).tolist() == [3] * 6
    kept = {label: [0, 3, 6] for label in range(6)}
    kept[2] = [0, 3, 1]  # CXR 6 repeats CXR 0: the next in spread order (id 1) is kept
    kept[4] = kept[5] = [0, 2, 5]  # id 3 is one file under Hand and HeadCT, dropped from both: 8 files, stride 2
    levels = np.array([level(label, i) for label in range(6) for i in kept[label]])
    assert (x[:, :2, :] == 250).all()
    assert (x[:, 2:, :] == levels[:, None, None]).all()
    save(tmp_path / "BreastMRI" / "000003.jpeg", 40, size=60)
    with pytest.raises(SystemExit, match="BreastMRI/000003.jpeg is 60x60; MedNIST's images are 64x64"):
        mednist.select(tmp_path)
    for i in range(2, 9):
        (tmp_path / "BreastMRI" / f"{i:06d}.jpeg").unlink()
    with pytest.raises(SystemExit, match=r"2 distinct images in 2 BreastMRI/<id>\.jpeg files; 3 are needed"):
        mednist.select(tmp_path)

def test_the_arabic_builder_transposes_each_letter_upright_and_keeps_the_first_distinct_train_then_test_rows(
        tmp_path, monkeypatch):
    import zipfile

    arabic = _load("make_arabic_data")
    monkeypatch.setattr(arabic, "PER_CLASS", 3)
    monkeypatch.setattr(arabic, "PARTS", (("train.csv", "train_labels.csv", 8), ("test.csv", "test_labels.csv", 4)))
    monkeypatch.setattr(arabic, "LETTERS", ((2, "beh"), (5, "jeem")))

    def letter(level: int) -> np.ndarray:
        img = np.zeros((32, 32), dtype=np.int64)
        img[:, :2] = level  # a stroke down the left edge: stored column by column, it is the first two stored rows
        return img

    def csv(rows) -> str:
        return "".join(",".join(str(v) for v in row) + "\n" for row in rows)

    # training rows: labels 2 2 5 2 5 1 5 2; row 3 repeats row 0 (beh), row 5 (label 1) copies row 2 (jeem)
    train_levels = [10, 20, 30, 10, 40, 30, 50, 60]
    train_labels = [2, 2, 5, 2, 5, 1, 5, 2]
    test_levels, test_labels = [70, 80, 90, 100], [5, 5, 2, 1]
    path = tmp_path / "ahcd.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("train.csv", csv(letter(v).T.reshape(1, -1)[0] for v in train_levels))
        z.writestr("train_labels.csv", csv([v] for v in train_labels))
        z.writestr("test.csv", csv(letter(v).T.reshape(1, -1)[0] for v in test_levels))
        z.writestr("test_labels.csv", csv([v] for v in test_labels))
    x, y = arabic.select(path)
    assert x.shape == (6, 16, 16) and x.dtype == np.uint8 and y.tolist() == [0, 0, 0, 1, 1, 1]
    # beh: 10, 20, (10 again: skipped), 60; jeem: (30 is also under label 1: skipped), 40, 50, then the test row 70
    assert x[:, :, 0].tolist() == [[v] * 16 for v in (10, 20, 60, 40, 50, 70)]
    assert (x[:, :, 1:] == 0).all()
    monkeypatch.setattr(arabic, "PER_CLASS", 5)  # beh has four distinct rows (the test file adds 90)
    with pytest.raises(SystemExit, match=r"4 distinct images of beh \(label 2\); 5 are needed"):
        arabic.select(path)
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as z:
        z.writestr("train.csv", "1,2\n")
    with pytest.raises(SystemExit, match=r"train.csv holds \(1, 2\) values 1-2; expected \(8, 1024\) in 0-255"):
        arabic.select(tmp_path / "other.zip")


def test_the_mdas_builder_reads_only_the_drawn_originals_in_name_order_and_skips_repeats_and_shared_images(
        tmp_path, monkeypatch):
    import io
    import zipfile

    from PIL import Image

    mdas = _load("make_mdas_data")
    monkeypatch.setattr(mdas, "PER_CLASS", 3)
    monkeypatch.setattr(mdas, "SYMBOLS", (("addition_plus", "plus"), ("multiplication_dot", "dot")))

    def png(level: int, side: int = 28) -> bytes:
        out = io.BytesIO()
        Image.fromarray(np.full((side, side), level, dtype=np.uint8)).save(out, format="PNG")
        return out.getvalue()

    root = "symbols_partitioned"
    members = {  # (split, folder, file name): level
        ("train", "addition_plus", "addition_plus-c.png"): 30,
        ("test", "addition_plus", "addition_plus-a.png"): 10,
        ("val", "addition_plus", "addition_plus-b.png"): 10,  # repeats -a: skipped
        ("train", "addition_plus", "addition_plus-d.png"): 40,
        ("train", "addition_plus", "addition_plus-e.png"): 50,
        ("train", "addition_plus", "0a.png"): 20,  # a rotated or mirrored copy (a bare uuid): never read
        ("train", "multiplication_dot", "multiplication_dot-a.png"): 40,  # also under plus: skipped in both
        ("train", "multiplication_dot", "multiplication_dot-b.png"): 60,
        ("test", "multiplication_dot", "multiplication_dot-c.png"): 70,
        ("val", "multiplication_dot", "multiplication_dot-d.png"): 80,
        ("train", "division_slash", "division_slash-a.png"): 90,  # a class not asked for
    }
    path = tmp_path / "mdas.zip"
    with zipfile.ZipFile(path, "w") as z:
        for (split, folder, name), level in members.items():
            z.writestr(f"{root}/{split}/{folder}/{name}", png(level))
    x, y = mdas.select(path)
    assert x.shape == (6, 16, 16) and x.dtype == np.uint8 and y.tolist() == [0, 0, 0, 1, 1, 1]
    # plus: a 10, (b repeats it), c 30, (d is also a dot), e 50; dot: (a), b 60, c 70, d 80
    assert [int(v) for v in x[:, 0, 0]] == [10, 30, 50, 60, 70, 80]
    assert all((img == img[0, 0]).all() for img in x)
    monkeypatch.setattr(mdas, "PER_CLASS", 4)
    with pytest.raises(SystemExit, match=r"3 distinct drawn plus images \(addition_plus-<uuid>\.png\); 4 are needed"):
        mdas.select(path)
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as z:
        z.writestr(f"{root}/train/addition_plus/addition_plus-a.png", png(5, side=32))
    with pytest.raises(SystemExit, match=r"addition_plus-a\.png is 32x32; the MDAS symbols are 28x28"):
        mdas.select(tmp_path / "other.zip")


def test_the_tibetan_builder_spreads_each_numeral_over_the_sheets_and_skips_repeats_and_shared_images(tmp_path,
                                                                                                  monkeypatch):
    from PIL import Image

    tibetan = _load("make_tibetan_data")
    monkeypatch.setattr(tibetan, "PER_CLASS", 4)

    def save(name: str, level: int, side: int = 350) -> None:
        # PNG bytes under the .jpg name: Pillow reads by content, so the levels survive exactly
        Image.fromarray(np.full((side, side), level, dtype=np.uint8)).save(tmp_path / name, format="PNG")

    for digit in range(10):
        for sheet in (2, 10):  # sheet order is numeric: 2 before 10
            for index in (5, 30, 400):  # index order is numeric too
                save(f"{digit}_{sheet}_{index}.jpg", 20 * digit + (sheet == 10) * 6 + (index // 100) * 3 + index % 2)
    save("3_2_30.jpg", 61)  # now repeats 3_2_5 (level 61): skipped
    save("0_2_30.jpg", 3)  # one image under two numerals: skipped in both
    save("7_10_30.jpg", 3)
    save("6.jpg", 255)  # the copy's stray file: ignored
    save("5_2_notes.jpg", 250)  # not <digit>_<sheet>_<index>: ignored
    files = tibetan.numeral_files(tmp_path)
    assert [f.name for f in files[1]] == ["1_2_5.jpg", "1_10_5.jpg", "1_2_30.jpg", "1_10_30.jpg", "1_2_400.jpg",
                                          "1_10_400.jpg"]
    x, y = tibetan.select(tmp_path)
    assert x.shape == (40, 16, 16) and x.dtype == np.uint8 and np.bincount(y).tolist() == [4] * 10
    assert all((img == img[0, 0]).all() for img in x)

    def level(name: str) -> int:
        digit, sheet, index = (int(v) for v in name[:-4].split("_"))
        return 20 * digit + (sheet == 10) * 6 + (index // 100) * 3 + index % 2

    kept = {d: [f"{d}_2_5.jpg", f"{d}_10_5.jpg", f"{d}_2_30.jpg", f"{d}_10_30.jpg"] for d in range(10)}
    kept[0] = ["0_2_5.jpg", "0_10_5.jpg", "0_10_30.jpg", "0_2_400.jpg"]  # 0_2_30 shares 7_10_30's pixels
    kept[7] = ["7_2_5.jpg", "7_10_5.jpg", "7_2_30.jpg", "7_2_400.jpg"]
    kept[3] = ["3_2_5.jpg", "3_10_5.jpg", "3_10_30.jpg", "3_2_400.jpg"]  # 3_2_30 repeats 3_2_5
    assert [int(v) for v in x[:, 0, 0]] == [level(n) for d in range(10) for n in kept[d]]
    monkeypatch.setattr(tibetan, "PER_CLASS", 6)
    with pytest.raises(SystemExit, match=r"5 distinct images of numeral 0 \(lekor, 0_<sheet>_<index>\.jpg\); 6 are "
                                         r"needed"):
        tibetan.select(tmp_path)
    save("4_2_5.jpg", 9, side=28)
    with pytest.raises(SystemExit, match=r"4_2_5\.jpg is 28x28; TibetanMNIST's images are 350x350"):
        tibetan.select(tmp_path)


def test_the_shapes_builder_keeps_the_first_distinct_of_each_shape_in_id_order_and_skips_shared_images(tmp_path,
                                                                                                  monkeypatch):
    from PIL import Image

    shapes = _load("make_shapes_data")
    monkeypatch.setattr(shapes, "PER_CLASS", 4)

    def save(name: str, level: int, side: int = 224) -> None:
        img = np.full((side, side), level, dtype=np.uint8)
        img[:7] = 250  # half the top 14x14 block row: the first 16x16 row averages the two
        # PNG bytes under the .jpg name: Pillow reads by content, so the levels survive exactly
        Image.fromarray(img).save(tmp_path / name, format="PNG")

    def level(label: int, i: int) -> int:
        return 10 + 25 * label + i  # distinct across shapes and ids

    ids = (2, 10, 3, 1, 9)  # by id: 1, 2, 3, 9, 10 (by name: 1, 10, 2, 3, 9)
    for label, (shape, _) in enumerate(shapes.SHAPES):
        for i in ids:
            save(f"{shape}-{i}.jpg", level(label, i))
    save("kite-2.jpg", level(1, 1))  # repeats kite-1: skipped
    save("circle-3.jpg", 5)  # one image under two shapes: skipped in both
    save("square-1.jpg", 5)
    save("oval-1.jpg", 200)  # not one of the eight shapes: ignored
    save("triangle-notes.jpg", 201)  # not <shape>-<id>.jpg: ignored
    assert [f.name for f in shapes.shape_files(tmp_path)["rhombus"]] == [f"rhombus-{i}.jpg" for i in (1, 2, 3, 9, 10)]
    x, y = shapes.select(tmp_path)
    assert x.shape == (32, 16, 16) and x.dtype == np.uint8 and np.bincount(y).tolist() == [4] * 8
    kept = {label: [1, 2, 3, 9] for label in range(8)}
    kept[0] = [1, 2, 9, 10]  # circle-3 shares square-1's pixels
    kept[1] = [1, 3, 9, 10]  # kite-2 repeats kite-1
    kept[5] = [2, 3, 9, 10]
    levels = np.array([level(label, i) for label in range(8) for i in kept[label]])
    assert (x[:, 1:, :] == levels[:, None, None]).all()
    assert (x[:, 0, :] == np.rint((250 + levels) / 2)[:, None]).all()
    monkeypatch.setattr(shapes, "PER_CLASS", 5)
    with pytest.raises(SystemExit, match=r"4 distinct images in 5 circle-<id>\.jpg files; 5 are needed"):
        shapes.select(tmp_path)
    save("trapezoid-9.jpg", 40, side=28)
    with pytest.raises(SystemExit, match=r"trapezoid-9\.jpg is 28x28; Geometric Shapes Mathematics' images are "
                                         r"224x224"):
        shapes.select(tmp_path)


def test_the_bangla_builder_keeps_the_first_distinct_of_each_numeral_in_row_order_and_skips_shared_images(tmp_path,
                                                                                                  monkeypatch):
    bangla = _load("make_bangla_data")
    monkeypatch.setattr(bangla, "PER_CLASS", 3)

    def image(level: int) -> np.ndarray:
        img = np.full((32, 32, 3), level, dtype=np.uint8)
        img[0] = 250  # half the top 2x2 block row: the first 16x16 row averages the two
        return img

    rows = []  # (level, numeral), in file order: numeral 9 first, as the copy's rows are
    for label in (9, *range(9)):
        rows += [(10 + 20 * label + i, label) for i in range(4)]
    rows.insert(2, (10 + 20 * 4, 9))  # numeral 4's first image filed under 9 too: shared, skipped in both
    rows.insert(29, (10 + 20 * 6 + 1, 6))  # numeral 6's second image, also just before its run: kept once
    levels, labels = zip(*rows)
    path = tmp_path / "training-images.npz"
    np.savez_compressed(path, images=np.stack([image(v) for v in levels]), labels=np.array(labels, dtype=np.int64))
    x, y = bangla.select(path)
    assert x.shape == (30, 16, 16) and x.dtype == np.uint8 and np.bincount(y).tolist() == [3] * 10
    kept = {label: [0, 1, 2] for label in range(10)}
    kept[4] = [1, 2, 3]  # its first image also stands under numeral 9
    kept[6] = [1, 0, 2]  # the early copy of its second image comes first; the second image itself is a repeat
    want = np.array([10 + 20 * label + i for label in range(10) for i in kept[label]])
    assert (x[:, 1:, :] == want[:, None, None]).all()
    assert (x[:, 0, :] == np.rint((250 + want) / 2)[:, None]).all()
    monkeypatch.setattr(bangla, "PER_CLASS", 4)
    with pytest.raises(SystemExit, match=r"3 distinct images of char \(numeral 4\); 4 are needed"):
        bangla.select(path)
    np.savez_compressed(path, images=np.zeros((4, 28, 28, 3), np.uint8), labels=np.zeros(4, np.int64))
    with pytest.raises(SystemExit, match=r"holds images \(4, 28, 28, 3\) uint8; expected \(n, 32, 32, 3\) uint8"):
        bangla.select(path)
    colour = np.zeros((4, 32, 32, 3), np.uint8)
    colour[0, 0, 0, 2] = 1
    np.savez_compressed(path, images=colour, labels=np.zeros(4, np.int64))
    with pytest.raises(SystemExit, match=r"three channels differ"):
        bangla.select(path)
    np.savez(path, images=np.array([None, 1], dtype=object), labels=np.zeros(2, np.int64))
    with pytest.raises(SystemExit, match=r"is not the copy's training-images\.npz"):  # read without unpickling
        bangla.select(path)


def test_the_crop_builders_crop_a_square_around_each_box_and_area_average_it_to_16x16():
    hands = _load("mat_images")  # the hands, Persian-letter and DeepPCB builders' square_crop and area_16
    assert hands.square_crop((10, 5, 30, 45), 64, 48) == (0, 5, 40)  # the longer side, centred
    assert hands.square_crop((50, 0, 64, 30), 64, 48) == (34, 0, 30)  # shifted inside at the right edge
    assert hands.square_crop((0, 0, 64, 48), 64, 48) == (8, 0, 48)  # at most the shorter side
    rng = np.random.default_rng(0)
    for side in (16, 24, 32, 45):
        grey = rng.uniform(0, 255, (side, side))
        fine = np.repeat(np.repeat(grey, 16, axis=0), 16, axis=1)  # 16 sub-pixels a pixel: bins of side sub-pixels
        want = np.rint(fine.reshape(16, side, 16, side).mean(axis=(1, 3))).astype(np.uint8)
        assert (hands.area_16(grey) == want).all()
    assert (hands.area_16(np.full((37, 37), 93.0)) == 93).all()


def test_the_hands_builder_keeps_the_first_distinct_of_each_class_in_row_order_and_skips_shared_crops(tmp_path,
                                                                                                 monkeypatch):
    from PIL import Image

    hands = _load("make_hands_data")
    monkeypatch.setattr(hands, "PER_CLASS", 2)
    (tmp_path / "images").mkdir()
    (tmp_path / "data").mkdir()

    def level(label: int, i: int) -> int:
        return 10 + 30 * label + i

    def save(name: str, img: np.ndarray) -> None:
        Image.fromarray(img).save(tmp_path / "images" / name, format="PNG")  # PNG bytes: the levels survive

    for label in range(6):
        for i in range(3):
            save(f"p{label}_{i}.jpg", np.full((48, 64), level(label, i), dtype=np.uint8))
    halves = np.full((48, 64), 200, dtype=np.uint8)
    halves[:, 32:] = 220
    save("two.jpg", halves)  # two hands in one photograph: the left one five fingers, the right one four

    def row(name: str, label: int, box=(8, 8, 40, 40)) -> str:
        return f"{name},64,48,{label}-hand," + ",".join(map(str, box))

    def write(table: str, rows: list) -> None:
        (tmp_path / "data" / table).write_text("\n".join([",".join(hands.FIELDS), *rows]) + "\n")

    train = [row("two.jpg", 5, (0, 10, 20, 30)), row("two.jpg", 4, (44, 10, 64, 30))]
    for label in range(6):
        train += [row(f"p{label}_{i}.jpg", label) for i in ((0, 0, 1) if label == 3 else (0, 1))]  # 3: a repeat
    train.append(row("p1_0.jpg", 2))  # one crop under two classes: skipped in both
    write("train_labels.csv", train)
    write("test_labels.csv", [row(f"p{label}_2.jpg", label) for label in range(6)])
    x, y = hands.select(tmp_path)
    assert x.shape == (12, 16, 16) and x.dtype == np.uint8 and np.bincount(y).tolist() == [2] * 6
    want = [level(0, 0), level(0, 1), level(1, 1), level(1, 2), level(2, 0), level(2, 1), level(3, 0), level(3, 1),
            220, level(4, 0), 200, level(5, 0)]
    assert (x == np.array(want)[:, None, None]).all()
    monkeypatch.setattr(hands, "PER_CLASS", 3)
    with pytest.raises(SystemExit, match=r"2 distinct images of one \(fingers 1\); 3 are needed"):
        hands.select(tmp_path)
    write("test_labels.csv", [row("p0_2.jpg", 0).replace(",64,48,", ",800,600,")])
    with pytest.raises(SystemExit, match=r"images/p0_2\.jpg is 64x48; its table says 800x600"):
        hands.select(tmp_path)
    write("test_labels.csv", [row("p0_2.jpg", 6)])
    with pytest.raises(SystemExit, match=r"line 2: .* is not a box of 0-hand \.\. 5-hand"):
        hands.select(tmp_path)
    (tmp_path / "data" / "test_labels.csv").unlink()
    with pytest.raises(SystemExit, match=r"lacks data/test_labels\.csv"):
        hands.select(tmp_path)


def _save_grey(path, img: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).convert("RGB").save(path, format="PNG")  # RGB as the dataset's; PNG keeps the levels


def _save_ink_square(path, value: int, side: int = 32) -> None:
    """A white ``side`` x ``side`` PNG at ``path`` with a square of ink ``value`` at [8:24, 8:24]: the ink crop the
    letter builders take of it is the square itself."""
    img = np.full((side, side), 255, dtype=np.uint8)
    img[8:24, 8:24] = value
    _save_grey(path, img)


def test_the_persian_builder_crops_a_square_around_the_letters_ink(tmp_path, monkeypatch):
    persian = _load("make_persian_data")
    monkeypatch.setattr(persian, "SIDE", 32)
    img = np.full((32, 32), 255, dtype=np.uint8)
    assert persian.ink_box(img) is None
    img[2:6, 20:30] = 90  # a wide, flat letter near the top edge
    img[4, 25] = 127  # the darkest grey that is not ink is 128
    assert persian.ink_box(img) == (20, 2, 30, 6)
    _save_grey(tmp_path / "a.png", img)
    crop = persian.letter_crop(tmp_path / "a.png", "a.png")
    assert crop.dtype == np.uint8 and (crop == img[0:10, 20:30]).all()  # the longer side, shifted inside at the top
    img[:] = 128
    _save_grey(tmp_path / "blank.png", img)
    with pytest.raises(SystemExit, match=r"blank\.png has no pixel darker than 128"):
        persian.letter_crop(tmp_path / "blank.png", "blank.png")


def test_the_persian_builder_keeps_the_first_distinct_of_each_letter_in_font_order_and_skips_shared_crops(
        tmp_path, monkeypatch):
    persian = _load("make_persian_data")
    monkeypatch.setattr(persian, "SIDE", 32)
    monkeypatch.setattr(persian, "PER_CLASS", 2)

    def level(label: int, font: int) -> int:
        return 5 + 12 * label + 3 * font  # every level is ink (under 128)

    def save(font: str, letter: str, value: int, side: int = 32) -> None:
        _save_ink_square(tmp_path / font / f"{letter}_{font}.png", value, side)

    for font in ("fc", "fa", "fb"):  # written out of order, read in name order: fa, fb, fc
        f = ("fa", "fb", "fc").index(font)
        for label, (letter, _) in enumerate(persian.LETTERS):
            value = level(label, f)
            if font == "fb" and letter == "che":
                value = level(label, 0)  # fb's che repeats fa's: skipped
            if font == "fa" and letter == "nun":
                value = level(5, 0)  # fa's nun is fa's lam: skipped under both letters
            save(font, letter, value)
    x, y = persian.select(tmp_path)
    assert x.shape == (16, 16, 16) and x.dtype == np.uint8 and np.bincount(y).tolist() == [2] * 8
    want = [level(0, 0), level(0, 1), level(1, 0), level(1, 2), level(2, 0), level(2, 1), level(3, 0), level(3, 1),
            level(4, 0), level(4, 1), level(5, 1), level(5, 2), level(6, 1), level(6, 2), level(7, 0), level(7, 1)]
    assert (x == np.array(want)[:, None, None]).all()
    monkeypatch.setattr(persian, "PER_CLASS", 3)
    with pytest.raises(SystemExit, match=r"2 distinct images of che \(letter 1\); 3 are needed"):
        persian.select(tmp_path)
    save("fb", "he", 40, side=16)
    with pytest.raises(SystemExit, match=r"fb/he_fb\.png is 16x16; the dataset's images are 32x32"):
        persian.select(tmp_path)
    (tmp_path / "fb" / "he_fb.png").unlink()
    with pytest.raises(SystemExit, match=r"fb/he_fb\.png is missing"):
        persian.select(tmp_path)
    with pytest.raises(SystemExit, match=r"holds no font folder"):
        persian.select(tmp_path / "fa" / "peh_fa.png")


def test_the_pcb_builder_reads_the_boxes_and_crops_a_square_around_each_defect(tmp_path, monkeypatch):
    pcb = _load("make_pcb_data")
    monkeypatch.setattr(pcb, "SIDE", 32)
    img = np.zeros((32, 32), dtype=np.uint8)
    img[2:6, 20:30] = 200  # a wide, flat defect near the top edge
    _save_grey(tmp_path / "group7" / "7" / "7000_test.jpg", img)  # PNG bytes: Pillow reads by content, not name
    note = tmp_path / "group7" / "7_not" / "7000.txt"
    note.parent.mkdir(parents=True)
    note.write_text("20 2 30 6 4\n\n0 0 32 32 1")  # a blank line skipped, the last line without a newline
    assert pcb.read_boxes(note) == [(3, (20, 2, 30, 6)), (0, (0, 0, 32, 32))]
    (label, crop), (label2, whole) = pcb.defect_crops(note)
    assert label == 3 and crop.dtype == np.uint8 and (crop == img[0:10, 20:30]).all()  # shifted inside at the top
    assert label2 == 0 and (whole == img).all()
    for bad in ("20 2 30 6 7", "20 2 30 6", "20 2 30 x 4"):
        note.write_text(f"1 1 3 3 1\n{bad}\n")
        with pytest.raises(SystemExit, match=r"7000\.txt line 2: .* is not 'x1 y1 x2 y2 type' with a type 1\.\.6"):
            pcb.read_boxes(note)


def test_the_pcb_builder_keeps_the_first_distinct_of_each_type_in_file_order_and_skips_shared_crops(
        tmp_path, monkeypatch):
    pcb = _load("make_pcb_data")
    monkeypatch.setattr(pcb, "SIDE", 32)
    monkeypatch.setattr(pcb, "PER_CLASS", 2)
    corners = [(0, 0), (8, 0), (16, 0), (24, 0), (0, 8), (8, 8)]  # one 8x8 box a type, the crop the box itself

    def level(label: int, f: int) -> int:
        return 5 + 12 * label + 3 * f

    def save(group: str, stem: str, values: list, side: int = 32) -> None:
        img = np.full((side, side), 255, dtype=np.uint8)
        for (x, y), value in zip(corners, values):
            img[y:y + 8, x:x + 8] = value
        _save_grey(tmp_path / f"group{group}" / group / f"{stem}_test.jpg", img)
        note = tmp_path / f"group{group}" / f"{group}_not" / f"{stem}.txt"
        note.parent.mkdir(parents=True, exist_ok=True)
        note.write_text("".join(f"{x} {y} {x + 8} {y + 8} {t + 1}\n" for t, (x, y) in enumerate(corners)))

    for group, stem, f in (("2", "b1", 2), ("1", "a2", 1), ("1", "a1", 0)):  # written out of order, read in path order
        values = [level(label, f) for label in range(6)]
        if f == 1:
            values[1] = level(1, 0)  # a2's short repeats a1's: skipped
        if f == 0:
            values[3] = level(4, 0)  # a1's spur is a1's copper: skipped under both types
        save(group, stem, values)
    x, y = pcb.select(tmp_path)
    assert x.shape == (12, 16, 16) and x.dtype == np.uint8 and np.bincount(y).tolist() == [2] * 6
    want = [level(0, 0), level(0, 1), level(1, 0), level(1, 2), level(2, 0), level(2, 1), level(3, 1), level(3, 2),
            level(4, 1), level(4, 2), level(5, 0), level(5, 1)]
    assert (x == np.array(want)[:, None, None]).all()
    monkeypatch.setattr(pcb, "PER_CLASS", 3)
    with pytest.raises(SystemExit, match=r"2 distinct images of short \(type 1\); 3 are needed"):
        pcb.select(tmp_path)
    save("2", "b1", [40] * 6, side=16)
    with pytest.raises(SystemExit, match=r"group2/2/b1_test\.jpg is 16x16; the tested images are 32x32"):
        pcb.select(tmp_path)
    (tmp_path / "group2" / "2" / "b1_test.jpg").unlink()
    with pytest.raises(SystemExit, match=r"group2/2/b1_test\.jpg is missing"):
        pcb.select(tmp_path)
    with pytest.raises(SystemExit, match=r"holds no group\*/\*_not/\*\.txt annotation file"):
        pcb.select(tmp_path / "group1" / "1_not" / "a1.txt")


def test_the_waste_builder_reads_a_portrait_photograph_and_area_averages_its_centre_square(tmp_path, monkeypatch):
    waste = _load("make_waste_data")
    monkeypatch.setattr(waste, "WIDTH", 32)
    monkeypatch.setattr(waste, "HEIGHT", 48)
    monkeypatch.setattr(waste, "CROP", 32)
    img = np.full((48, 32), 250, dtype=np.uint8)
    img[8:40, :] = np.arange(32, dtype=np.uint8)[None, :] * 4  # the centre square a ramp, the strips cut off
    _save_grey(tmp_path / "glass" / "glass1.jpg", img)  # PNG bytes: Pillow reads by content, not name
    grey = waste.read_grey(tmp_path / "glass" / "glass1.jpg", "glass/glass1.jpg")
    assert grey.dtype == np.uint8 and (grey == img).all()
    _save_grey(tmp_path / "glass" / "glass2.jpg", img.T.copy())  # a landscape photograph
    with pytest.raises(SystemExit, match=r"glass/glass2\.jpg is 48x32; the photographs are 32x48"):
        waste.read_grey(tmp_path / "glass" / "glass2.jpg", "glass/glass2.jpg")
    small = waste.centre_area_16(grey.astype(np.float64), waste.CROP)
    assert small.shape == (16, 16) and (small == np.rint(np.arange(16) * 8 + 2)[None, :]).all()


def test_the_waste_builder_keeps_the_first_distinct_of_each_material_in_file_order_and_skips_shared_photographs(
        tmp_path, monkeypatch):
    waste = _load("make_waste_data")
    monkeypatch.setattr(waste, "WIDTH", 32)
    monkeypatch.setattr(waste, "HEIGHT", 48)
    monkeypatch.setattr(waste, "CROP", 32)
    monkeypatch.setattr(waste, "PER_CLASS", 2)

    def level(label: int, n: int) -> int:
        return 5 + 30 * label + 3 * n

    def save(folder: str, n: int, value: int) -> None:
        _save_grey(tmp_path / folder / f"{folder}{n}.jpg", np.full((48, 32), value, dtype=np.uint8))

    for label, (folder, _) in enumerate(waste.MATERIALS):
        for n in (3, 1, 2):  # written out of order; read in file-name order: 1, 2, 3
            save(folder, n, level(label, n))
    save("glass", 1, level(0, 1))  # glass1 is cardboard1 too: skipped under both materials
    save("metal", 2, level(2, 1))  # metal2 repeats metal1: skipped
    (tmp_path / "paper" / ".DS_Store.jpg").write_bytes(b"not an image")  # names starting with a dot are not read
    x, y = waste.select(tmp_path)
    assert x.shape == (12, 16, 16) and x.dtype == np.uint8 and np.bincount(y).tolist() == [2] * 6
    want = [level(0, 2), level(0, 3), level(1, 2), level(1, 3), level(2, 1), level(2, 3)]
    want += [level(label, n) for label in (3, 4, 5) for n in (1, 2)]
    assert (x == np.array(want)[:, None, None]).all()
    monkeypatch.setattr(waste, "PER_CLASS", 3)
    with pytest.raises(SystemExit, match=r"2 distinct images of cardboard \(material 0\); 3 are needed"):
        waste.select(tmp_path)
    for f in (tmp_path / "trash").iterdir():
        f.unlink()
    with pytest.raises(SystemExit, match=r"trash holds no JPEG \(pass the copy's dataset-resized/ folder\)"):
        waste.select(tmp_path)


#: (builder, ink rows, ink columns, the pixel at 127 that widens the box, the expected crop's rows and columns): a
#: wide, flat stroke near the bottom edge (the box 12 wide) and a tall, thin one near the right edge (13 tall)
INK_CASES = [("make_kazakh_data", (28, 31), (3, 13), (29, 14), (20, 32), (3, 15)),
             ("make_greek_data", (2, 14), (28, 31), (14, 29), (2, 15), (19, 32)),
             ("make_thai_data", (26, 30), (3, 20), (30, 12), (15, 32), (3, 20))]


@pytest.mark.parametrize("builder, rows, cols, edge, want_rows, want_cols", INK_CASES)
def test_a_letter_builder_crops_a_square_around_the_letters_ink(tmp_path, monkeypatch, builder, rows, cols, edge,
                                                                 want_rows, want_cols):
    """make_persian_data.ink_square through each builder's letter_crop: the longer side of the ink's box (pixels
    under 128), shifted inside the image; a blank image and one of another size are refused in one line."""
    module = _load(builder)
    monkeypatch.setattr(module, "SIDE", 32)
    img = np.full((32, 32), 255, dtype=np.uint8)
    img[rows[0]:rows[1], cols[0]:cols[1]] = 0
    img[10 if rows[0] > 16 else 20, 20 if cols[0] < 16 else 10] = 128  # the darkest grey that is not ink
    img[edge] = 127  # the lightest that is
    _save_grey(tmp_path / "a.png", img)
    crop = module.letter_crop(tmp_path / "a.png", "a.png")
    assert crop.dtype == np.uint8 and (crop == img[want_rows[0]:want_rows[1], want_cols[0]:want_cols[1]]).all()
    img[:] = 128
    _save_grey(tmp_path / "blank.png", img)
    with pytest.raises(SystemExit, match=r"blank\.png has no pixel darker than 128"):
        module.letter_crop(tmp_path / "blank.png", "blank.png")
    _save_grey(tmp_path / "small.png", img[:16, :16].copy())
    with pytest.raises(SystemExit, match=r"x/small\.png is 16x16; the dataset's images are 32x32"):
        module.letter_crop(tmp_path / "small.png", "x/small.png")


def test_the_kazakh_builder_keeps_the_first_distinct_of_each_letter_in_file_order_and_skips_shared_crops(
        tmp_path, monkeypatch):
    kazakh = _load("make_kazakh_data")
    monkeypatch.setattr(kazakh, "SIDE", 32)
    monkeypatch.setattr(kazakh, "PER_CLASS", 2)

    def level(label: int, n: int) -> int:
        return 5 + 12 * label + 3 * n  # every level is ink (under 128)

    def save(folder: str, n: int, value: int) -> None:
        _save_ink_square(tmp_path / folder / f"n{n}.png", value)

    for label, (folder, _) in enumerate(kazakh.LETTERS):
        for n in (3, 1, 2):  # written out of order; read in file-name order: n1, n2, n3
            save(folder, n, level(label, n))
    folders = [folder for folder, _ in kazakh.LETTERS]
    save(folders[1], 1, level(0, 1))  # ghe's n1 is ae's n1: skipped under both letters
    save(folders[2], 2, level(2, 1))  # qa's n2 repeats qa's n1: skipped
    (tmp_path / folders[3] / ".n0.png").write_bytes(b"not an image")  # names starting with a dot are not read
    (tmp_path / folders[4] / "model.pth").write_bytes(b"not read")  # nor anything but a PNG
    x, y = kazakh.select(tmp_path)
    assert x.shape == (16, 16, 16) and x.dtype == np.uint8 and np.bincount(y).tolist() == [2] * 8
    want = [level(0, 2), level(0, 3), level(1, 2), level(1, 3), level(2, 1), level(2, 3)]
    want += [level(label, n) for label in range(3, 8) for n in (1, 2)]
    assert (x == np.array(want)[:, None, None]).all()
    monkeypatch.setattr(kazakh, "PER_CLASS", 3)
    with pytest.raises(SystemExit, match=r"2 distinct images of ae \(letter 0\); 3 are needed"):
        kazakh.select(tmp_path)
    for f in (tmp_path / folders[7]).iterdir():
        f.unlink()
    with pytest.raises(SystemExit, match=r"holds no PNG \(i; pass the copy's dataset/ folder\)"):
        kazakh.select(tmp_path)


def test_the_greek_builder_reads_train_then_test_keeps_the_first_distinct_of_each_letter_and_skips_shared_crops(
        tmp_path, monkeypatch):
    greek = _load("make_greek_data")
    monkeypatch.setattr(greek, "SIDE", 32)
    monkeypatch.setattr(greek, "PER_CLASS", 3)

    def level(label: int, n: int) -> int:
        return 5 + 14 * label + 2 * n  # every level is ink (under 128), one for each letter and n up to 5

    def save(part: str, folder: str, n: int, value: int) -> None:
        _save_ink_square(tmp_path / part / folder / f"{n}_{folder}.png", value)

    folders = [folder for folder, _ in greek.LETTERS]
    for label, folder in enumerate(folders):
        for n in (2, 1):  # written out of order; read in file-name order: 1, 2
            save("train", folder, n, level(label, n))
        save("test", folder, 0, level(label, 3))  # test/ is read after train/, whatever the names
    save("train", folders[1], 1, level(0, 1))  # iota's 1 is epsilon's 1: skipped under both letters
    save("test", folders[1], 4, level(1, 4))
    save("test", folders[1], 5, level(1, 5))
    save("test", folders[2], 4, level(2, 1))  # kappa's test 4 repeats its train 1: skipped
    save("test", folders[2], 5, level(2, 5))
    save("test", folders[0], 4, level(0, 4))
    (tmp_path / "train" / folders[3] / ".0_x.png").write_bytes(b"not an image")  # names starting with a dot: unread
    (tmp_path / "sample_sizes" / folders[4]).mkdir(parents=True)  # nor any folder but train/ and test/
    (tmp_path / "sample_sizes" / folders[4] / "0_My.png").write_bytes(b"not read")
    x, y = greek.select(tmp_path)
    assert x.shape == (24, 16, 16) and x.dtype == np.uint8 and np.bincount(y).tolist() == [3] * 8
    want = [level(0, 2), level(0, 3), level(0, 4), level(1, 2), level(1, 3), level(1, 4)]
    want += [level(2, 1), level(2, 2), level(2, 3)]
    want += [level(label, n) for label in range(3, 8) for n in (1, 2, 3)]
    assert (x == np.array(want)[:, None, None]).all()
    monkeypatch.setattr(greek, "PER_CLASS", 4)
    with pytest.raises(SystemExit, match=r"3 distinct images of epsilon \(letter 0\); 4 are needed"):
        greek.select(tmp_path)
    for part in ("train", "test"):
        for f in (tmp_path / part / folders[7]).iterdir():
            f.unlink()
    with pytest.raises(SystemExit, match=r"hold no PNG \(phi; pass the copy's Dataset/\)"):
        greek.select(tmp_path)


def test_the_thai_builder_skips_dirty_odd_sized_and_blank_images_and_keeps_the_first_distinct_of_each_numeral(
        tmp_path, monkeypatch):
    thai = _load("make_thai_data")
    monkeypatch.setattr(thai, "SIDE", 32)
    monkeypatch.setattr(thai, "PER_CLASS", 3)

    def level(label: int, n: int) -> int:
        return 5 + 14 * label + 2 * n  # every level is ink (under 128), one for each numeral and n up to 5

    def save(folder: str, name: str, value: int, side: int = 32) -> None:
        _save_ink_square(tmp_path / folder / f"{name}.png", value, side)

    folders = [folder for folder, _ in thai.NUMERALS]
    for label, folder in enumerate(folders):
        for n in (3, 1, 2):  # written out of order; read in file-name order: a1, a2, a3
            save(folder, f"a{n}", level(label, n))
    save(folders[0], "a0", level(0, 4), side=33)  # another size: skipped
    save(folders[0], "a4", level(0, 4))
    save(folders[1], "a0", 128)  # a blank canvas (nothing under 128): skipped
    save(folders[2], thai.DIRTY[0], level(2, 4))  # in the dataset's own list of bad drawings: skipped
    save(folders[3], "a1", level(0, 1))  # sam's a1 is sun's a1: skipped under both numerals
    save(folders[3], "a4", level(3, 4))
    save(folders[4], "a25", level(4, 1))  # ha's a25 repeats its a1: skipped
    save(folders[4], "a4", level(4, 4))
    assert not thai.usable(tmp_path / folders[0] / "a0.png") and thai.usable(tmp_path / folders[0] / "a4.png")
    x, y = thai.select(tmp_path)
    assert x.shape == (24, 16, 16) and x.dtype == np.uint8 and np.bincount(y).tolist() == [3] * 8
    want = [level(0, 2), level(0, 3), level(0, 4)] + [level(label, n) for label in (1, 2) for n in (1, 2, 3)]
    want += [level(3, 2), level(3, 3), level(3, 4)] + [level(4, n) for n in (1, 2, 3)]
    want += [level(label, n) for label in range(5, 8) for n in (1, 2, 3)]
    assert (x == np.array(want)[:, None, None]).all()
    monkeypatch.setattr(thai, "PER_CLASS", 4)
    with pytest.raises(SystemExit, match=r"3 distinct images of sun \(numeral 0\); 4 are needed"):
        thai.select(tmp_path)
    for f in (tmp_path / folders[7]).iterdir():
        f.unlink()
    with pytest.raises(SystemExit, match=r"9 holds no PNG \(kao; pass the copy's"):
        thai.select(tmp_path)


def test_the_emoji_builder_composites_over_white_skips_variants_and_keeps_the_first_distinct_of_each_group(
        tmp_path, monkeypatch):
    import json

    from PIL import Image

    emoji = _load("make_emoji_data")
    monkeypatch.setattr(emoji, "SIDE", 32)
    monkeypatch.setattr(emoji, "PER_CLASS", 2)
    pngs = tmp_path / "72x72"
    pngs.mkdir()
    groups = [group for group, _, _ in emoji.GROUPS]

    def level(label: int, n: int) -> int:
        return 5 + 14 * label + 2 * n  # one level for each group and n up to 6

    def png(hexcode: str, value: int, side: int = 32) -> None:
        rgba = np.zeros((side, side, 4), dtype=np.uint8)  # transparent black: white once composited
        rgba[8:24, 8:24] = (value, value, value, 255)  # an opaque grey square: its 16x16 image is the square
        Image.fromarray(rgba, "RGBA").save(pngs / f"{hexcode}.png")

    def entry(hexcode: str, label: int, value=None, subgroup: str = "", skintone: str = "") -> dict:
        if value is not None:
            png(hexcode, value)
        return {"hexcode": hexcode, "group": groups[label] if label >= 0 else "activities", "subgroups": subgroup,
                "skintone": skintone}

    def plain(label: int, ns=(1, 2, 3)) -> list:
        return [entry(f"A{label}{n}", label, level(label, n)) for n in ns]

    entries = [entry("2764", 1, subgroup="heart"),  # a heart: no face (no PNG read)
               entry("B0", 3, level(0, 1)),  # an animal with a flag's pixels: skipped under both
               entry("1F3C3", -1)]  # in no group taken
    entries += plain(0, (1,)) + [entry("1F44B-1F3FB", 0), entry("1F44B", 0, skintone="1F3FB")] + plain(0, (2, 3))
    entries += plain(1) + [entry("1F468-200D-1F52C", 2), entry("1F9D1-200D-1F9B0", 2),
                           entry("1F3C3-200D-2640-FE0F", 2)] + plain(2)  # man scientist, red hair, woman running
    entries += plain(3) + plain(4, (1,)) + [entry("B1", 4, level(4, 1))] + plain(4, (2, 3))  # B1 repeats A41
    entries += plain(5) + plain(6) + [entry("2640", 7, level(7, 0))] + plain(7)  # the female sign alone: kept
    meta = tmp_path / "openmoji.json"
    meta.write_text(json.dumps(entries), encoding="utf-8")
    assert emoji.variant({"hexcode": "1F9D1", "skintone": "1F3FD"}) and not emoji.variant({"hexcode": "1F9D1"})
    x, y = emoji.select(meta, pngs)
    assert x.shape == (16, 16, 16) and x.dtype == np.uint8 and np.bincount(y).tolist() == [2] * 8
    want = [level(0, 2), level(0, 3)] + [level(label, n) for label in range(1, 7) for n in (1, 2)]
    want += [level(7, 0), level(7, 1)]
    assert (x[:, 4:12, 4:12] == np.array(want)[:, None, None]).all()
    assert (x[:, :4] == 255).all() and (x[:, 12:] == 255).all()  # the transparent border composited over white
    monkeypatch.setattr(emoji, "PER_CLASS", 3)
    with pytest.raises(SystemExit, match=r"2 distinct images of flag \(group 0\); 3 are needed"):
        emoji.select(meta, pngs)
    (pngs / "A42.png").unlink()
    with pytest.raises(SystemExit, match=r"A42\.png is missing \(pass the copy's 72x72 colour PNG folder\)"):
        emoji.select(meta, pngs)
    png("A42", level(4, 2), side=36)
    with pytest.raises(SystemExit, match=r"A42\.png is 36x36; the emoji are 32x32"):
        emoji.select(meta, pngs)
    meta.write_text("[{", encoding="utf-8")
    with pytest.raises(SystemExit, match=r"is not readable JSON .*pass the copy's openmoji\.json"):
        emoji.select(meta, pngs)


def _write_wav(path: Path, samples: np.ndarray, rate: int = 8000, channels: int = 1) -> None:
    """A 16-bit PCM WAV file of ``samples`` (float in [-1, 1)), each sample repeated on every channel."""
    import wave

    path.parent.mkdir(parents=True, exist_ok=True)
    pcm = np.repeat(np.rint(np.clip(samples, -1.0, 32767 / 32768) * 32768).astype("<i2"), channels)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())


def _tone(freq: float, n: int = 4000, rate: int = 8000) -> np.ndarray:
    return 0.5 * np.sin(2 * np.pi * freq * np.arange(n) / rate)


def test_the_spoken_spectrogram_puts_a_tone_in_its_mel_band_low_at_the_bottom_whatever_its_length_and_level():
    spoken = _load("make_spoken_data")
    weights = spoken.band_weights()
    assert weights.shape == (16, 129) and np.allclose(weights.sum(axis=1), 1.0) and (weights > 0).sum() == 129
    # bins 5, 32, 90 and 112 lie in mel bands 1 (88-188 Hz), 7 (910-1114), 13 (2589-3004) and 15 (3473-4000)
    for freq, row in ((156.25, 14), (1000.0, 8), (2812.5, 2), (3500.0, 0)):
        img = spoken.spectrogram_16(_tone(freq))
        assert img.dtype == np.uint8 and img.shape == (16, 16)
        assert (img.argmax(axis=0) == row).all() and (img[row] == 255).all()
    steady = spoken.spectrogram_16(_tone(1000.0))
    assert np.abs(spoken.spectrogram_16(_tone(1000.0, n=2000)).astype(int) - steady).max() <= 1  # 16 bins however long
    assert np.abs(spoken.spectrogram_16(0.25 * _tone(1000.0)).astype(int) - steady).max() <= 1  # 60 dB under its peak
    rising = spoken.spectrogram_16(np.concatenate([_tone(500.0, 2048), _tone(2812.5, 2048)]))  # band 4, then 13
    assert (rising[:, :7].argmax(axis=0) == 11).all() and (rising[:, 9:].argmax(axis=0) == 2).all()
    assert spoken.spectrogram_16(np.zeros(100)).shape == (16, 16)  # shorter than a window: padded


def test_the_spoken_builder_reads_take_then_speaker_and_keeps_the_first_distinct_of_each_digit(tmp_path, monkeypatch):
    spoken = _load("make_spoken_data")
    monkeypatch.setattr(spoken, "SPEAKERS", ("ann", "bob"))
    monkeypatch.setattr(spoken, "TAKES", 3)
    monkeypatch.setattr(spoken, "PER_CLASS", 4)
    root = tmp_path / "recordings"

    def voice(label: int, n: int, s: int) -> np.ndarray:
        k = 6 * label + 2 * n + s  # a second tone 1 dB quieter for each recording: every image differs
        return _tone(1000.0, 2400) + 10 ** (-k / 20) * _tone(250.0, 2400)

    digits = [digit for digit, _ in spoken.DIGITS]
    for label, digit in enumerate(digits):
        for n in range(3):
            for s, speaker in enumerate(("ann", "bob")):
                _write_wav(root / f"{digit}_{speaker}_{n}.wav", voice(label, n, s))
    _write_wav(root / "3_ann_0.wav", voice(0, 0, 0))  # three's first is zero's: skipped under both digits
    _write_wav(root / "5_bob_1.wav", voice(5, 0, 0))  # repeats five's first: skipped
    _write_wav(root / "6_ann_0.wav", _tone(1000.0), channels=2)  # six and eight are never read
    x, y = spoken.select(root)
    assert x.shape == (32, 16, 16) and x.dtype == np.uint8 and np.bincount(y).tolist() == [4] * 8
    first = [(0, 0), (0, 1), (1, 0), (1, 1)]
    late = [(0, 1), (1, 0), (1, 1), (2, 0)]
    order = {0: late, 3: late, 5: [(0, 0), (0, 1), (1, 0), (2, 0)]}
    want = [voice(label, n, s) for label in range(8) for n, s in order.get(label, first)]
    assert np.array_equal(x, np.stack([spoken.spectrogram_16(np.rint(w * 32768) / 32768) for w in want]))
    out = tmp_path / "spoken16.npz"
    spoken.main([str(root), "--out", str(out)])
    with np.load(out) as d:
        assert d["classes"].tolist() == ["zero", "one", "two", "three", "four", "five", "seven", "nine"]
        assert np.array_equal(d["x"], x) and np.array_equal(d["y"], y)
    monkeypatch.setattr(spoken, "PER_CLASS", 6)
    with pytest.raises(SystemExit, match=r"5 distinct images of zero \(digit 0\); 6 are needed"):
        spoken.select(root)
    _write_wav(root / "7_bob_2.wav", _tone(1000.0), rate=16000)
    with pytest.raises(SystemExit, match=r"7_bob_2\.wav is 1 channel\(s\), 16-bit, 16000 Hz; the recordings are mono"):
        spoken.select(root)
    _write_wav(root / "7_bob_2.wav", voice(6, 2, 1))
    (root / "9_ann_1.wav").unlink()
    with pytest.raises(SystemExit, match=r"9_ann_1\.wav is missing \(pass the copy's recordings/ folder\)"):
        spoken.select(root)
    with pytest.raises(SystemExit, match=r"nowhere is not a folder"):
        spoken.select(tmp_path / "nowhere")


def test_the_vae_round_trip_ratio_is_the_held_out_images_own_ratio_for_a_lossless_vae_and_grows_with_loss():
    import torch

    rt = _load("vae_roundtrip")
    g = torch.Generator().manual_seed(0)
    train_x = torch.rand(200, 1, 4, 4, generator=g) * 2 - 1
    held_x = torch.rand(40, 1, 4, 4, generator=g) * 2 - 1
    held_y = torch.arange(40) % 2
    nn = rt.nn_rms(held_x, train_x)[0]
    exact = rt.class_ratios(lambda x: x, train_x, held_x, held_y, 2)
    want = [float(nn[held_y == c].mean() / nn.mean()) for c in range(2)]
    assert exact == pytest.approx(want, rel=1e-9)
    assert sum(exact) / 2 == pytest.approx(1.0, rel=1e-9)  # equal class sizes: the two ratios average to 1
    noise = torch.randn(held_x.shape, generator=g)
    lossy = rt.class_ratios(lambda x: (x + 0.8 * noise).clamp(-1, 1), train_x, held_x, held_y, 2)
    assert min(lossy) > max(exact) + 0.1  # a round trip that adds noise leaves every class farther from the data

