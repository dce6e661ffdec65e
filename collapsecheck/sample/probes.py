"""Where along the sampling trajectory the null branch is probed. Pure; no network."""
from __future__ import annotations

import torch

from ..model.schedule import Schedule

#: with every condition scanned (all classes), null-branch probes sit at the DDIM steps nearest these
#: alpha-bars (low noise); with a sample of conditions (images, embeddings), at these (high noise)
NULL_PROBE_ALPHA_BARS_COMPLETE = (0.9, 0.97)
NULL_PROBE_ALPHA_BARS_SAMPLED = (0.05, 0.15)


def null_probe_steps(schedule: Schedule, timesteps: torch.Tensor, complete: bool) -> list[int]:
    """DDIM step indices at which the null branch is compared with the conditions.

    A learned null is the posterior mixture ``sum_c p(c | x_t) eps_c`` at every noise level. With every
    condition of the model in the comparison (all classes) that holds at any noise, so the probes span
    the trajectory's ends: the first step, the steps nearest alpha-bar 0.9 and 0.97, and the last
    step, where the conditions' predictions agree most closely and an untrained null stands out most.
    With a sample of conditions (images, embeddings) the sample's hull covers the posterior only where
    it is broad, at high noise, so the probes sit there.
    """
    K = len(timesteps)
    if K < 3:
        return list(range(K))
    abar = schedule.alpha_bar(timesteps)
    nearest = lambda a: int((abar - a).abs().argmin())  # noqa: E731
    if complete:
        return sorted({0, K - 1} | {nearest(a) for a in NULL_PROBE_ALPHA_BARS_COMPLETE})
    return sorted({min(max(nearest(a), 1), K - 2) for a in NULL_PROBE_ALPHA_BARS_SAMPLED})
