"""What a scan's samples are compared with outside the model: a base model (``--reference``), the training
images (``--train-images``) and a feature extractor's embeddings (``--features``, the Vendi score).

:mod:`collapsecheck.run` calls :func:`add_witnesses` on the assembled result and :func:`with_reference` after
the scan; the numbers come from :mod:`collapsecheck.measure.copies`, :mod:`collapsecheck.measure.vendi` and
:mod:`collapsecheck.verdict.relative`. All of them read the samples at the verdict scale.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import torch

from .config import ScanConfig
from .errors import LoadError, UsageError
from .result import ScanResult

#: what the reference scan does not need: no second reference, no training images, no recovery or posterior probes
REFERENCE_OVERRIDES = dict(reference=None, train_images=None, data_images=None, recovery=False, posterior=False)


def check_witnesses(config: ScanConfig) -> None:
    """--train-images, --data-images and --features checked before anything is sampled: one line each when
    unusable."""
    from pathlib import Path

    from .load.images import training_image_files

    if config.train_images:
        training_image_files(config.train_images)
    if config.data_images:
        training_image_files(config.data_images, "--data-images")
    if config.features:
        from .measure.vendi import feature_model_type

        feature_model_type(Path(config.features))


def verdict_samples(result: ScanResult) -> Optional[torch.Tensor]:
    """The result's samples at the verdict scale, (C, S, channels, H, W) in [-1, 1]; None without samples."""
    if result.samples is None:
        return None
    scales = [p.w for p in result.guidance.sweep]
    return result.samples[scales.index(result.verdict_guidance_scale)]


def add_witnesses(result: ScanResult, config: ScanConfig, lpips_metric, device: torch.device) -> ScanResult:
    """``result`` with the Vendi score of every condition (--features) and its copies section (--train-images)."""
    images = verdict_samples(result)
    if images is None:
        return result
    if config.features:
        add_vendi(result, images, config.features, device)
    if config.train_images:
        result.copies = copies_section(result, images, config, lpips_metric).to_dict()
    return result


def add_vendi(result: ScanResult, images: torch.Tensor, path: str, device: torch.device) -> None:
    from .measure.vendi import load_features, vendi_per_condition

    extractor = load_features(path, device)
    for cond, score in zip(result.conditions, vendi_per_condition(images, extractor)):
        cond.vendi = score
    result.features = extractor.describe()


def copies_section(result: ScanResult, images: torch.Tensor, config: ScanConfig, lpips_metric):
    from .load.images import read_training_images
    from .measure.copies import find_copies

    train, names = read_training_images(config.train_images, images.shape[2], tuple(images.shape[-2:]))
    cross = None
    if lpips_metric is not None and images.shape[2] in (1, 3):
        cross = lambda a, b: lpips_metric.cross(a, b)  # noqa: E731
    return find_copies(images, train, names, [c.label for c in result.conditions], config.thresholds,
                       str(config.train_images), lpips_cross=cross)


def reference_config(config: ScanConfig) -> ScanConfig:
    """The config that scans ``config.reference`` as this scan scanned its checkpoint: the same conditions,
    seeds, steps, guidance and measures, and the same loading options (``--model``: one architecture, two
    weight files; ``--base``: what a ControlNet, LoRA file or bare weight file is loaded on), except
    ``--lora`` (the fine-tune's own) and, when BASE is the ``--base`` itself, ``--base`` and ``--lora-scale``:
    the base model is then loaded alone. No recovery or posterior probes."""
    overrides: dict = dict(REFERENCE_OVERRIDES, checkpoint=str(config.reference), lora=None)
    if config.lora is not None:
        overrides["lora_scale"] = 1.0
    if config.base is not None and _same_path(config.base, config.reference):
        overrides.update(base=None, lora_scale=1.0)
    return dataclasses.replace(config, **overrides)


def _same_path(a, b) -> bool:
    from pathlib import Path

    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return str(a) == str(b)


