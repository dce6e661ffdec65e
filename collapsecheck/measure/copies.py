"""``--train-images DIR``: which samples reproduce a training image, and which images they copy.

The yardstick is the training set itself: each training image's distance to its nearest other training
image (leave-one-out), and their median ``m``. A sample *reproduces* training image j when j is its nearest
training image and their distance is below ``copy_distance_fraction * m``: it is markedly closer to j than
the training images are to each other. (A model that generalises draws samples about as far from the
training set as the training images are from one another, so the whole median would count half of a
perfect model's samples; a fraction of it counts copies.) Measured twice, with pixel RMS distance (images
in [-1, 1]) and with LPIPS when it is available; each is reported on its own, and a sample counts as a copy
(``copies``, the findings) when every measured distance says so and names the same image: on small images
LPIPS, which sees them upsampled, alone finds near misses that pixel distance does not confirm.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import torch

from ..record import Record
from ..thresholds import Thresholds


@dataclass
class CopiedImage(Record):
    name: str
    count: int  # how many of the condition's seeds reproduce it


@dataclass
class CopyCount(Record):
    """One condition's copies under one distance."""

    copies: int  # seeds whose sample reproduces a training image
    share: float  # copies / seeds
    images: list[CopiedImage] = field(default_factory=list)  # most copied first
    nearest: Optional[float] = None  # the smallest sample-to-training distance of the condition


@dataclass
class CopyMetric(Record):
    """The yardstick of one distance: the training set's median nearest-neighbour distance and the threshold."""

    metric: str  # pixel_rms or lpips
    train_median_nn: float
    threshold: float  # copy_distance_fraction * train_median_nn


@dataclass
class ConditionCopies(Record):
    index: int
    label: str
    seeds: int
    pixel_rms: CopyCount
    lpips: Optional[CopyCount] = None
    #: copies under every measured distance, to the same image (pixel RMS alone without LPIPS)
    copies: Optional[CopyCount] = None


@dataclass
class CopiesResult(Record):
    """The ``copies`` section of a scan result."""

    train_images: str  # the folder
    images: int  # how many training images
    resized_to: list[int]  # (H, W): every training image was resized to the sample resolution
    copy_distance_fraction: float
    metrics: list[CopyMetric]
    conditions: list[ConditionCopies]
    #: one line per condition with copies: "12 of 16 seeds reproduce training image dog_03.png (pixel RMS)"
    findings: list[str] = field(default_factory=list)


#: pixel distances are computed against this many images of ``b`` at a time (float64 copies stay small)
CROSS_CHUNK = 256


def pixel_rms_cross(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """RMS pixel distance between every image of ``a`` (A, ...) and of ``b`` (B, ...): (A, B) float64. As in
    :func:`collapsecheck.measure.pixel.pairwise_rms`, the Gram matrix is of images centred on one shared mean
    (``b``'s): distances do not change, and a sample that copies an image does not cancel catastrophically."""
    centre = b.flatten(1).double().mean(0).to(a.device)
    fa = a.flatten(1).double() - centre
    out = []
    for i in range(0, b.shape[0], CROSS_CHUNK):
        fb = b[i : i + CROSS_CHUNK].flatten(1).to(a.device).double() - centre
        d2 = fa.pow(2).sum(1)[:, None] + fb.pow(2).sum(1)[None, :] - 2.0 * fa @ fb.T
        out.append((d2.clamp_min(0.0) / fa.shape[1]).sqrt())
    return torch.cat(out, dim=1)


def median_nn(train_dist: torch.Tensor) -> float:
    """The median over training images of the distance to their nearest other training image."""
    d = train_dist.clone().double()
    d.fill_diagonal_(float("inf"))
    return float(d.min(1).values.median())


def nearest_hits(dist: torch.Tensor, threshold: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(hit, nearest image index, its distance) per sample of ``dist`` (S, N) sample-to-training distances."""
    nearest, which = dist.min(1)
    return nearest < threshold, which, nearest


def count_copies(hit: torch.Tensor, which: torch.Tensor, names: Sequence[str],
                 nearest: Optional[torch.Tensor] = None) -> CopyCount:
    """Copies among one condition's samples, from :func:`nearest_hits`."""
    counts = Counter(names[int(j)] for j, h in zip(which, hit) if h)
    images = [CopiedImage(name, n) for name, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    return CopyCount(copies=int(hit.sum()), share=float(hit.float().mean()), images=images,
                     nearest=None if nearest is None else float(nearest.min()))


def find_copies(samples: torch.Tensor, train: torch.Tensor, names: Sequence[str], labels: Sequence[str],
                th: Thresholds, folder: str, lpips_cross: Optional[Callable] = None) -> CopiesResult:
    """Copies per condition: ``samples`` (C, S, ch, H, W) and ``train`` (N, ch, H, W), all in [-1, 1].
    ``lpips_cross(a, b)`` -> (A, B) LPIPS, or None to measure pixel RMS alone."""
    c, s = samples.shape[:2]
    flat = samples.flatten(0, 1).cpu()
    measures = [("pixel_rms", pixel_rms_cross)] + ([("lpips", lpips_cross)] if lpips_cross is not None else [])
    metrics, hits = [], {}
    for name, cross in measures:
        m = median_nn(cross(train, train).cpu())
        metrics.append(CopyMetric(metric=name, train_median_nn=m, threshold=th.copy_distance_fraction * m))
        dist = cross(flat, train).cpu().reshape(c, s, -1)
        hits[name] = [nearest_hits(dist[i], metrics[-1].threshold) for i in range(c)]
    conditions = [condition_copies(i, labels[i], s, [h[i] for h in hits.values()], names) for i in range(c)]
    return CopiesResult(train_images=folder, images=train.shape[0], resized_to=list(train.shape[-2:]),
                        copy_distance_fraction=th.copy_distance_fraction, metrics=metrics, conditions=conditions,
                        findings=copy_findings(conditions))


def condition_copies(index: int, label: str, seeds: int, hits: list, names: Sequence[str]) -> ConditionCopies:
    """One condition's copies under each distance (pixel RMS, then LPIPS when measured) and under all of them."""
    counts = [count_copies(hit, which, names, nearest) for hit, which, nearest in hits]
    hit, which = hits[0][0].clone(), hits[0][1]
    for other_hit, other_which, _ in hits[1:]:
        hit &= other_hit & (other_which == which)
    return ConditionCopies(index=index, label=label, seeds=seeds, pixel_rms=counts[0],
                           lpips=counts[1] if len(counts) > 1 else None, copies=count_copies(hit, which, names))


def copy_findings(conditions: Sequence[ConditionCopies]) -> list[str]:
    """"label: 12 of 16 seeds reproduce training image dog_03.png (pixel RMS and LPIPS)", one line per
    condition with copies under every measured distance."""
    lines = []
    for c in conditions:
        count, how = c.copies, "pixel RMS and LPIPS" if c.lpips is not None else "pixel RMS"
        if not count.copies:
            continue
        shown = ", ".join(f"{im.name} ({im.count})" if len(count.images) > 1 else im.name for im in count.images[:3])
        more = f" and {len(count.images) - 3} more" if len(count.images) > 3 else ""
        noun = "image" if len(count.images) == 1 else "images"
        verb = "reproduces" if count.copies == 1 else "reproduce"
        lines.append(f"{c.label}: {count.copies} of {c.seeds} seeds {verb} training {noun} {shown}{more} ({how})")
    return lines
