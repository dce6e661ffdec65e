"""Recovery probes: what each one does, in words, and did it bring diversity back without retraining? Pure."""
from __future__ import annotations

from typing import Optional

from ..sample.variants import Variant
from .rules import COLLAPSE_ORDER

#: a probe that keeps less than this share of the w = 1 adherence does not count as working
RECOVERY_MIN_ADHERENCE = 0.8


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


def describe_variant(v: Variant, controlnet_scale: float = 1.0) -> str:
    if v.control_strength != 1.0:
        return (f"the ControlNet at conditioning scale {controlnet_scale * v.control_strength:g} "
                f"({v.control_strength:g} x {controlnet_scale:g}), w = {v.scale:g}")
    if v.switch_time is not None:
        return f"no condition (w = 0) while t/T > {v.switch_time:g}, then w = {v.scale:g} (interval guidance)"
    if v.cads_noise > 0:
        lo, hi = v.cads_tau
        return (f"CADS: noise of scale {v.cads_noise:g} on the condition, annealed from t/T = {hi:g} to {lo:g}, "
                f"at w = {v.scale:g}")
    return f"a lower guidance scale, w = {v.scale:g}"
