"""Hostile inputs: corrupt safetensors files, non-finite weights and outputs, symlink loops, outputs that cannot
be written. Each is one line on stderr with its documented exit code (docs/ci.md), and nothing is left
half-written: no temporary file, no partial report."""
from __future__ import annotations

import errno
import os
import shutil
import struct
import subprocess
import threading
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from collapsecheck.cli import cli
from helpers_models import tiny_class_unet

FAST = ["--seeds", "4", "--steps", "4", "--guidance", "1,2", "--no-lpips", "--no-posterior", "--no-recovery", "-q"]
HEALTHY = ["--model", "helpers_gate:healthy_unsteerable"]


def scan(*args, timeout: float = 120.0):
    """The CLI's scan in a thread: a hang fails the test instead of blocking the suite."""
    box = {}
    worker = threading.Thread(target=lambda: box.update(res=CliRunner().invoke(cli, ["scan", *map(str, args)])),
                              daemon=True)
    worker.start()
    worker.join(timeout)
    assert not worker.is_alive(), f"scan {args} did not finish in {timeout:g} s"
    return box["res"]


def one_line(res, code: int) -> str:
    lines = res.output.strip().splitlines()
    assert res.exit_code == code, res.output
    assert len(lines) == 1 and "Traceback" not in res.output, res.output
    return lines[0]