def two_passes(config: ScanConfig) -> bool:
    """Fast mode with --reference scans both models twice: a first pass without escalation, whose fast numbers
    choose what to re-sample at full settings (:func:`relative_escalation`), then the scan."""
    return bool(config.reference) and config.mode == "fast"


def first_pass(config: ScanConfig) -> ScanConfig:
    """The config of the first of :func:`two_passes` (the config itself when there is one pass): no escalation, and
    no training or data images or features, which only the second pass's result reports."""
    if not two_passes(config):
        return config
    return dataclasses.replace(config, escalation=False, train_images=None, data_images=None, features=None)


def with_reference(result: Optional[ScanResult], config: ScanConfig,
                   scan_base: Callable[[ScanConfig], Optional[ScanResult]],
                   rescan: Optional[Callable[[ScanConfig], Optional[ScanResult]]] = None,
                   share: Callable[[tuple], tuple] = lambda value: value) -> Optional[ScanResult]:
    """``result`` with its ``reference`` section: ``scan_base`` scans the base model (every rank runs it; rank 0
    alone gets a result back), then each condition is compared with the base's. Fast mode (``result`` then comes
    from :func:`first_pass`): both models are scanned again, ``rescan`` scanning this one, with the conditions
    :func:`relative_escalation` chose from the first pass (``share`` gives rank 0's set to every rank)
    re-sampled at full settings."""
    if not config.reference:
        return result
    base = _scan_reference(scan_base, first_pass(reference_config(config)))
    if two_passes(config) and rescan is not None:
        both = result is not None and base is not None
        forced, w0 = share((relative_escalation(result, base, config), w0_escalation(result, base, config))
                           if both else ((), False))
        first = result
        result = rescan(dataclasses.replace(config, escalate_also=forced, escalate_w0=w0))
        if result is not None:  # nfe: both passes of this model (seconds already count from the first)
            result.nfe += first.nfe
        again = dataclasses.replace(reference_config(config), escalate_also=forced, escalate_w0=w0)
        base = _scan_reference(scan_base, again)
    if result is None or base is None:
        return result
    return attach_reference(result, base, config)


def _scan_reference(scan_base: Callable[[ScanConfig], Optional[ScanResult]], config: ScanConfig) -> Optional[ScanResult]:
    try:
        return scan_base(config)
    except (UsageError, LoadError) as exc:  # say which model the message is about
        if type(exc) not in (UsageError, LoadError) or str(exc).startswith("--reference"):
            raise
        raise type(exc)(f"--reference {config.checkpoint}: {exc}") from None


def relative_escalation(result: ScanResult, base: ScanResult, config: ScanConfig) -> tuple[int, ...]:
    """Fast mode, from the first pass: the conditions to re-sample at full settings in both scans (empty when none
    is near a relative threshold): those whose fast relative diversity lies within RELATIVE_ESCALATION_BAND of a
    relative threshold, with those either scan escalates on its own (:func:`~collapsecheck.verdict.grid.borderline`),
    so that every compared pair is at the same settings."""
    from .config import RELATIVE_ESCALATION_BAND
    from .thresholds import near
    from .verdict.grid import borderline
    from .verdict.relative import compare_with_reference

    th = config.thresholds
    limits = (th.collapsed_relative_diversity, th.at_risk_relative_diversity)
    section = compare_with_reference(result.conditions, base.conditions, th, path=str(config.reference))
    close = {c.index for c in section.conditions if any(near(c.ratio, x, RELATIVE_ESCALATION_BAND) for x in limits)}
    if not close:
        return ()
    own = {c.index for c in list(result.conditions) + list(base.conditions) if borderline(c, th)}
    return tuple(sorted(close | own))


