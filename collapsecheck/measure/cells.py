"""Each condition's seeds against its own cell of the training data (``--data-images DIR``), without labels.

The seed share judges a condition against the model's own grid, so a class narrow by nature (a CT slice on a flat
field, a forest seen from a satellite) reads collapsed in a healthy model. Here each data image is given to the
condition whose samples' mean (the centroid of its seeds at the verdict scale) lies nearest, and a condition's
*cell share* is

    cell_share_c = R(seeds_c) / R(cell_c)

where R is a robust spread: the median over a set of images of their mean squared distance per pixel to the set's
pixel-wise median (about the variance per pixel for a Gaussian set). A few images of another class in a cell, far
away, do not move it as they move a variance (5% of far images pulled one cell's plain variance to half on the zoo,
docs/calibration.md round 31); a few seeds that leave a copied image do not either (16 seeds' plain variance read a
copier's condition at 0.24 of its class where 48 seeds read 0.06, round 32).

On the scale of the zoos' brute force (seed variance over the class's variance: collapsed under 0.15), without its
labels: where the conditions are the data's classes, a condition's cell is mostly its class. Where classes overlap
the cells are tighter than the classes and the share overshoots (up to 25 times on satellite tiles), so it is read
only as relief for a condition the seed share calls collapsed (:func:`~collapsecheck.verdict.data.narrow_by_nature`).

Images and samples are compared at most CELL_SIDE pixels a side (area averages, float32: 12 KB an RGB image), which
keeps the data held in memory small for large images. A cell with fewer than MIN_CELL images, or a condition with
fewer seeds, has no share (None).
"""
from __future__ import annotations

from typing import Iterable, Optional

import torch
import torch.nn.functional as F

#: images and samples are area-averaged to at most this many pixels a side before they are compared
CELL_SIDE = 32
#: a cell with fewer data images than this, or a condition with fewer seeds, has no share
MIN_CELL = 5


def reduced(images: torch.Tensor) -> torch.Tensor:
    """``images`` (..., channels, H, W) area-averaged to at most CELL_SIDE a side, flattened to (..., D), float32
    (12 KB an RGB image: the cells hold every data image so)."""
    lead, (h, w) = images.shape[:-3], images.shape[-2:]
    flat = images.reshape(-1, *images.shape[-3:]).float()  # no float64 copy of a chunk of large images
    if max(h, w) > CELL_SIDE:
        flat = F.adaptive_avg_pool2d(flat, (min(h, CELL_SIDE), min(w, CELL_SIDE)))
    return flat.reshape(*lead, -1)


def robust_spread(cell: torch.Tensor) -> Optional[float]:
    """The median over ``cell``'s images (N, D) of their mean squared distance to the pixel-wise median; None
    under MIN_CELL images."""
    if len(cell) < MIN_CELL:
        return None
    cell = cell.double()
    return float(((cell - cell.median(0).values) ** 2).mean(1).median())


def seed_moments(samples: torch.Tensor) -> tuple[torch.Tensor, list[Optional[float]]]:
    """The conditions' centroids (C, D) and their seeds' robust spreads (None under MIN_CELL seeds), from
    ``samples`` (C, S, channels, H, W)."""
    seeds = reduced(samples)
    return seeds.double().mean(1).float(), [robust_spread(x) for x in seeds]


def reduced_data(data: Iterable[torch.Tensor]) -> torch.Tensor:
    """The data images of the chunks ``data`` (n, channels, H, W) reduced by :func:`reduced`, together (N, D)."""
    chunks = [reduced(chunk) for chunk in data]
    return torch.cat(chunks) if chunks else torch.zeros((0, 0))


def cell_spreads(centroids: torch.Tensor, images: torch.Tensor) -> tuple[list[Optional[float]], list[int]]:
    """Each condition's cell (the data ``images`` (N, D) nearest its centroid) by its robust spread and size."""
    if len(images) == 0:
        return [None] * len(centroids), [0] * len(centroids)
    cell = torch.cdist(images, centroids).argmin(1)
    return ([robust_spread(images[cell == c]) for c in range(len(centroids))],
            [int((cell == c).sum()) for c in range(len(centroids))])


def shares_of(seed_spreads: list[Optional[float]], spreads: list[Optional[float]]) -> list[Optional[float]]:
    """Each condition's cell share, the seeds' spread over the cell's; None where either is unknown or the cell's
    spread is not positive."""
    return [w / s if w is not None and s is not None and s > 0 else None for w, s in zip(seed_spreads, spreads)]


def cell_shares(samples: torch.Tensor, data: torch.Tensor) -> tuple[list[Optional[float]], list[int]]:
    """Each condition's cell share and its cell's size. ``samples``: (C, S, channels, H, W) at the verdict scale;
    ``data``: the data images reduced (N, D; :func:`reduced_data` of chunks at the samples' size)."""
    centroids, seed_spreads = seed_moments(samples)
    spreads, sizes = cell_spreads(centroids, data)
    return shares_of(seed_spreads, spreads), sizes
