"""The external models checked by check_external.py and ground_truth.py, and how to get their files.

Nothing of the authors' repositories is committed here: ``prepare`` extracts their code (one commit)
and their checkpoints (the commits that added them) from a git directory of the repository: a
``git clone --mirror`` / ``git clone`` of the URL below, named by ``$BLAISE_GIT`` (a bare directory or
a clone's ``.git``), by default the offline mirror at /work/.mirror/.  The second repository's
(``SOFIA_MODELS``, a latent model) come the same way from ``$SOFIA_GIT`` (``prepare_sofia``).
"""
from __future__ import annotations

import io
import os
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_URL = "https://github.com/Blaise143/stochastic-interpolant-diffusion"
DEFAULT_GIT = Path("/work/.mirror/Blaise143+stochastic-interpolant-diffusion/repo")
CODE_COMMIT = "24f25f60f0e7a42642257a1989de5abc8d4c29d5"  # HEAD at the time of the check; models/unet.py 7e3234a
WRAPPER = HERE / "blaise_flow.py"


@dataclass(frozen=True)
class ExternalModel:
    name: str
    commit: str  # the commit that holds the checkpoint
    path: str  # the checkpoint's path in that commit
    what: str  # what the authors' history says about it
    wrapper: Path = WRAPPER  # the --model entry point (module path; function ``build``)
    base: str = ""  # a fine-tune (finetune_external.py): the external model it starts from ...
    finetune_steps: int = 0  # ... and its number of steps; check_external.py scans it with --reference base

    @property
    def filename(self) -> str:
        return f"{self.name}.pth"


MODELS = (
    ExternalModel(
        "blaise-2fb58a3", "2fb58a3cd0e9ddc5148596a31022c3abda14be64", "cf_guidance_flow_model.pth",
        "2025-07-04, class-conditional flow matching on EMNIST digits; a 10% label drop existed in the "
        "trainer for a few hours on 2025-07-01 and was removed; whether this file was trained with it is "
        "not recorded"),
    ExternalModel(
        "blaise-a094c66", "a094c66daa2da6e48fea1524b6b5d249216b1511", "checkpoints/flow_model.pth",
        "2025-07-17 15:02 ('checkpoints added'), class-conditional; trainer without condition dropout; "
        "its label-embedding rows have norm ~10 (as at their N(0, 1) initialisation), the other two ~1.5-5"),
    ExternalModel(
        "blaise-b98096c", "b98096c7e029a9a6afb1cd376d5f3ca25a30c9ec", "checkpoints/flow_model.pth",
        "2025-07-17 19:58 ('cf-guided', the file at HEAD), class-conditional; the trainer at that commit "
        "passes labels on every batch: no condition dropout"),
)


# A second repository, by another author: a LATENT class-conditional flow model (VAE + flow network).
SOFIA_URL = "https://github.com/sofia-dominguezc/MNIST-diffusion"
SOFIA_DEFAULT_GIT = Path("/work/.mirror/sofia-dominguezc+MNIST-diffusion/repo")
SOFIA_COMMIT = "720f60d0229ede8cd2931370c7071eb327cd45b8"  # 2025-09-07, last commit with the MNIST latent pair
SOFIA_VAE_PATH = "parameters/MNIST/VarAutoEncoder.pth"
SOFIA_MODELS = (
    ExternalModel(
        "sofia-latent-720f60d", SOFIA_COMMIT, "parameters/MNIST/Diffusion.pth",
        "2025-08-28 ('trained MNIST and EMNIST models', unchanged until 2026-01-04), flow matching in the "
        "1x6x6 latent of a VAE trained on MNIST; the trainer zeroes the one-hot label with probability 0.1 "
        "(condition dropout) and the sampler's unconditional branch is that zero label",
        wrapper=HERE / "sofia_latent.py"),
    ExternalModel(
        "sofia-vit-88bc058", "88bc05803c987e40be4eacb48cf4bb14d7c58c5e", "parameters/MNIST/DiffusionViT.pth",
        "2026-01-04 (HEAD when checked), pixel-space ViT on MNIST predicting the clean image of the same "
        "flow; integer labels, -1 selects a learned null embedding; the trainer sets the label to -1 with "
        "probability 0.1 (condition dropout)",
        wrapper=HERE / "sofia_pixel.py"),
)
# DreamBooth-style fine-tunes of blaise-2fb58a3 with the authors' loss on ONE image per class (finetune_external.py):
# the external check's models that may have collapsed; made here, not by the authors
FINETUNES = tuple(
    ExternalModel(f"blaise-ft{steps}", CODE_COMMIT, "fine-tuned here", f"blaise-2fb58a3 fine-tuned {steps} steps on one "
                  "MNIST image per class with the authors' loss, labels on every batch (one run, saved along the way)",
                  base="blaise-2fb58a3", finetune_steps=steps)
    for steps in (25, 150, 600))
