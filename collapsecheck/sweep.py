"""The scan up to its first verdicts: the guidance sweep sampled, the posterior profile, the measures, the model's
implicit classifier, the null's coverage, and the verdicts before fast mode's escalation (:class:`Swept`).

Fast mode with ``--reference`` scans each model twice (:func:`~collapsecheck.witnesses.two_passes`): the first pass's
fast numbers choose what the second re-samples at full settings. The two passes differ only in what comes after the
sweep (:data:`PASS_FIELDS`), so the second reads the first's sweep from a :class:`SweepMemo` instead of sampling it
again: the same numbers, without drawing the sweep twice.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Optional

from .config import FULL_STEPS, ScanConfig
from .measure.coverage import NullCoverage, applies, coverage_nfe, null_coverage
from .measure.implicit import FAST, FULL, ImplicitStats, implicit_nfe, implicit_stats
from .profile import stage
from .result import LpipsStatus
from .stages import (Decided, LpipsMeter, Measured, Sampled, Scan, decide, guidance_kind, measure_sweep,
                     posterior_points, sample_sweep)

#: the config fields in which a scan's second pass differs from its first; none of them enters the sweep
PASS_FIELDS = ("escalation", "escalate_also", "escalate_w0", "train_images", "data_images", "features")


@dataclass
class Swept:
    """What a scan measured before fast mode's escalation, the network evaluations that cost (0 when it was read
    from a first pass), and the LPIPS status the measures left (whether LPIPS applied, and how)."""

    sampled: Sampled
    posterior: list
    measured: Measured
    decided: Decided
    nfe: int
    lpips_status: LpipsStatus


class SweepMemo:
    """One model's first-pass sweep, kept for its second pass: read back only by a config that differs from the
    first pass's in :data:`PASS_FIELDS` alone. On a rank other than 0 of several processes it keeps that its share
    was sampled (the sweep itself went to rank 0)."""

    def __init__(self) -> None:
        self.key: Optional[ScanConfig] = None
        self.swept: Optional[Swept] = None

    def holds(self, config: ScanConfig) -> bool:
        return self.key is not None and self.key == sweep_key(config)

    def keep(self, config: ScanConfig, swept: Optional[Swept]) -> None:
        self.key, self.swept = sweep_key(config), swept

    def read(self) -> Optional[Swept]:
        """The kept sweep, its verdicts a copy (later steps change them in place), at no cost; None on rank > 0."""
        if self.swept is None:
            return None
        return dataclasses.replace(self.swept, decided=copy.deepcopy(self.swept.decided), nfe=0)


def sweep_key(config: ScanConfig) -> ScanConfig:
    """``config`` with :data:`PASS_FIELDS` at their defaults: what the sweep depends on."""
    defaults = ScanConfig(checkpoint=config.checkpoint)
    return dataclasses.replace(config, **{f: getattr(defaults, f) for f in PASS_FIELDS})


def sweep(s: Scan, lpips: LpipsMeter, adherence_fn, memo: Optional[SweepMemo] = None) -> Optional[Swept]:
    """The sweep of ``s`` measured and decided, or read from ``memo`` when it holds this scan's first pass; None on
    a rank other than 0 once its share is sampled."""
    if memo is not None and memo.holds(s.config):
        swept = memo.read()
        if swept is not None:
            lpips.status = swept.lpips_status  # as the measures left it in the first pass
        return swept
    swept = measure_and_decide(s, lpips, adherence_fn)
    if memo is not None:
        memo.keep(s.config, swept)
    return swept


def measure_and_decide(s: Scan, lpips: LpipsMeter, adherence_fn) -> Optional[Swept]:
    sampled = sample_sweep(s)
    if sampled is None:  # not rank 0: its share went to rank 0
        return None
    posterior, posterior_nfe = posterior_points(s) if s.config.posterior else ([], 0)
    measured = measure_sweep(s, sampled, lpips, adherence_fn)
    with stage("implicit classifier") as timed:
        implicit = measure_implicit(s, sampled)
        timed.nfe += implicit.nfe if implicit is not None else 0
    with stage("null coverage") as timed:
        coverage = measure_coverage(s)
        timed.nfe += coverage.nfe if coverage is not None else 0
    with stage("verdicts"):
        decided = decide(s, sampled, measured, adherence_fn is not None, implicit, coverage)
    nfe = sampled.nfe + posterior_nfe + sum(m.nfe for m in (implicit, coverage) if m is not None)
    return Swept(sampled, posterior, measured, decided, nfe, lpips.status)


def measure_implicit(s: Scan, sampled: Sampled) -> Optional[ImplicitStats]:
    """The model's implicit classifier on the sweep's samples (latents: no decoding); the null ratio on the
    w = 1 samples unless the model is guidance-distilled."""
    settings = FAST if s.config.mode == "fast" else FULL
    W, C, S = sampled.raw.shape[:3]
    test_null = not s.config.guidance_distilled
    total = implicit_nfe(W, C, S, settings, test_null)
    return s.fit("measuring implicit adherence", lambda batch: implicit_stats(
        s.denoiser, s.schedule, s.conds, sampled.raw, s.scales.index(1.0), settings, batch, test_null,
        s.bar("implicit classifier", total) if total else None))


def measure_coverage(s: Scan) -> Optional[NullCoverage]:
    """The null branch's own w = 0 samples over the conditions (:mod:`collapsecheck.measure.coverage`); None for a
    ControlNet's base model, a guidance-distilled model, and too few or too many conditions."""
    kind = guidance_kind(s)
    if not applies(s.config.guidance_distilled, kind["base_model"], kind["embedded"]):
        return None
    steps = max(s.config.steps, FULL_STEPS)
    total = coverage_nfe(len(s.conds), steps)
    return s.fit("measuring the null's coverage", lambda batch: null_coverage(
        s.denoiser, s.schedule, s.conds, s.config.seed, steps, batch, s.bar("null coverage", total))) if total else None
