"""Each condition's seeds against its own cell of the training data (``--data-images DIR``), without labels.

The seed share judges a condition against the model's own grid, so a class narrow by nature (a CT slice on a flat
field, a forest seen from a satellite) reads collapsed in a healthy model. Here each data image is given to the
condition whose samples' mean (the centroid of its seeds at the verdict scale) lies nearest, and a condition's
*cell share* is

    cell_share_c = P(seeds_c) / R(cell_c)

R is a robust spread of the cell's images: the median over them of their mean squared distance per pixel to the
cell's pixel-wise median (about the variance per pixel for a Gaussian set). A few images of another class in a cell,
far away, do not move it as they move a variance (5% of far images pulled one cell's plain variance to half on the
zoo, docs/calibration.md round 31). P is the seeds' spread over pairs: the median over pairs of seeds of half their
mean squared distance per pixel (the variance per pixel for a Gaussian set too). A few seeds that leave a copied
image do not move it while most pairs are pairs of copies (16 seeds' plain variance read a copier's condition at
0.32 of its cell where the brute force's 48 seeds read 0.06 of its class, round 32; P reads 0.005). Nor does it read
seeds that stray by different amounts (a dot drawn small or large) as the narrower of them, as R does: on narrow
classes of strokes R read 16 seeds at 0.43-0.47 of their variance, the cells at 0.67-0.69 of theirs (round 34).

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


def pair_spread(seeds: torch.Tensor) -> Optional[float]:
    """The median over pairs of ``seeds``' images (S, D) of half their mean squared distance per pixel; None under
    MIN_CELL seeds. Two independent draws of a set with variance v per pixel lie 2 v apart in mean square, so for a
    Gaussian set this is v; it is 0 while more than about 71% of the seeds give one image (then most pairs are
    pairs of that image)."""
    if len(seeds) < MIN_CELL:
        return None
    seeds = seeds.double()
    # exact differences, not the matrix-product form, which reads identical images a little apart
    squared = torch.cdist(seeds, seeds, compute_mode="donot_use_mm_for_euclid_dist") ** 2 / seeds.shape[1]
    upper = torch.triu_indices(len(seeds), len(seeds), 1)
    return float(squared[upper[0], upper[1]].median() / 2)


def seed_moments(samples: torch.Tensor) -> tuple[torch.Tensor, list[Optional[float]]]:
    """The conditions' centroids (C, D) and their seeds' spreads over pairs (:func:`pair_spread`; None under
    MIN_CELL seeds), from ``samples`` (C, S, channels, H, W)."""
    seeds = reduced(samples)
    return seeds.double().mean(1).float(), [pair_spread(x) for x in seeds]


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
    """Each condition's cell share, the seeds' spread over the cell's robust spread; None where either is unknown or
    the cell's spread is not positive."""
    return [w / s if w is not None and s is not None and s > 0 else None for w, s in zip(seed_spreads, spreads)]


def cell_shares(samples: torch.Tensor, data: torch.Tensor) -> tuple[list[Optional[float]], list[int]]:
    """Each condition's cell share and its cell's size. ``samples``: (C, S, channels, H, W) at the verdict scale;
    ``data``: the data images reduced (N, D; :func:`reduced_data` of chunks at the samples' size)."""
    centroids, seed_spreads = seed_moments(samples)
    spreads, sizes = cell_spreads(centroids, data)
    return shares_of(seed_spreads, spreads), sizes
