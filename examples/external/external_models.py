"""The external models checked by check_external.py and ground_truth.py, and how to get their files.

Nothing of the authors' repositories is committed here: ``prepare`` extracts their code (one commit)
and their checkpoints (the commits that added them) from a git directory of the repository: a
``git clone --mirror`` / ``git clone`` of the URL below, named by ``$BLAISE_GIT`` (a bare directory or
a clone's ``.git``), by default the offline mirror at /work/.mirror/.
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


def git_dir() -> Path:
    path = Path(os.environ.get("BLAISE_GIT", DEFAULT_GIT))
    if not path.exists():
        raise SystemExit(f"no git directory of {REPO_URL} at {path}: `git clone --mirror {REPO_URL} DIR` "
                         "and set BLAISE_GIT=DIR")
    return path


def _git(*args: str) -> bytes:
    return subprocess.run(["git", f"--git-dir={git_dir()}", *args], check=True, capture_output=True).stdout


def prepare(workdir: Path) -> Path:
    """Extract the authors' code (CODE_COMMIT) and every checkpoint into ``workdir``; returns the checkout."""
    checkout = workdir / "checkout"
    if not (checkout / "models" / "unet.py").is_file():
        checkout.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=io.BytesIO(_git("archive", CODE_COMMIT)), mode="r") as tar:
            tar.extractall(checkout, filter="data")
    for m in MODELS:
        target = workdir / m.filename
        if not target.is_file():
            target.write_bytes(_git("show", f"{m.commit}:{m.path}"))
    return checkout