ALL_MODELS = MODELS + SOFIA_MODELS + FINETUNES
# the constructor arguments the author saved beside the weights (parameters/MNIST/*.pickle), read with
# pickletools, never unpickled; shared by the wrappers and sofia_ground_truth.py
SOFIA_FLOW_KWARGS = dict(dim=32, mult=4, n_layers=1, n_heads=3, head_dim=8, n_classes=10, z_shape=(1, 6, 6))
SOFIA_VAE_KWARGS = dict(dim1=16, dim2=32, mult=4, n_layers=3, n_heads=3, head_dim=6)
SOFIA_VIT_KWARGS = dict(in_channels=1, image_size=(28, 28), patch_size=7, dim=64, n_heads=4, n_layers=4,
                        mlp_ratio=4.0, n_classes=10)


def git_dir(env: str = "BLAISE_GIT", default: Path = DEFAULT_GIT, url: str = REPO_URL) -> Path:
    path = Path(os.environ.get(env, default))
    if not path.exists():
        raise SystemExit(f"no git directory of {url} at {path}: `git clone --mirror {url} DIR` and set {env}=DIR")
    return path


def _git(*args: str, where: Path | None = None) -> bytes:
    where = where or git_dir()
    return subprocess.run(["git", f"--git-dir={where}", *args], check=True, capture_output=True).stdout


def _extract(where: Path, commit: str, paths: list[str], into: Path) -> None:
    into.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(_git("archive", commit, *paths, where=where)), mode="r") as tar:
        tar.extractall(into, filter="data")


def prepare(workdir: Path) -> Path:
    """Extract the authors' code (CODE_COMMIT) and every checkpoint into ``workdir``; returns the checkout."""
    checkout = workdir / "checkout"
    if not (checkout / "models" / "unet.py").is_file():
        _extract(git_dir(), CODE_COMMIT, [], checkout)
    for m in MODELS:
        target = workdir / m.filename
        if not target.is_file():
            target.write_bytes(_git("show", f"{m.commit}:{m.path}"))
    return checkout


def prepare_sofia(workdir: Path) -> Path:
    """sofia-dominguezc/MNIST-diffusion into ``workdir``: ``src/`` at SOFIA_COMMIT (``sofia-checkout/``, the latent
    model's code), the HEAD code of the ViT (``sofia-head/``), the VAE and both checkpoints."""
    where = git_dir("SOFIA_GIT", SOFIA_DEFAULT_GIT, SOFIA_URL)
    checkout = workdir / "sofia-checkout"
    if not (checkout / "src" / "architectures.py").is_file():
        _extract(where, SOFIA_COMMIT, ["src"], checkout)
    head = workdir / "sofia-head"
    if not (head / "diffusion" / "architecture.py").is_file():
        _extract(where, SOFIA_MODELS[1].commit, ["diffusion", "utils", "vae"], head)
    vae = workdir / "sofia-vae.pth"
    if not vae.is_file():
        vae.write_bytes(_git("show", f"{SOFIA_COMMIT}:{SOFIA_VAE_PATH}", where=where))
    for m in SOFIA_MODELS:
        target = workdir / m.filename
        if not target.is_file():
            target.write_bytes(_git("show", f"{m.commit}:{m.path}", where=where))
    return checkout
