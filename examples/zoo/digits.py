"""sklearn's 8x8 digits as a diffusion training set, with a fixed held-out split.

Images are kept at 8x8 with one channel and scaled from 0..16 to [-1, 1] as x / 8 - 1.

The split is fixed (seed 0, stratified): for every class, ``HELDOUT_PER_CLASS`` images
are held out.  Ground-truth scripts use the held-out images as the real-data diversity
reference (within-class spread) and as unseen conditions for image-conditioned models.
"""

from __future__ import annotations

from typing import Tuple

import torch

SPLIT_SEED = 0
HELDOUT_PER_CLASS = 20
NUM_CLASSES = 10


def load_digits_tensor() -> Tuple[torch.Tensor, torch.Tensor]:
    """All 1797 digits: images (N, 1, 8, 8) float32 in [-1, 1], labels (N,) int64."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 8.0 - 1.0
    y = torch.tensor(d.target, dtype=torch.long)
    return x, y


def split_indices() -> Tuple[torch.Tensor, torch.Tensor]:
    """(train_idx, heldout_idx) into ``load_digits_tensor()``; fixed and stratified."""
    _, y = load_digits_tensor()
    g = torch.Generator().manual_seed(SPLIT_SEED)
    perm = torch.randperm(len(y), generator=g)
    held = []
    for c in range(NUM_CLASSES):
        members = perm[y[perm] == c]
        held.append(members[:HELDOUT_PER_CLASS])
    held_idx = torch.sort(torch.cat(held)).values
    mask = torch.ones(len(y), dtype=torch.bool)
    mask[held_idx] = False
    train_idx = torch.nonzero(mask).squeeze(1)
    return train_idx, held_idx


def load_split(split: str = "train") -> Tuple[torch.Tensor, torch.Tensor]:
    """Images and labels of ``split`` in {"train", "heldout", "all"}."""
    x, y = load_digits_tensor()
    if split == "all":
        return x, y
    train_idx, held_idx = split_indices()
    idx = {"train": train_idx, "heldout": held_idx}[split]
    return x[idx], y[idx]


def per_class_subset(images: torch.Tensor, labels: torch.Tensor, k: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """The first ``k`` images of every class (in the given order): a small, fixed subset."""
    keep = []
    for c in range(NUM_CLASSES):
        keep.append(torch.nonzero(labels == c).squeeze(1)[:k])
    idx = torch.cat(keep)
    return images[idx], labels[idx]


def one_per_class(images: torch.Tensor, labels: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """One image per class, classes 0..9 in order (used as scan conditions)."""
    return per_class_subset(images, labels, 1)


def lowres_condition(images: torch.Tensor) -> torch.Tensor:
    """The pixel-aligned condition of the concat recipes: 2x average-pool, nearest upsample back to 8x8."""
    small = torch.nn.functional.avg_pool2d(images, 2)
    return torch.nn.functional.interpolate(small, scale_factor=2, mode="nearest")


def pairwise_rms(samples: torch.Tensor) -> torch.Tensor:
    """Mean pairwise RMS distance over the first axis of (S, ...) (pairs i < j)."""
    s = samples.reshape(samples.shape[0], -1).double()
    d = torch.cdist(s, s) / (s.shape[1] ** 0.5)
    iu = torch.triu_indices(len(s), len(s), offset=1)
    return d[iu[0], iu[1]].mean().float()
