"""The stages of a scan after loading, each a function from what the stages before it produced.

sample the grid -> null-branch probes -> posterior profile -> measure -> decide -> recovery probes.
:mod:`collapsecheck.run` calls them in that order and assembles the :class:`ScanResult`. Never prints.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import torch

from .config import ScanConfig
from .distributed import SINGLE, World
from .load.conditions import ConditionSet
from .measure.diversity import BUILTIN_ADHERENCE, GridStats, measure_grid
from .measure.eps import NullBranchStats, null_branch_stats
from .measure.coverage import NullCoverage
from .measure.implicit import ImplicitStats
from .model.denoiser import Denoiser
from .model.guard import evaluating, guarded, halving, memory_guard
from .model.schedule import Schedule
from .profile import stage
from .result import ConditionResult, LpipsStatus, PosteriorPoint, RecoveryProbe, SweepPoint
from .sample.grid import GridSamples, probe_null_branch, sample_grid
from .sample.probes import null_probe_steps
from .sample.variants import Variant, cads, control_strength, interval, plain
from .state import ScanState
from .units import GridJob, sample_units
from .verdict import rules as V
from .verdict.grid import cell_finding, variant_finding
from .verdict.recovery import describe_variant, recovery_outcome
from .verdict.steering import null_spread, null_test, steering

#: ``progress(description, total)`` returns an ``advance(n)`` callback; the CLI draws a bar with it
ProgressFactory = Callable[[str, int], Callable[[int], None]]


@dataclass
class Scan:
    """What every stage reads: the model on its device, its conditions and the settings."""

    denoiser: Denoiser
    schedule: Schedule
    conds: ConditionSet
    config: ScanConfig
    progress: Optional[ProgressFactory] = None
    world: World = SINGLE  # this process among several (torchrun); rank 0 measures and decides
    state: Optional[ScanState] = None  # the saved work of --resume
    #: the batch size the stages run at: --batch-size, halved after an out-of-memory error (see :meth:`fit`)
    batch_size: int = 0
    #: what the stages had to change (a smaller batch), for the result's notes
    notes: list[str] = field(default_factory=list)

    def __post_init__(self):
        # the model's own code fenced: whatever it raises is a ModelError (exit 3), never a bug of ours
        self.denoiser = guarded(self.denoiser)
        self.batch_size = self.batch_size or self.config.batch_size

    def fit(self, stage: str, run: Callable[[int], object]):
        """``run(batch_size)`` for ``stage``, with the batch halved on out-of-memory until it fits (the
        numbers never depend on the batch size); later stages start from the batch that fit."""
        value, batch = halving(stage, self.batch_size, run)
        if batch < self.batch_size:
            self.notes.append(f"out of memory while {stage} at batch size {self.batch_size}: halved to {batch}, "
                              "which fit (the numbers do not depend on the batch size)")
            self.batch_size = batch
        return value

    def bar(self, description: str, total: int):
        return self.progress(description, total) if self.progress else None

    @property
    def scales(self) -> list[float]:
        return list(self.config.guidance)


# ------------------------------------------------------------------------------------ sample


@dataclass
class Sampled:
    grid: GridSamples  # the sweep scales (w = 0 left to the null probe when it supplies it)
    raw: torch.Tensor  # (W, C, S, ...) final samples in the order of config.guidance
    null_stats: Optional[NullBranchStats]  # None when the null branch was not tested
    probe_steps: list[int]
    nfe: int


def null_column(config: ScanConfig) -> bool:
    """w = 0 ignores the condition: its samples come from one null trajectory per seed (the null-branch
    probe's, run to the end), not from C conditional-and-null trajectories."""
    return 0.0 in config.guidance and config.guidance_scale != 0.0


def sample_sweep(s: Scan) -> Optional[Sampled]:
    """Sample every (guidance scale, condition, seed) and probe the null branch: this process's units
    of conditions (:mod:`collapsecheck.units`), all of them gathered on rank 0; None on the others. The units
    follow --batch-size; an out-of-memory error halves only the batch they are sampled in."""
    # paired nulls: no one null trajectory; embedded guidance: w = 0 is a guidance input, not the null branch
    from_null = null_column(s.config) and not s.conds.paired_null and not getattr(s.denoiser, "embedded_guidance", False)
    job = GridJob(s.denoiser, s.schedule, s.conds, s.config.seed_list,
                  [w for w in s.scales if not (from_null and w == 0.0)], s.config.steps, s.config.batch_size)
    with stage("sampling") as timed:
        out = s.fit("sampling", lambda batch: sample_units(dataclasses.replace(job, chunk=batch), s.world, s.state,
                                                           s.progress, lambda: probe_null(s, from_null)))
        if out is None:
            return None
        timed.nfe += out[0].nfe
    grid, null = out
    raw = torch.stack([
        null.final.to(grid.samples.device).unsqueeze(0).expand((len(s.conds),) + tuple(null.final.shape))
        if from_null and w == 0.0 else grid.samples[grid.at(w)]
        for w in s.scales
    ])
    return Sampled(grid, raw, null.stats, null.steps, grid.nfe + null.nfe)


@dataclass
class NullProbed:
    stats: Optional[NullBranchStats]  # None when the null branch was not tested
    steps: list[int]  # the probed sampling steps
    final: Optional[torch.Tensor]  # the null trajectories' final samples (S, ...), when run to the end
    nfe: int


def probe_null(s: Scan, from_null: bool) -> NullProbed:
    """The null-branch test over all conditions (all classes, even when --classes scans a few), and the
    null trajectories run to the end when they supply the w = 0 column; read back from --resume's state."""
    saved = s.state.load_tensors("null") if s.state is not None else None
    if saved is not None:
        tensors, meta = saved
        stats = NullBranchStats(**meta["stats"]) if meta["stats"] is not None else None
        return NullProbed(stats, meta["steps"], tensors.get("final"), meta["nfe"])
    with stage("null-branch probe") as timed:
        probed = _probe_null(s, from_null)
        timed.nfe += probed.nfe
    if s.state is not None:
        s.state.save_tensors("null", {} if probed.final is None else {"final": probed.final},
                             {"stats": None if probed.stats is None else dataclasses.asdict(probed.stats),
                              "steps": probed.steps, "nfe": probed.nfe})
    return probed


def _probe_null(s: Scan, from_null: bool) -> NullProbed:
    probe_conds = s.conds.complete_set()
    test_null = len(probe_conds) >= 2 and not s.config.guidance_distilled and not probe_conds.paired_null
    if not (test_null or from_null):
        return NullProbed(None, [], None, 0)
    probe_steps = null_probe_steps(s.schedule, s.schedule.timesteps(s.config.steps), complete=probe_conds.complete) if test_null else []
    probe = s.fit("probing the null branch", lambda batch: probe_null_branch(
        s.denoiser, s.schedule, probe_conds if test_null else s.conds, s.config.seed_list, s.config.steps,
        probe_steps, batch, s.bar("null branch", s.config.steps), run_to_end=from_null))
    return NullProbed(null_branch_stats(probe) if test_null else None, probe_steps, probe.final, probe.nfe)


#: the posterior profile uses at most this many seeds and Hutchinson probes per cell
POSTERIOR_SEEDS = 8
POSTERIOR_PROBES = 2


def posterior_points(s: Scan) -> tuple[list[PosteriorPoint], int]:
    """Posterior variance by timestep (Tweedie), means over conditions, and the forward passes it cost;
    read back from --resume's state when saved there."""
    saved = s.state.load_json("posterior") if s.state is not None else None
    if saved is not None:
        return [PosteriorPoint(**p) for p in saved["points"]], int(saved["nfe"])
    with stage("posterior profile") as timed:
        points, nfe = _posterior_points(s)
        timed.nfe += nfe
    if s.state is not None:
        s.state.save_json("posterior", {"points": [dataclasses.asdict(p) for p in points], "nfe": nfe})
    return points, nfe


def _posterior_points(s: Scan) -> tuple[list[PosteriorPoint], int]:
    from .measure.posterior import posterior_profile

    method = "fd" if s.config.dtype == "float32" else "auto"  # a JVP costs 5-10 forward passes on CPU
    prof = s.fit("measuring the posterior variance", lambda batch: posterior_profile(
        s.denoiser, s.schedule, s.conds, s.config.seed_list[:POSTERIOR_SEEDS], probes=POSTERIOR_PROBES,
        batch_size=batch, method=method))
    points = [PosteriorPoint(timestep=int(prof.timesteps[p]), alpha_bar=float(prof.alpha_bar[p]), **prof.summary(p))
              for p in range(len(prof.timesteps))]
    return points, prof.nfe + 2 * prof.jvps


class LpipsMeter:
    """Mean pairwise LPIPS per (variant, condition), and the status a result reports."""

    def __init__(self, metric, status: LpipsStatus):
        self.metric, self.status = metric, status

    def for_scan(self, s: Scan) -> Optional[Callable[[torch.Tensor], Optional[torch.Tensor]]]:
        """The ``lpips_means`` callback of :func:`measure_grid`; None without a metric."""
        if self.metric is None:
            return None
        return lambda samples: self.means(samples, s.bar("LPIPS", samples.shape[0] * samples.shape[1]))

    def means(self, samples: torch.Tensor, advance=None) -> Optional[torch.Tensor]:
        from .measure.lpips import LpipsUnavailable

        old = self.status
        try:
            with stage("LPIPS"), evaluating("computing LPIPS"):  # one batched backbone pass per group of cells
                means = self.metric.mean_pairwise(samples, advance).float()
        except LpipsUnavailable as exc:  # e.g. latents with 4 channels
            self.status = LpipsStatus(available=False, net=old.net, source=old.source, reason=exc.reason)
            return None
        self.status = LpipsStatus(available=True, net=old.net, source=old.source, note=self.metric.resize_note)
        return means


def on_measuring_device(images: torch.Tensor) -> torch.Tensor:
    """The images where the measures can run: MPS has no float64, which they use, so MPS images move to the
    CPU; elsewhere they stay where they are."""
    return images.cpu() if images.device.type == "mps" else images


@dataclass
class Measured:
    stats: GridStats  # (W, C) numbers in the order of config.guidance
    reference: torch.Tensor  # the clipped w = 1 samples (C, S, ...)
    adherence_name: Optional[str]


def measure_sweep(s: Scan, sampled: Sampled, lpips: LpipsMeter, adherence_fn) -> Measured:
    """Decode the samples to images and measure their diversity, movement and adherence."""
    # latents -> images; identity for pixels
    with stage("decoding"):
        images = on_measuring_device(s.fit("decoding the samples", lambda b: s.denoiser.decode_grid(sampled.raw, b)))
    reference = images[s.scales.index(1.0)].clamp(-1.0, 1.0)
    with stage("measures"), memory_guard("measuring the samples", s.batch_size):
        stats = measure_grid(images, reference, s.config.thresholds, s.conds, lpips.for_scan(s), adherence_fn)
    name = s.config.adherence if adherence_fn else (BUILTIN_ADHERENCE if stats.adherence is not None else None)
    return Measured(stats, reference, name)


@dataclass
class Decided:
    conditions: list[ConditionResult]
    collapse: V.Finding
    sweep: list[SweepPoint]
    null: V.Finding
    guidance: V.Finding
    residual: Optional[float]  # the largest hull residual (evidence beside the null ratio)
    max_shift: Optional[float]
    eps_ratio: torch.Tensor  # (K, C) along the trajectories at the verdict scale, mean over seeds
    eps_cos: torch.Tensor
    implicit: Optional[ImplicitStats] = None  # the implicit classifier's numbers, which the verdicts read
    steer: Optional[V.Steering] = None  # adherence at w = 1 and the judged scale, which the guidance verdict reads
    null_spread: Optional[float] = None  # the w = 0 samples' share of the w = 1 grid's spread (the null rule reads it)
    coverage: Optional[NullCoverage] = None  # the null's own w = 0 samples over the conditions (the null rule reads it)


def decide(s: Scan, sampled: Sampled, measured: Measured, with_adherence: bool,
           implicit: Optional[ImplicitStats] = None, coverage: Optional[NullCoverage] = None) -> Decided:
    """Verdicts per condition, overall, per guidance scale, for the null branch and for guidance."""
    th, stats = s.config.thresholds, measured.stats
    wi = s.scales.index(s.config.guidance_scale)
    at = sampled.grid.at(s.config.guidance_scale)
    ratio = sampled.grid.eps_ratio[:, at].mean(-1).cpu()  # (K, C)
    cosine = sampled.grid.eps_cos[:, at].mean(-1).cpu()
    sweep = sweep_points(s, stats, implicit)
    others = [p.shift_from_w1 for p in sweep if p.w != 1.0]
    max_shift = max(others) if others else None
    residual = None if sampled.null_stats is None else max(sampled.null_stats.hull_residual)
    spread = null_spread(s.scales, stats)
    null = V.null_branch(null_test(implicit), th, distilled=s.config.guidance_distilled, spread=spread,
                         coverage=coverage, **guidance_kind(s))
    steer = steering(s.scales, stats, implicit, s.config.adherence if with_adherence else None)
    collapse = variant_finding(stats, wi, th)
    guidance = judge_guidance(s, null, steer, max_shift, ratio, collapse)
    return Decided(condition_results(s, stats, wi, ratio, cosine), collapse, sweep, null, guidance, residual,
                   max_shift, ratio, cosine, implicit, steer, spread, coverage)


def guidance_kind(s: Scan) -> dict:
    """A ControlNet's null is its base model (trained on its own); Flux dev-like: guidance is a network input."""
    return {"base_model": s.conds.kind == "control", "embedded": bool(getattr(s.denoiser, "embedded_guidance", False))}


def judge_guidance(s: Scan, null: V.Finding, steer: Optional[V.Steering], max_shift: Optional[float],
                   eps_ratio: torch.Tensor, collapse: V.Finding) -> V.Finding:
    """The guidance verdict from the null branch, steering, movement and overall collapse (a decoder's)."""
    return V.guidance_verdict(null, steer, max_shift, s.config.thresholds, eps_ratio=float(eps_ratio.mean()),
                              decoder=V.is_decoder(s.conds.kind, collapse.verdict),
                              collapsed=collapse.verdict == "collapsed", **guidance_kind(s))


def condition_results(s: Scan, stats: GridStats, wi: int, ratio: torch.Tensor,
                      cosine: torch.Tensor) -> list[ConditionResult]:
    """Each condition's numbers and verdict at the verdict scale (sweep index ``wi``)."""
    out = []
    for c in range(len(s.conds)):
        f = cell_finding(stats, wi, c, s.config.thresholds)
        out.append(ConditionResult(
            index=c,
            label=s.conds.labels[c],
            verdict=f.verdict,
            reasons=list(f.reasons),
            pixel_rms=float(stats.pixel_rms[wi, c]),
            pixel_std=float(stats.pixel_std[wi, c]),
            near_duplicates=float(stats.near_duplicates[wi, c]),
            near_duplicates_stderr=stats.value("near_duplicates_stderr", wi, c),
            seed_share=stats.value("seed_share", wi, c),
            lpips=stats.value("lpips", wi, c),
            eps_ratio=float(ratio[:, c].mean()),
            eps_cos=float(cosine[:, c].mean()),
            decided_by=list(f.evidence),
        ))
    return out


def sweep_points(s: Scan, stats: GridStats, implicit: Optional[ImplicitStats] = None) -> list[SweepPoint]:
    """Diversity, movement, adherence and the collapse verdict at each guidance scale, means over conditions."""
    return [
        SweepPoint(
            w=w,
            pixel_rms=float(stats.pixel_rms[i].mean()),
            near_duplicates=float(stats.near_duplicates[i].mean()),
            seed_share=stats.mean("seed_share", i),
            lpips=stats.mean("lpips", i),
            shift_from_w1=float(stats.shift_from_w1[i]),
            adherence=stats.mean("adherence", i),
            verdict=variant_finding(stats, i, s.config.thresholds).verdict,
            implicit_adherence=None if implicit is None else implicit.adherence[i].value,
            implicit_adherence_stderr=None if implicit is None else implicit.adherence[i].stderr,
            break_ratio=None if implicit is None else implicit.break_ratio[i],
        )
        for i, w in enumerate(s.scales)
    ]


#: lower guidance scales tried as recovery probes, as fractions of the verdict scale (w = 0 is not one:
#: it drops the condition altogether; the sweep reports it as the null branch's own samples)
RECOVERY_LOW_FRACTIONS = (0.5, 0.25)
#: ControlNet scans also try the ControlNet at these fractions of its conditioning scale
RECOVERY_CONTROL_STRENGTHS = (0.8, 0.5)


def recovery_variants(guidance: Sequence[float], scale: float, control: bool = False, embedded: bool = False) -> list[Variant]:
    lows = [plain(scale * f) for f in RECOVERY_LOW_FRACTIONS if scale * f not in guidance]
    controls = [control_strength(scale, f) for f in RECOVERY_CONTROL_STRENGTHS] if control else []
    return controls + lows + ([] if embedded else [interval(scale)]) + [cads(scale)]  # interval needs a null branch


def recovery_probes(s: Scan, measured: Measured, decided: Decided, lpips: LpipsMeter,
                    adherence_fn) -> tuple[list[RecoveryProbe], int]:
    """Sampling-time fixes tried when the verdict scale is not healthy, and the network evaluations they cost."""
    if not s.config.recovery or decided.collapse.verdict == "healthy":
        return [], 0
    cfg, th = s.config, s.config.thresholds
    variants = recovery_variants(cfg.guidance, cfg.guidance_scale, control=s.conds.kind == "control",
                                 embedded=bool(getattr(s.denoiser, "embedded_guidance", False)))
    rsamples, rnfe = recovery_samples(s, variants)
    with stage("decoding"):
        rimages = on_measuring_device(s.fit("decoding the recovery probes",
                                            lambda batch: s.denoiser.decode_grid(rsamples, batch)))
    with stage("measures"), memory_guard("measuring the recovery probes", s.batch_size):
        rstats = measure_grid(rimages, measured.reference, th, s.conds, lpips.for_scan(s), adherence_fn)
    base_adherence = measured.stats.mean("adherence", s.scales.index(cfg.guidance_scale))
    probes = []
    for i, v in enumerate(variants):
        verdict_v = variant_finding(rstats, i, th).verdict
        adh = rstats.mean("adherence", i)
        kept = None if adh is None or not base_adherence else adh / base_adherence
        # a ControlNet's null is the base model, a trained model: drawing on it is no flaw
        uses_null = s.conds.kind != "control" and (v.switch_time is not None or (v.is_plain and v.scale < 1.0))
        works, why = recovery_outcome(decided.collapse.verdict, verdict_v, uses_null, decided.null.verdict, kept)
        probes.append(RecoveryProbe(
            name=v.name, description=describe_variant(v, cfg.controlnet_scale), uses_null_branch=uses_null,
            pixel_rms=float(rstats.pixel_rms[i].mean()), seed_share=rstats.mean("seed_share", i),
            lpips=rstats.mean("lpips", i), adherence=adh, shift_from_w1=float(rstats.shift_from_w1[i]),
            verdict=verdict_v, works=works, reason=why,
        ))
    return probes, rnfe


def recovery_samples(s: Scan, variants: list[Variant]) -> tuple[torch.Tensor, int]:
    """The recovery probes' final samples (V, C, S, ...) and their cost, saved in --resume's state."""
    saved = s.state.load_tensors("recovery") if s.state is not None else None
    if saved is not None:
        return saved[0]["samples"].to(s.denoiser.device), int(saved[1]["nfe"])
    cfg = s.config
    with stage("recovery probes") as timed:
        rgrid = s.fit("sampling the recovery probes", lambda batch: sample_grid(
            s.denoiser, s.schedule, s.conds, cfg.seed_list, variants, cfg.steps, batch, s.bar("recovery probes", cfg.steps)))
        timed.nfe += rgrid.nfe
    if s.state is not None:
        s.state.save_tensors("recovery", {"samples": rgrid.samples}, {"nfe": rgrid.nfe})
    return rgrid.samples, rgrid.nfe
