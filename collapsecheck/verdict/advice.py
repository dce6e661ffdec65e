"""What to do about a finding: recommendations that follow from the numbers, not a fixed text."""
from __future__ import annotations

from typing import Sequence

from ..result import RecoveryProbe

DROPOUT = (
    "Retrain (or continue training) with 10-20% condition dropout: replace the condition by the null "
    "token / zeros for that share of steps, so the unconditional branch CFG needs is learned "
    "(diffusers: --proportion_empty_prompts 0.1, --conditioning_dropout_prob 0.1; kohya: caption_dropout_rate)."
)


def recommendations(
    collapse: str,
    guidance: str,
    null_branch: str,
    condition_kind: str,
    recovery: Sequence[RecoveryProbe],
    recovery_tried: bool = True,
    against_base: bool = False,
    some_collapsed_alone: bool = False,
) -> list[str]:
    """Advice for a scan's findings, most useful first. ``against_base``: the collapse verdict is worse against
    the base model (``--reference``) than against the model's own spread: the fine-tune narrowed its base.
    ``some_collapsed_alone``: some conditions read collapsed by the model's own spread, with no base to compare
    with (:func:`collapsed_without_base`); said when they are too few to make the model collapsed."""
    out: list[str] = []
    if collapse != "healthy" and against_base:  # a fine-tune that narrowed its base: the advice that fits it first
        out.append("Against its base model the fine-tune lost most of its seed diversity: fine-tune for fewer steps "
                   "or at a lower learning rate, add a prior-preservation loss on the base model's own samples of "
                   "the class (DreamBooth: --with_prior_preservation), or use an earlier checkpoint.")
    working = [p for p in recovery if p.works in ("yes", "partly")]
    working.sort(key=lambda p: (p.works != "yes", -p.pixel_rms))

    if null_branch == "absent_by_design":
        out.append("Guidance-distilled model: judge diversity alone; CFG and its null branch do not apply.")
    if null_branch == "not_learned" and condition_kind == "control":
        out.append("The ControlNet overrides the base model at every hint (its null is the base model, which the "
                   "hinted predictions no longer surround): train it with 10-20% blank hints, or sample at a lower "
                   "conditioning scale.")
    elif null_branch == "not_learned":
        out.append(DROPOUT)
    if collapse != "healthy":
        for probe in working:
            share = "" if probe.seed_share is None else f", seed share {probe.seed_share:.2f}"
            out.append(
                f"Without retraining: {probe.description} {'restores' if probe.works == 'yes' else 'partly restores'} "
                f"diversity (pixel RMS {probe.pixel_rms:.3g}{share}; verdict {probe.verdict})."
            )
        if not recovery_tried:
            out.append("Sampling-time fixes (lower w, interval guidance, CADS) were not tried: scan with --mode full --recovery.")
        elif recovery and not working:
            tried = ", ".join(p.name for p in recovery)
            out.append(f"No sampling-time fix worked ({tried}): the collapse is in the weights; retraining is the way.")
    if collapse == "at_risk" and some_collapsed_alone:  # a few collapsed prompts, not most: perhaps narrow by nature
        out.append(NARROW_BY_NATURE)
    if collapse != "healthy":
        out.extend(_training_advice(condition_kind))
        out.append("Scan earlier checkpoints of the run: an earlier one may still be diverse (early stopping).")
    elif guidance == "not_steerable" and null_branch == "not_learned":
        out.append("Seeds still matter, so sampling at w = 1 is fine; fix the null branch only if you need guidance.")
    elif guidance in ("weak", "not_steerable") and null_branch != "absent_by_design":
        out.append(f"Seeds matter, but guidance is {guidance.replace('_', ' ')}: raising w barely raises adherence, or "
                   "breaks the samples (see the sweep's implicit adherence and break ratio); sample at w = 1 or at "
                   "the largest w whose break ratio stays near 1.")
    if not out:
        out.append("Nothing to fix: seeds matter and guidance steers.")
    return out


#: the one thing a seed share cannot tell (calibration round 20), and how to tell it
NARROW_BY_NATURE = (
    "Some conditions read collapsed while the others vary: if they name things whose images look alike by nature "
    "(a plain texture, sky, still water), a seed share relative to the spread across conditions cannot tell that "
    "from a collapse. Scan with --reference BASE (the model this one was fine-tuned from): a condition as diverse as "
    "in a base that reads it collapsed too is judged at risk, not collapsed."
)

#: how to train against collapse, per kind of condition
TRAINING_ADVICE = {
    "concat": "The condition is concatenated to the input pixel for pixel: add Gaussian noise to it during training, "
              "or inject it more softly (cross-attention, a ControlNet side branch with zero convolutions, middle "
              "block only).",
    "control": "The hint dictates the image: train the ControlNet with some blank or degraded hints (noise, blur), "
               "fewer steps or a lower learning rate, and check whether a lower conditioning scale keeps the "
               "structure.",
    "cross_attn": "Add noise to the condition embeddings during training (as CADS does at sampling time).",
}


def _training_advice(condition_kind: str) -> list[str]:
    return [TRAINING_ADVICE[condition_kind]] if condition_kind in TRAINING_ADVICE else []


def collapsed_without_base(per_condition: Sequence[str], reference: bool) -> bool:
    """Some conditions read collapsed, but not all, and there is no base (``--reference``) to compare them with."""
    return not reference and 0 < per_condition.count("collapsed") < len(per_condition)
