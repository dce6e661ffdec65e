"""Models by name: ``collapsecheck scan org/name`` reads a Hugging Face hub id from the local HF cache, offline.

The cache here is built with huggingface_hub's real layout: ``models--org--name/refs/<ref>`` holding a commit,
``snapshots/<commit>/`` holding symlinks into ``blobs/``; the folders in it are written with ``save_pretrained``.
Every test runs with the network refused (sockets and huggingface_hub's HTTP client raise) and without
``HF_HUB_OFFLINE``, so nothing can rely on offline mode to stay offline.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

from collapsecheck.cli import cli
from collapsecheck.errors import UsageError
from collapsecheck.load.dispatch import load_checkpoint
from collapsecheck.load.hub import fetch_command, hub_cache_dir

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
REPO_ID = "tiny-org/digits"
MAIN = "1" * 8 + "a" * 32  # the commit refs/main names: examples/digits-healthy
NODROP = "2" * 8 + "b" * 32  # the commit of refs/nodrop (a branch): examples/digits-nodrop, guidance not steerable


def _save_pretrained(example: Path, snapshot: Path) -> None:
    from diffusers import DDIMScheduler, UNet2DModel

    UNet2DModel.from_pretrained(str(example / "unet"), local_files_only=True).save_pretrained(str(snapshot / "unet"))
    DDIMScheduler.from_pretrained(str(example / "scheduler"), local_files_only=True).save_pretrained(
        str(snapshot / "scheduler"))


def _into_blobs(storage: Path, snapshot: Path) -> None:
    """Move each file of the snapshot into ``blobs/<sha256>`` and leave a relative symlink, as the hub cache does."""
    (storage / "blobs").mkdir(exist_ok=True)
    for file in sorted(p for p in snapshot.rglob("*") if p.is_file()):
        blob = storage / "blobs" / hashlib.sha256(file.read_bytes()).hexdigest()
        if not blob.exists():
            shutil.move(str(file), str(blob))
        else:
            file.unlink()
        file.symlink_to(os.path.relpath(blob, file.parent))


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory) -> Path:
    cache = tmp_path_factory.mktemp("hf") / "hub"
    storage = cache / ("models--" + REPO_ID.replace("/", "--"))
    for commit, example, ref in ((MAIN, "digits-healthy", "main"), (NODROP, "digits-nodrop", "nodrop")):
        snapshot = storage / "snapshots" / commit
        _save_pretrained(EXAMPLES / example, snapshot)
        _into_blobs(storage, snapshot)
        (storage / "refs").mkdir(exist_ok=True)
        (storage / "refs" / ref).write_text(commit)
    return cache


@pytest.fixture
def offline_world(hub_cache, monkeypatch):
    """HF_HUB_CACHE at the fake cache, HF_HUB_OFFLINE unset, and every connection attempt recorded and refused."""
    import httpx2
    from huggingface_hub import constants

    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args[1:2])
        raise OSError("network refused by the test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(httpx2.Client, "send", refuse)
    monkeypatch.setattr(httpx2.AsyncClient, "send", refuse)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_CACHE", str(hub_cache))
    yield attempts
    assert attempts == [], f"a network connection was attempted: {attempts}"


def _scan(tmp_path: Path, *args: str):
    out = tmp_path / "scan.json"
    res = CliRunner().invoke(cli, ["scan", REPO_ID, "--mode", "fast", "--no-lpips", "-q", "--json", str(out),
                                   "--fail-on", "not_steerable", *args])
    return res, (json.loads(out.read_text()) if out.exists() else None)


@pytest.mark.parametrize("revision, commit, guidance, exit_code", [
    (None, MAIN, "steerable", 0),          # refs/main
    ("nodrop", NODROP, "steerable", 0),  # a ref file (no dropout: w = 3 still raises adherence; issue 12)
    (MAIN, MAIN, "steerable", 0),            # a commit
])
def test_scan_a_hub_id_from_the_cache_end_to_end(offline_world, tmp_path, revision, commit, guidance, exit_code):
    res, data = _scan(tmp_path, *(["--revision", revision] if revision else []))
    assert res.exit_code == exit_code, res.output
    assert (data["verdict"], data["guidance"]["verdict"]) == ("healthy", guidance)
    assert data["checkpoint"]["path"] == REPO_ID
    note = data["checkpoint"]["notes"][0]
    assert note.startswith(f"Hugging Face hub id {REPO_ID}, revision {revision or 'main'}: scanned the cached "
                           f"snapshot {commit}")
    snapshot = Path(os.environ["HF_HUB_CACHE"]) / "models--tiny-org--digits" / "snapshots" / commit
    assert data["checkpoint"]["content_hash"] == load_checkpoint(snapshot).content_hash


def test_a_hub_id_not_in_the_cache_is_one_line_naming_the_fetch_command(offline_world):
    res = CliRunner().invoke(cli, ["scan", "tiny-org/missing", "-q"])
    assert res.exit_code == 2
    lines = res.output.strip().splitlines()
    assert len(lines) == 1, res.output
    assert "tiny-org/missing is not a local path" in lines[0]
    assert f"`{fetch_command('tiny-org/missing', 'main')}`" in lines[0]
    assert "then rerun" in lines[0]


def test_a_revision_not_in_the_cache_names_the_cached_ones_and_the_fetch_command(offline_world):
    with pytest.raises(UsageError) as info:
        load_checkpoint(REPO_ID, revision="v2")
    message = str(info.value)
    assert "\n" not in message
    assert "at revision v2 is not in the local cache" in message
    assert f"main -> {MAIN[:12]}" in message and f"nodrop -> {NODROP[:12]}" in message
    assert message.endswith(f"fetch it with `{fetch_command(REPO_ID, 'v2')}`, then rerun")
    assert fetch_command(REPO_ID, "v2").endswith(f"download {REPO_ID} --revision v2")


def test_the_fetch_command_is_one_the_installed_huggingface_hub_provides():
    from importlib import metadata

    scripts = {e.name for e in metadata.distribution("huggingface_hub").entry_points}
    tool = fetch_command(REPO_ID, "main").split()[0]
    assert tool in scripts
    assert fetch_command(REPO_ID, "main") == f"{tool} download {REPO_ID}"


def test_a_local_path_wins_over_a_hub_id_of_the_same_spelling(offline_world, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copytree(EXAMPLES / "digits-nodrop", tmp_path / "tiny-org" / "digits")
    local = load_checkpoint(REPO_ID)
    assert not any("Hugging Face" in note for note in local.notes)
    assert local.content_hash == load_checkpoint(EXAMPLES / "digits-nodrop").content_hash
    with pytest.raises(UsageError, match=r"^--revision applies to a Hugging Face hub id .*is a local path$"):
        load_checkpoint(REPO_ID, revision="main")


def test_a_missing_local_path_that_is_no_hub_id_is_still_a_missing_path(offline_world, tmp_path):
    with pytest.raises(UsageError, match=r"^checkpoint path .* does not exist$"):
        load_checkpoint(tmp_path / "nothing" / "here" / "at-all")
    with pytest.raises(UsageError, match=r"^checkpoint path .* does not exist$"):
        load_checkpoint("a--b/c")  # the hub forbids "--" in ids


def test_the_cache_folder_follows_huggingface_hubs_environment(monkeypatch, tmp_path):
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    assert hub_cache_dir() == Path.home() / ".cache" / "huggingface" / "hub"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert hub_cache_dir() == tmp_path / "xdg" / "huggingface" / "hub"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    assert hub_cache_dir() == tmp_path / "home" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    assert hub_cache_dir() == tmp_path / "cache"


def test_an_incomplete_cached_snapshot_is_one_line_naming_the_fetch_command(offline_world, hub_cache):
    pytest.importorskip("huggingface_hub._tree_cache")  # huggingface_hub versions that know a snapshot's files
    storage = hub_cache / "models--tiny-org--partial"
    commit = "3" * 40
    _save_pretrained(EXAMPLES / "digits-healthy", storage / "snapshots" / commit)
    (storage / "refs").mkdir()
    (storage / "refs" / "main").write_text(commit)
    files = {p.relative_to(storage / "snapshots" / commit).as_posix(): {"size": p.stat().st_size, "blob_id": "0" * 40}
             for p in (storage / "snapshots" / commit).rglob("*") if p.is_file()}
    files["unet/diffusion_pytorch_model-00002-of-00002.safetensors"] = {"size": 1, "blob_id": "1" * 40}
    (storage / "trees").mkdir()
    (storage / "trees" / f"{commit}.json").write_text(json.dumps({"format_version": 1, "files": files}))
    with pytest.raises(UsageError) as info:
        load_checkpoint("tiny-org/partial")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("the cached snapshot of the Hugging Face model tiny-org/partial is incomplete")
    assert "00002-of-00002" in message
    assert message.endswith(f"fetch it with `{fetch_command('tiny-org/partial', 'main')}`, then rerun")