def w0_escalation(result: ScanResult, base: ScanResult, config: ScanConfig) -> bool:
    """Fast mode, from the first pass: is the w = 0 diversity relative to the base's within RELATIVE_ESCALATION_BAND of
    collapsed_relative_diversity or within W0_AT_RISK_BAND of at_risk_relative_diversity (the limits of
    :func:`~collapsecheck.verdict.relative.null_against_base`), so that both scans' w = 0 samples are drawn again at
    full settings?"""
    from .config import RELATIVE_ESCALATION_BAND, W0_AT_RISK_BAND
    from .thresholds import near

    th, ratio = config.thresholds, w0_ratio(result, base)
    return (near(ratio, th.collapsed_relative_diversity, RELATIVE_ESCALATION_BAND)
            or near(ratio, th.at_risk_relative_diversity, W0_AT_RISK_BAND))


def attach_reference(result: ScanResult, base: ScanResult, config: ScanConfig) -> ScanResult:
    from .verdict.relative import compare_with_reference

    info = base.checkpoint or {}
    section = compare_with_reference(result.conditions, base.conditions, config.thresholds, path=str(config.reference),
                                     content_hash=info.get("content_hash"), model_class=info.get("model_class"),
                                     base_verdict=base.verdict)
    if base.seeds != result.seeds:
        raise UsageError(f"--reference {config.reference}: the base was sampled at other seeds")  # cannot happen
    section.own_verdict = result.verdict
    section.w0_ratio = w0_ratio(result, base)
    judge_against_base(result, section, config)
    result.reference = section.to_dict()
    result.reference_samples = verdict_samples(base)
    return result


def w0_ratio(result: ScanResult, base: ScanResult) -> Optional[float]:
    """The w = 0 seed diversity of ``result`` relative to ``base``'s (the smaller of the pixel RMS and LPIPS ratios);
    None when either sweep lacks w = 0. Where fast mode drew both scans' w = 0 samples again at full settings
    (``escalation.w0``), those numbers."""
    from .verdict.relative import ratio, smaller_ratio

    own, theirs = w0_diversity(result), w0_diversity(base)
    if own is None or theirs is None:
        return None
    return smaller_ratio(ratio(own[0], theirs[0]), ratio(own[1], theirs[1]))


def w0_diversity(result: ScanResult) -> Optional[tuple[float, Optional[float]]]:
    """(pixel RMS, LPIPS) between seeds at w = 0, means over conditions: fast mode's full-setting re-measure where it
    ran, else the sweep's; None when the sweep lacks w = 0."""
    again = (result.escalation or {}).get("w0")
    if again:
        return again["pixel_rms"], again["lpips"]
    point = next((p for p in result.guidance.sweep if p.w == 0.0), None)
    return None if point is None else (point.pixel_rms, point.lpips)


def judge_against_base(result: ScanResult, section, config: ScanConfig) -> None:
    """The collapse verdicts judged against the base as well (each condition by
    :func:`~collapsecheck.verdict.relative.against_base`; the overall verdict from those) and the null branch
    against the base's w = 0 diversity; the recommendations follow. Changes ``result`` in place; the reference
    section keeps the model's own verdict."""
    from .verdict.relative import against_base, base_overrides_null, null_against_base
    from .verdict.rules import overall_collapse

    th = config.thresholds
    before = [c.verdict for c in result.conditions]
    relieved = [judge_condition_against_base(cond, rel, section.base_verdict, th)
                for cond, rel in zip(result.conditions, section.conditions)]
    overall = overall_collapse([c.verdict for c in result.conditions], th)
    # never better than the model's own verdict, unless a condition's narrowness was found to be the base's
    verdict = overall.verdict if any(relieved) else against_base(result.verdict, overall.verdict)
    narrowed = narrower(verdict, result.verdict)
    changed = verdict != result.verdict
    if changed:
        result.verdict, result.decided_by = verdict, list(overall.evidence)
        unreliable = getattr(result.sample_range, "reason", None)  # the data-range warning stays as it was
        result.reasons = ([f"judged against the base model too: {r}" for r in overall.reasons]
                          + [r if r == unreliable else f"against its own spread: {r}" for r in result.reasons])
    elif [c.verdict for c in result.conditions] != before:
        restate_count(result, before, th, "judged against the base model too", "against its own spread")
    null = null_against_base(section.w0_ratio, th)
    replaced = base_overrides_null(result.guidance.null_branch.verdict, null)
    if replaced:
        replace_null(result, null)
    if changed or replaced:
        result.recommendations = advice_for(result, config, against_base=narrowed)


