"""What to do about a finding: recommendations that follow from the numbers, not a fixed text."""
from __future__ import annotations

from typing import Optional, Sequence

from .result import SweepPoint


def recommendations(
    collapse: str,
    guidance: str,
    null_branch: str,
    condition_kind: str,
    sweep: Sequence[SweepPoint],
    verdict_scale: float,
    at_risk_rms: float,
) -> list[str]:
    """Advice for a scan's findings, most useful first."""
    out: list[str] = []
    at = {p.w: p for p in sweep}
    base: Optional[SweepPoint] = at.get(verdict_scale)
    below = [p for p in sweep if p.w < verdict_scale]
    recovered = [p for p in below if base is not None and p.pixel_rms >= at_risk_rms and p.pixel_rms > base.pixel_rms]

    if null_branch == "absent_by_design":
        out.append("Guidance-distilled model: judge diversity alone; CFG and its null branch do not apply.")
    elif null_branch == "not_learned":
        out.append(
            "Retrain (or continue training) with 10-20% condition dropout: replace the condition by the null "
            "token / zeros for that share of steps, so the unconditional branch CFG needs is learned "
            "(diffusers: --proportion_empty_prompts 0.1, --conditioning_dropout_prob 0.1; kohya: caption_dropout_rate)."
        )
    if collapse != "healthy":
        if recovered and null_branch == "learned" and base is not None:
            best = max(recovered, key=lambda p: p.pixel_rms)
            out.append(
                f"Sample with a guidance scale below {verdict_scale:g}: at w = {best.w:g} the pixel RMS diversity is "
                f"{best.pixel_rms:.3g} (vs {base.pixel_rms:.3g} at w = {verdict_scale:g})."
            )
        elif null_branch == "learned":
            out.append("Lowering the guidance scale does not bring diversity back here; the conditional branch itself is collapsed.")
        if condition_kind == "concat":
            out.append(
                "The condition is concatenated to the input pixel for pixel: add Gaussian noise to it during training, "
                "or inject it more softly (cross-attention, a ControlNet side branch with zero convolutions, middle block only)."
            )
        elif condition_kind == "cross_attn":
            out.append("Add noise to the condition embeddings during training, or try condition-annealed sampling (CADS).")
        out.append("Scan earlier checkpoints of the run: an earlier one may still be diverse (early stopping).")
    elif guidance == "not_steerable" and null_branch != "absent_by_design":
        out.append("Seeds still matter, so sampling is fine at w = 1; fix the null branch only if you need guidance.")
    if not out:
        out.append("Nothing to fix: seeds matter and guidance steers.")
    return out
