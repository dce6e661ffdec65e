"""Brute-force ground-truth measures for the digits zoo: pure functions on tensors and numbers.

Independent of collapsecheck's measures and verdicts on purpose (the ground truth calibrates them):
nothing here imports ``collapsecheck``.  Images are (N, 1, 8, 8) or (N, 64) float tensors in [-1, 1];
distances are RMS over pixels (L2 / sqrt(num_pixels)), so 0.125 is one grey level of the 0..16 data.

The label rules are named constants, documented where they are defined.
"""

from __future__ import annotations

import math
from typing import Dict, Optional, Sequence

import torch

# ------------------------------------------------------------------------------------ rules
# gt_collapse: from div_ratio at w = 1 (mean within-condition per-pixel variance of the samples,
# divided by the real within-class per-pixel variance).  Below COLLAPSED_BELOW the seed explains
# less than ~15% of the real variation; below AT_RISK_BELOW less than 40%.
GT_COLLAPSE_W = 1.0
COLLAPSED_BELOW = 0.15
AT_RISK_BELOW = 0.4

# learned_evidence (brute-force evidence of a working null branch), from the w = 0 samples:
# they look like data (nn_ratio <= NULL_NN_RATIO_MAX, i.e. no farther from the training set than
# held-out real digits are, with slack) AND cover the classes (class-histogram entropy, normalised
# by log 10, >= NULL_ENTROPY_MIN; a uniform histogram gives 1, one class gives 0).
NULL_NN_RATIO_MAX = 1.5
NULL_ENTROPY_MIN = 0.7

# gt_guidance: not_steerable if the recipe says the null branch was never trained; otherwise
# steerable if raising w from 1 to 3 does not lose adherence (allowing GUIDANCE_ADHERENCE_SLACK)
# and the w = 3 samples still look like data (nn_ratio <= GUIDANCE_NN_RATIO_MAX); else weak.
GUIDANCE_LOW_W = 1.0
GUIDANCE_HIGH_W = 3.0
GUIDANCE_ADHERENCE_SLACK = 0.02
GUIDANCE_NN_RATIO_MAX = 2.0

# copy_fraction: a sample is a copy of a training image when its nearest training image is closer
# than COPY_RMS (less than one grey level, 0.125, on average).
COPY_RMS = 0.1

NUM_CLASSES = 10


# ------------------------------------------------------------------------------------ measures
def flat(x: torch.Tensor) -> torch.Tensor:
    """(N, ...) -> (N, D) float64."""
    return x.reshape(x.shape[0], -1).double()


def mean_pixel_variance(x: torch.Tensor) -> float:
    """Per-pixel variance across the first axis (ddof=1), averaged over pixels."""
    f = flat(x)
    if f.shape[0] < 2:
        raise ValueError("need at least two samples for a variance")
    return float(f.var(dim=0, unbiased=True).mean())


def class_variances(images: torch.Tensor, labels: torch.Tensor, num_classes: int = NUM_CLASSES) -> torch.Tensor:
    """(num_classes,) mean per-pixel within-class variance (ddof=1) of real images."""
    return torch.tensor([mean_pixel_variance(images[labels == c]) for c in range(num_classes)], dtype=torch.float64)


def mean_pairwise_rms(x: torch.Tensor) -> float:
    """Mean RMS distance over pairs i < j of the first axis."""
    f = flat(x)
    n = f.shape[0]
    if n < 2:
        raise ValueError("need at least two samples for a pairwise distance")
    d = torch.cdist(f, f) / math.sqrt(f.shape[1])
    iu = torch.triu_indices(n, n, offset=1)
    return float(d[iu[0], iu[1]].mean())