def replace_null(result: ScanResult, null) -> None:
    """The null-branch finding ``null`` (a later test's) in place of the scan's, its reasons before the earlier ones,
    and the guidance verdict's note on the null following it. In place."""
    from .verdict.rules import NULL_NOT_LEARNED_NOTE, NULL_UNCLEAR_NOTE

    branch = result.guidance.null_branch
    branch.verdict, branch.reasons = null.verdict, list(null.reasons) + branch.reasons
    branch.decided_by = list(null.evidence)
    notes = [r for r in result.guidance.reasons if r not in (NULL_UNCLEAR_NOTE, NULL_NOT_LEARNED_NOTE)]
    result.guidance.reasons = notes + [NULL_NOT_LEARNED_NOTE if null.verdict == "not_learned" else NULL_UNCLEAR_NOTE]


def judge_condition_against_base(cond, rel, base_overall: str, th) -> bool:
    """One condition's verdict judged against the base (:func:`~collapsecheck.verdict.relative.against_base`), its
    reasons and evidence saying why when that changes it. In place; True when it was relieved (collapsed by its own
    spread, at_risk since the base is as narrow there)."""
    from .result import Evidence
    from .verdict.relative import INHERITED, against_base, comparable_base_verdict, inherited_narrowness

    base_own = comparable_base_verdict(rel.base_verdict, rel.ratio)
    judged = against_base(cond.verdict, rel.verdict, base_own, base_overall)
    if judged == cond.verdict:
        return False
    relieved = inherited_narrowness(cond.verdict, rel.verdict, base_own, base_overall)
    if relieved:
        cond.reasons = [f"against the base model: {rel.reason}; {INHERITED}"] + cond.reasons
        cond.decided_by = [Evidence("relative_diversity", float(rel.ratio), ">=", "at_risk_relative_diversity",
                                    float(th.at_risk_relative_diversity))] + cond.decided_by
    else:
        cond.reasons = [f"against the base model: {rel.reason}"] + cond.reasons
        cond.decided_by = [Evidence("relative_diversity", float(rel.ratio), "<", f"{judged}_relative_diversity",
                                    float(getattr(th, f"{judged}_relative_diversity")))] + cond.decided_by
    cond.verdict = judged
    return relieved


def judge_against_data(result: Optional[ScanResult], config: ScanConfig) -> Optional[ScanResult]:
    """``result`` judged against the training data as well (``--data-images``, :mod:`collapsecheck.verdict.data`):
    a condition its seed share reads collapsed whose seeds keep at least cell_collapsed_share of its own cell of the
    data reads at_risk (:func:`relieve_narrow_by_nature`), a healthy model whose seeds keep less than
    data_relative_diversity of the data's within-class variance reads at_risk, and the null branch is judged by its
    own samples' share of the data's variance (:func:`~collapsecheck.verdict.data.null_against_data`); the
    recommendations follow. In place, after the comparison with a base model. Nothing changes without
    ``--data-images``."""
    from .verdict.data import NARROWER_THAN_DATA, narrower_than_data, null_against_data

    if result is None:
        return result
    th = config.thresholds
    branch = result.guidance.null_branch
    null = null_against_data(branch.verdict, branch.null_data_share, th, branch.null_ratio_low,
                             len(result.conditions))
    if null is not None:
        replace_null(result, null)
    narrowed = narrowed_by_base(result)  # before the data rule: the base comparison's own advice stays first
    relieved = relieve_narrow_by_nature(result, th)
    found = narrower_than_data(result.verdict, (result.data_reference or {}).get("mean"), th)
    if found is not None:
        result.verdict, result.decided_by = found.verdict, list(found.evidence)
        result.reasons = list(found.reasons) + list(result.reasons)
    if found is not None or null is not None or relieved:
        result.recommendations = ([NARROWER_THAN_DATA] * (found is not None)
                                  + advice_for(result, config, against_base=narrowed))
    return result


