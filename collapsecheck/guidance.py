"""Guidance-side measures: where to probe the null branch, the adherence plug-in, and whether a
recovery probe brings diversity back. Pure helpers; the scanner runs the network."""
from __future__ import annotations

from typing import Callable, Optional

import torch

from .errors import UsageError
from .schedule import Schedule
from .verdict import COLLAPSE_ORDER

#: with every condition scanned (all classes), null-branch probes sit at the DDIM steps nearest these
#: alpha-bars (low noise); with a sample of conditions (images, embeddings), at these (high noise)
NULL_PROBE_ALPHA_BARS_COMPLETE = (0.9, 0.97)
NULL_PROBE_ALPHA_BARS_SAMPLED = (0.05, 0.15)

#: a probe that keeps less than this share of the w = 1 adherence does not count as working
RECOVERY_MIN_ADHERENCE = 0.8

Adherence = Callable[[torch.Tensor, object], torch.Tensor]


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


def load_adherence(spec: str) -> Adherence:
    """Load ``module:function`` or ``path/to/file.py:function``: the user's adherence metric.

    The function takes (samples (C, S, channels, H, W) in [-1, 1] on the CPU, the ConditionSet)
    and returns (C,) or (C, S) scores, higher = more adherent to the condition.
    """
    from .loader_custom import load_entry_point

    return load_entry_point(spec, "--adherence")


def adherence_scores(fn: Adherence, samples: torch.Tensor, conds) -> torch.Tensor:
    """(V, C) mean adherence per variant and condition from the user's metric."""
    out = []
    for v in range(samples.shape[0]):
        try:
            scores = torch.as_tensor(fn(samples[v].cpu(), conds), dtype=torch.float64)
        except Exception as exc:
            raise UsageError(f"--adherence function failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
        if scores.dim() == 2:
            scores = scores.mean(1)
        if scores.shape != (samples.shape[1],):
            raise UsageError(
                f"--adherence function returned shape {tuple(scores.shape)}; expected ({samples.shape[1]},) or "
                f"({samples.shape[1]}, {samples.shape[2]}) for {samples.shape[1]} conditions"
            )
        out.append(scores)
    return torch.stack(out)


def centroid_adherence(samples: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Built-in adherence: the share of each condition's samples whose nearest reference centroid is
    their own condition's. ``samples`` (V, C, S, ...), ``reference`` (C, S, ...) (the w = 1 samples,
    whose per-condition means are the centroids). Returns (V, C); needs C >= 2.

    It asks whether a sample still belongs to its condition rather than to another one, which is what
    lower guidance scales can lose while they bring diversity back.
    """
    V, C, S = samples.shape[:3]
    centroids = reference.reshape(C, S, -1).double().mean(1)  # (C, D)
    flat = samples.reshape(V, C, S, -1).double()
    d2 = (flat.unsqueeze(-2) - centroids.view(1, 1, 1, C, -1)).pow(2).sum(-1)  # (V, C, S, C)
    own = torch.arange(C, device=samples.device).view(1, C, 1)
    return (d2.argmin(-1) == own).double().mean(-1)


def recovery_outcome(
    base: str,
    probe: str,
    uses_null_branch: bool,
    null_verdict: str,
    adherence_kept: Optional[float],
) -> tuple[str, str]:
    """Did a recovery probe work? Returns (works, reason): works is yes, partly, no or not_needed."""
    if base == "healthy":
        return "not_needed", "the model is not collapsed at the verdict scale"
    if uses_null_branch and null_verdict == "not_learned":
        return "no", "it draws on the null branch, which was not learned"
    if adherence_kept is not None and adherence_kept < RECOVERY_MIN_ADHERENCE:
        return "no", f"it keeps {adherence_kept:.0%} of the w = 1 adherence (< {RECOVERY_MIN_ADHERENCE:.0%}): it drops the condition"
    gain = COLLAPSE_ORDER.index(base) - COLLAPSE_ORDER.index(probe)
    if probe == "healthy":
        return "yes", f"the samples are {probe} with it (vs {base})"
    if gain > 0:
        return "partly", f"the samples are {probe} with it (vs {base})"
    return "no", f"the samples stay {probe}"


def distilled_hint(model_config: dict, scheduler_config: dict) -> Optional[str]:
    """Why a checkpoint looks guidance-distilled (it has no real null branch by design), or None."""
    if model_config.get("time_cond_proj_dim"):
        return "the model takes a guidance-scale embedding (time_cond_proj_dim), as LCM-distilled models do"
    name = str(scheduler_config.get("_class_name", ""))
    if name in ("LCMScheduler", "TCDScheduler"):
        return f"its scheduler is {name}, made for guidance-distilled models"
    return None