def nn_rms(x: torch.Tensor, reference: torch.Tensor, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """(distance, index) of the nearest reference image of each row of ``x``; RMS distance."""
    f, r = flat(x), flat(reference)
    dists, idxs = [], []
    for i in range(0, f.shape[0], chunk):
        d = torch.cdist(f[i : i + chunk], r) / math.sqrt(f.shape[1])
        m = d.min(dim=1)
        dists.append(m.values)
        idxs.append(m.indices)
    return torch.cat(dists), torch.cat(idxs)


def nn_rms_excluding_self(x: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour RMS distance of each row of ``x`` to the other rows."""
    f = flat(x)
    d = torch.cdist(f, f) / math.sqrt(f.shape[1])
    d.fill_diagonal_(float("inf"))
    return d.min(dim=1).values


def normalized_entropy(labels: torch.Tensor, num_classes: int = NUM_CLASSES) -> float:
    """Entropy of the label histogram divided by log(num_classes): 1 uniform, 0 a single class."""
    counts = torch.bincount(labels.long().flatten(), minlength=num_classes).double()
    p = counts / counts.sum()
    p = p[p > 0]
    return float(-(p * p.log()).sum() / math.log(num_classes))


def pool4(x: torch.Tensor) -> torch.Tensor:
    """2x average pool of (N, 1, 8, 8) images -> (N, 16) (the information in a concat condition)."""
    return torch.nn.functional.avg_pool2d(x.reshape(-1, 1, 8, 8).double(), 2).reshape(x.shape[0], -1)


def pooled_rms(x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
    """Per-row RMS distance between the 4x4 average pools of ``x`` and ``cond`` (broadcast over rows)."""
    a, b = pool4(x), pool4(cond)
    return ((a - b) ** 2).mean(dim=1).sqrt()


def div_ratio(per_condition_variance: Sequence[float], reference_variance: Sequence[float]) -> float:
    """Mean over conditions of the sample variance, divided by the mean of the matching real variances."""
    v = torch.tensor(list(per_condition_variance), dtype=torch.float64)
    r = torch.tensor(list(reference_variance), dtype=torch.float64)
    return float(v.mean() / r.mean())


# ------------------------------------------------------------------------------------ labels
def gt_collapse(div_ratio_w1: float) -> str:
    if div_ratio_w1 < COLLAPSED_BELOW:
        return "collapsed"
    if div_ratio_w1 < AT_RISK_BELOW:
        return "at_risk"
    return "healthy"


def null_learned_evidence(nn_ratio_w0: float, null_class_entropy: float) -> bool:
    return bool(nn_ratio_w0 <= NULL_NN_RATIO_MAX and null_class_entropy >= NULL_ENTROPY_MIN)


def gt_guidance(null_learned: bool, adherence_low: float, adherence_high: float, nn_ratio_high: float) -> str:
    if not null_learned:
        return "not_steerable"
    if adherence_high >= adherence_low - GUIDANCE_ADHERENCE_SLACK and nn_ratio_high <= GUIDANCE_NN_RATIO_MAX:
        return "steerable"
    return "weak"


def rules() -> Dict[str, object]:
    """The rules as JSON-ready text and numbers."""
    return {
        "gt_collapse": (
            f"div_ratio at w={GT_COLLAPSE_W:g}: collapsed if < {COLLAPSED_BELOW}, at_risk if < {AT_RISK_BELOW}, "
            "else healthy"
        ),
        "learned_evidence": (
            f"nn_ratio at w=0 <= {NULL_NN_RATIO_MAX} and null_class_entropy >= {NULL_ENTROPY_MIN}"
        ),
        "gt_null_branch": "the recipe's expected_null_branch; agreement with learned_evidence reported",
        "gt_guidance": (
            "not_steerable if the recipe's null branch is not_learned; else steerable if "
            f"adherence(w={GUIDANCE_HIGH_W:g}) >= adherence(w={GUIDANCE_LOW_W:g}) - {GUIDANCE_ADHERENCE_SLACK} "
            f"and nn_ratio(w={GUIDANCE_HIGH_W:g}) <= {GUIDANCE_NN_RATIO_MAX}; else weak"
        ),
        "copy_fraction": f"fraction of samples whose nearest training image is closer than RMS {COPY_RMS}",
        "constants": {
            "GT_COLLAPSE_W": GT_COLLAPSE_W,
            "COLLAPSED_BELOW": COLLAPSED_BELOW,
            "AT_RISK_BELOW": AT_RISK_BELOW,
            "NULL_NN_RATIO_MAX": NULL_NN_RATIO_MAX,
            "NULL_ENTROPY_MIN": NULL_ENTROPY_MIN,
            "GUIDANCE_LOW_W": GUIDANCE_LOW_W,
            "GUIDANCE_HIGH_W": GUIDANCE_HIGH_W,
            "GUIDANCE_ADHERENCE_SLACK": GUIDANCE_ADHERENCE_SLACK,
            "GUIDANCE_NN_RATIO_MAX": GUIDANCE_NN_RATIO_MAX,
            "COPY_RMS": COPY_RMS,
        },
    }


def agreement(expected: Optional[str], got: str) -> Optional[bool]:
    """None when there is no expectation."""
    return None if expected is None else expected == got