def relieve_narrow_by_nature(result: ScanResult, th) -> bool:
    """Each condition its seed share reads collapsed judged against its own cell of the data as well
    (:func:`~collapsecheck.verdict.data.narrow_by_nature`), and the overall verdict from those where that is better
    than the model's. With ``--reference``, a condition whose seeds lost diversity against the base's (relative
    verdict at_risk or collapsed) is not narrow by nature, and is not relieved. In place; True when some condition
    was relieved."""
    from .verdict.data import relieved_by_cells

    conds = result.conditions
    before = [c.verdict for c in conds]
    found, overall = relieved_by_cells(result.verdict, before, [c.cell_share for c in conds],
                                       lost_against_base(result), th)
    for cond, relief in zip(conds, found):
        if relief is not None:
            cond.verdict = relief.verdict
            cond.reasons = list(relief.reasons) + [f"by its seed share alone: {r}" for r in cond.reasons]
            cond.decided_by = list(relief.evidence) + list(cond.decided_by)
    if overall is None:
        if any(found):
            restate_count(result, before, th, "each condition judged against its own cell of the training data too",
                          "by the seed share alone")
        return any(found)
    unreliable = getattr(result.sample_range, "reason", None)  # the data-range warning stays as it was
    result.reasons = ([f"each condition judged against its own cell of the training data too: {r}"
                       for r in overall.reasons]
                      + [r if r == unreliable else f"by the seed share alone: {r}" for r in result.reasons])
    result.verdict, result.decided_by = overall.verdict, list(overall.evidence)
    return True


def restate_count(result: ScanResult, before: list[str], th, now: str, then: str) -> None:
    """Conditions judged again (``before``: their verdicts until then) that leave the overall verdict where it was:
    the count of the conditions as they now read goes first (``now``: how they were judged), and the earlier count,
    which no longer matches them, is marked (``then``). In place; nothing where the verdict came from elsewhere."""
    from .verdict.rules import overall_collapse

    recount = overall_collapse([c.verdict for c in result.conditions], th)
    if recount.verdict != result.verdict:
        return
    earlier = overall_collapse(before, th).reasons
    result.reasons = ([f"{now}: {r}: the same verdict" for r in recount.reasons]
                      + [f"{then}: {r}" if r in earlier else r for r in result.reasons])


def lost_against_base(result: ScanResult) -> list[bool]:
    """Per condition: did its seeds lose diversity against ``--reference``'s (relative verdict at_risk or
    collapsed)? All False without a base."""
    compared = (result.reference or {}).get("conditions") or []
    lost = [c.get("verdict") in ("at_risk", "collapsed") for c in compared]
    return lost if len(lost) == len(result.conditions) else [False] * len(result.conditions)


def narrowed_by_base(result: ScanResult) -> bool:
    """Did the comparison with ``--reference`` make the collapse verdict worse than the model's own?"""
    from .verdict.rules import COLLAPSE_ORDER

    own = (result.reference or {}).get("own_verdict")
    return own in COLLAPSE_ORDER and narrower(result.verdict, own)


def narrower(verdict: str, own: str) -> bool:
    """Is the collapse ``verdict`` worse than the model's ``own``?"""
    from .verdict.rules import COLLAPSE_ORDER

    return COLLAPSE_ORDER.index(verdict) > COLLAPSE_ORDER.index(own)


def advice_for(result: ScanResult, config: ScanConfig, against_base: bool = False) -> list[str]:
    """The recommendations for ``result``'s verdicts as they stand now (after a later judgement changed them)."""
    from .verdict.advice import recommendations

    return recommendations(result.verdict, result.guidance.verdict, result.guidance.null_branch.verdict,
                           result.checkpoint.get("condition_kind", ""), result.guidance.recovery, config.recovery,
                           against_base=against_base)