def leftovers(folder: Path) -> list[str]:
    """Temporary files or folders of an atomic write left in ``folder`` (or below it)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.name.startswith(".") or ".tmp" in p.name)


@pytest.fixture
def ckpt(tmp_path):
    path = tmp_path / "weights.bin"  # --model ignores it; its name is the CHECKPOINT argument
    path.write_bytes(b"0")
    return path


# ------------------------------------------------------------------------------------ safetensors files


def _safetensors_prefix(path: Path, length: int, body: bytes = b"", size: int = 0) -> Path:
    with path.open("wb") as handle:
        handle.write(struct.pack("<Q", length) + body)
        if size:
            handle.truncate(size)  # sparse: the file is large without taking the space
    return path


def test_a_truncated_safetensors_file_is_one_line_exit_3(tmp_path):
    path = _safetensors_prefix(tmp_path / "model.safetensors", 10_000, b'{"a": ')
    line = one_line(scan(path, "--classes", "0-1", *FAST), 3)
    assert "model.safetensors" in line and "10000" in line and "truncated" in line


def test_a_safetensors_file_cut_short_in_its_tensor_data_is_one_line_exit_3(tmp_path):
    from helpers_models import save_bare_safetensors

    path = save_bare_safetensors(tiny_class_unet(), tmp_path / "model.safetensors")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    line = one_line(scan(path, *FAST), 3)
    assert "model.safetensors" in line and "truncated" in line


def test_an_oversized_safetensors_header_is_refused_without_reading_it(tmp_path):
    path = _safetensors_prefix(tmp_path / "model.safetensors", 150_000_000, b"{", size=200_000_000)
    line = one_line(scan(path, *FAST), 3)
    assert "150000000" in line and "100 MB" in line and "model.safetensors" in line


def test_a_safetensors_header_that_is_not_json_is_one_line_exit_3(tmp_path):
    path = _safetensors_prefix(tmp_path / "model.safetensors", 16, b"this is not json" + b"\0" * 32)
    line = one_line(scan(path, *FAST), 3)
    assert "model.safetensors" in line and "JSON" in line


# ------------------------------------------------------------------------------- non-finite weights


@pytest.mark.parametrize("value, word", [(float("nan"), "NaN"), (float("inf"), "infinite")])
@pytest.mark.parametrize("layout", ["folder", "file"])
def test_non_finite_weights_are_refused_at_load_naming_the_tensor(tmp_path, value, word, layout):
    from helpers_models import save_bare_safetensors

    unet = tiny_class_unet()
    name = "down_blocks.1.resnets.0.conv1.weight"
    with torch.no_grad():
        unet.get_parameter(name).view(-1)[3] = value
    if layout == "folder":
        unet.save_pretrained(str(tmp_path / "model"))
        path = tmp_path / "model"
    else:
        path = save_bare_safetensors(unet, tmp_path / "model.safetensors")
    line = one_line(scan(path, *FAST), 3)
    assert name in line and word in line and "1 of" in line


# ------------------------------------------------------------------------------ non-finite outputs


@pytest.mark.parametrize("model", ["helpers_hostile:nan_midway", "helpers_hostile:inf_midway"])
def test_non_finite_outputs_mid_scan_are_one_line_exit_3_and_no_report(ckpt, tmp_path, model):
    out = tmp_path / "out"
    res = scan(ckpt, "--model", model, *FAST, "--json", out / "r.json", "--report-dir", out / "report")
    line = one_line(res, 3)
    assert "NaN or infinite" in line
    assert not out.exists()


# ------------------------------------------------------------------------------------ symlink loops


def _looping_folder(root: Path, kind: str) -> Path:
    root.mkdir()
    if kind == "self":  # the weight file is a link to itself
        tiny_class_unet().save_config(str(root))
        os.symlink("diffusion_pytorch_model.safetensors", root / "diffusion_pytorch_model.safetensors")
    elif kind == "cycle":  # unet/ links back to the folder above it
        os.symlink("..", root / "unet")
        (root / "model_index.json").write_text('{"_class_name": "DDPMPipeline"}')
    else:  # a pair of links to each other beside a real model folder's files
        tiny_class_unet().save_pretrained(str(root / "sub"))
        os.symlink("b", root / "a")
        os.symlink("a", root / "b")
        os.symlink("..", root / "sub" / "up")
    return root


@pytest.mark.parametrize("kind", ["self", "cycle", "pair"])
def test_a_symlink_loop_in_a_model_folder_is_one_line_and_no_hang(tmp_path, kind):
    path = _looping_folder(tmp_path / "model", kind)
    res = scan(path, *FAST, timeout=120)
    line = one_line(res, 2)
    assert ("symlinks that lead nowhere" in line) if kind != "cycle" else ("unet holds no" in line)


def test_a_symlink_loop_around_the_checkpoint_itself_is_one_usage_line(tmp_path):
    os.symlink("loop", tmp_path / "loop")
    line = one_line(scan(tmp_path / "loop", *FAST), 2)
    assert "loop" in line and "symlink that leads nowhere" in line


# ------------------------------------------------------------------------ outputs that cannot be written


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


class _FillsUp:
    """A file object that writes half of what it is given, then fails as a full disk does."""

    def __init__(self, handle):
        self.handle = handle

    def write(self, data):
        self.handle.write(data[: len(data) // 2])
        self.handle.flush()
        _enospc()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.close()


@pytest.mark.parametrize("target", ["json", "junit", "report-dir"])
def test_a_full_disk_is_one_line_exit_2_and_leaves_nothing_half_written(ckpt, tmp_path, monkeypatch, target):
    import pathlib

    from collapsecheck.report import jsonfile

    real_fdopen = os.fdopen
    monkeypatch.setattr(jsonfile.os, "fdopen", lambda *a, **k: _FillsUp(real_fdopen(*a, **k)))
    real_write = pathlib.Path.write_bytes

    def fills_up(self, data):
        real_write(self, data[: len(data) // 2])
        _enospc()

    monkeypatch.setattr(pathlib.Path, "write_bytes", fills_up)
    monkeypatch.setattr(pathlib.Path, "write_text", lambda self, data, **k: fills_up(self, data.encode()))
    out = tmp_path / "out"
    path = out / {"json": "r.json", "junit": "j.xml", "report-dir": "report"}[target]
    line = one_line(scan(ckpt, *HEALTHY, *FAST, f"--{target}", path), 2)
    assert "No space left on device" in line and str(path) in line
    assert not out.exists() and leftovers(tmp_path) == []


def test_a_full_disk_at_the_rename_leaves_no_temporary_file(ckpt, tmp_path, monkeypatch):
    from collapsecheck.report import jsonfile

    monkeypatch.setattr(jsonfile.os, "replace", _enospc)
    path = tmp_path / "r.json"
    line = one_line(scan(ckpt, *HEALTHY, *FAST, "--json", path), 2)
    assert "r.json" in line and not path.exists() and leftovers(tmp_path) == []


def test_a_read_only_output_folder_at_write_time_is_one_line_exit_2(ckpt, tmp_path, monkeypatch):
    """The folder was writable when checked and turned read-only (remounted, say) before the write."""
    from collapsecheck.report import folder as report_folder
    from collapsecheck.report import jsonfile

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(jsonfile.tempfile, "mkstemp", read_only)
    monkeypatch.setattr(report_folder.tempfile, "mkdtemp", read_only)
    for flag, name in (("--json", "r.json"), ("--report-dir", "report")):
        line = one_line(scan(ckpt, *HEALTHY, *FAST, flag, tmp_path / "out" / name), 2)
        assert "Read-only file system" in line and name in line
        assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_output_folder_is_one_usage_line_before_the_scan(ckpt, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        line = one_line(scan(ckpt, *HEALTHY, *FAST, "--json", folder / "r.json"), 2)
    finally:
        folder.chmod(0o755)
    assert "not writable" in line and list(folder.iterdir()) == []


# ------------------------------------------------- real file systems: a tiny tmpfs (where it can be mounted)


@pytest.fixture
def tmpfs(tmp_path):
    """A 256 KiB tmpfs mounted at ``tmp_path / 'fs'``; skipped where mounting is not allowed (not root)."""
    mount = tmp_path / "fs"
    mount.mkdir()
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def _fill(mount: Path) -> None:
    """Fill the file system to its last byte (a new file's name still fits: tmpfs counts no blocks for it)."""
    fd = os.open(mount / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)


def test_a_really_full_disk_is_one_line_exit_2_and_nothing_half_written(ckpt, tmpfs):
    _fill(tmpfs)
    before = sorted(p.name for p in tmpfs.iterdir())
    for flag, name in (("--json", "r.json"), ("--report-dir", "report")):
        line = one_line(scan(ckpt, *HEALTHY, *FAST, flag, tmpfs / name), 2)
        assert "No space left on device" in line
        assert sorted(p.name for p in tmpfs.iterdir()) == before


def test_a_really_read_only_file_system_is_one_usage_line(ckpt, tmpfs):
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    line = one_line(scan(ckpt, *HEALTHY, *FAST, "--json", tmpfs / "r.json"), 2)
    assert "not writable" in line and list(tmpfs.iterdir()) == []


def test_every_exit_code_of_this_suite_is_documented():
    text = (Path(__file__).resolve().parents[1] / "docs" / "ci.md").read_text()
    for case in ("truncated", "oversized", "not JSON", "NaN or Inf weights", "NaN or Inf outputs", "symlink loop",
                 "read-only", "full"):
        assert case in text, case


def test_a_full_disk_under_the_trend_cache_is_one_line_exit_2(tmp_path, monkeypatch):
    from collapsecheck.report import jsonfile

    run = tmp_path / "run"
    run.mkdir()
    for step in (100, 200):
        (run / f"model-step{step}.safetensors").write_bytes(b"0")  # --model ignores them; their names are the steps
    monkeypatch.setattr(jsonfile.os, "replace", _enospc)
    cache = tmp_path / "cache"
    res = CliRunner().invoke(cli, ["trend", str(run), *HEALTHY, *FAST, "--cache-dir", str(cache)])
    line = one_line(res, 2)
    assert "No space left on device" in line and "--no-cache" in line
    assert leftovers(tmp_path) == [] and list(cache.iterdir()) == []
