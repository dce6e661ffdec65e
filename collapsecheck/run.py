"""``scan(config) -> ScanResult``: the scan as named stages. Never prints, never exits.

load -> resolve conditions -> (:mod:`collapsecheck.sweep`, :mod:`collapsecheck.stages`) sample the grid and probe
the null branch -> posterior profile -> measure -> decide -> (:mod:`collapsecheck.escalate`) fast mode's escalation
-> recovery probes -> assemble the result.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import platform
import time
from pathlib import Path
from typing import Optional

import torch

from .version import __version__
from .config import ScanConfig
from .escalate import FullGrids, escalate
from .escalate.data import hints_judged_by_cells, measure_against_data
from .distributed import SINGLE, World, broadcast, device_for, resolve_device
from .errors import UsageError
from .load.conditions import (ConditionSet, describe, hint_conditions, pair_hints_with_prompts, pooled_conditions,
                              tensor_conditions)
from .load.classes import class_conditions
from .load.dispatch import LoadedCheckpoint, load_with_options
from .load.options import LoadOptions
from .load.scheduler import DEFAULT_SCHEDULER_SOURCE
from .measure.adherence import load_adherence
from .measure.coverage import NullCoverage
from .model.build import denoiser_for
from .model.denoiser import Denoiser, expected_condition_shape
from .model.families import distilled_hint, flow_sampling
from .model.parametrization import vp_denoiser
from .model.schedule import Schedule, schedule_from_config
from .profile import Profiler, active, profiling, stage
from .state import ScanState, tensor_digest
from .result import GuidanceResult, LpipsStatus, NullBranchResult, NullProbe, ProfilePoint, SampleRange, ScanResult
from .stages import Decided, LpipsMeter, Measured, ProgressFactory, Sampled, Scan, recovery_probes
from .sweep import SweepMemo, sweep
from .verdict.advice import collapsed_without_base, recommendations
from .verdict.datarange import noise_like_notes, out_of_range_reason
from .witnesses import add_witnesses, check_witnesses, first_pass, judge_against_data, two_passes, with_reference

__all__ = ["scan", "scan_loaded", "evaluate", "load", "resolve_conditions", "resolve_device", "ProgressFactory"]


def resolve_conditions(config: ScanConfig, denoiser: Denoiser, model_config: dict) -> ConditionSet:
    """The condition set the config asks for, checked against what the model takes."""
    if denoiser.kind == "control":
        if not config.cond:
            raise UsageError("a ControlNet is conditioned on hint images: pass a folder of them (or a tensor file "
                             "(N, C, H, W) in [0, 1]) with --cond")
        hints = hint_conditions(config.cond, denoiser.hint_shape)
        if len(denoiser.prompts) > 1:  # (prompt, hint) pairs, as train_controlnet.py's validation sets
            return pair_hints_with_prompts(hints, denoiser.prompts, str(config.prompts))
        return hints
    if denoiser.kind == "class":
        if config.cond:
            raise UsageError("--cond is for image or embedding conditions; this model takes class labels (use --classes)")
        return class_conditions(int(model_config["num_class_embeds"]), config.classes, config.null_class)
    if config.classes is not None or config.null_class is not None:
        raise UsageError("--classes and --null-class are for class-conditional models; this one takes --cond")
    if not config.cond:
        what = "images (N, C, H, W) concatenated to x_t" if denoiser.kind == "concat" else "embeddings (N, L, D)"
        if denoiser.pooled is not None:
            what = "embeddings 'cond' (N, L, D) and pooled embeddings 'pooled' (N, P)"
        raise UsageError(f"this model is conditioned on {what}: pass them with --cond FILE")
    if denoiser.pooled is not None:
        from .model.denoiser import TEXT_TIME_HINT

        return pooled_conditions(config.cond, *denoiser.pooled, hint=TEXT_TIME_HINT if denoiser.text_time else "")
    return tensor_conditions(denoiser.kind, config.cond, expected_condition_shape(denoiser, model_config))


def load(config: ScanConfig) -> tuple[LoadedCheckpoint, Denoiser]:
    """The loading stage: the checkpoint as ``config`` names it, and its denoiser."""
    ckpt = load_with_options(Path(config.checkpoint), LoadOptions.of(config))
    return ckpt, denoiser_for(ckpt, config.concat_order)


def conditions_of(config: ScanConfig, ckpt: LoadedCheckpoint, denoiser: Denoiser) -> ConditionSet:
    """The pipeline's own conditions (from --prompts), or those ``config`` names for the model."""
    if ckpt.conditions is not None:
        if config.cond:
            raise UsageError("--prompts gives the conditions of this pipeline; leave out --cond")
        return ckpt.conditions
    from .model.denoiser import condition_config

    return resolve_conditions(config, denoiser, condition_config(ckpt.model_class, ckpt.model_config))


def checkpoint_info(config: ScanConfig, ckpt: LoadedCheckpoint, denoiser: Denoiser,
                    schedule: Schedule) -> tuple[ScanConfig, dict]:
    """What the result says about the checkpoint, and the config with guidance distillation detected."""
    notes = list(ckpt.notes) + denoiser.notes()
    scheduler_source = ckpt.scheduler_source
    if schedule.table is not None:  # flow matching or EDM, sampled in VP terms: say what the model really is
        scheduler_source = f"{scheduler_source} ({schedule.table.description})"
        notes.extend(schedule.table.notes)
    hint = distilled_hint(ckpt.model_config, ckpt.scheduler_config)
    if hint and not config.guidance_distilled:
        config = dataclasses.replace(config, guidance_distilled=True)
        notes.append(f"treated as guidance-distilled: {hint}")
    return config, {
        "path": str(config.checkpoint),
        "source": ckpt.source,
        "model_class": ckpt.model_class,
        "scheduler_source": scheduler_source,
        "notes": notes,
        "content_hash": ckpt.content_hash,
        "decoder": ckpt.decoder_info,
    }


def scan(config: ScanConfig, progress: Optional[ProgressFactory] = None, *, world: World = SINGLE,
         resume: Optional[str] = None, memo: Optional[SweepMemo] = None) -> Optional[ScanResult]:
    """Run a scan as ``config`` says and return its result.

    ``resume``: a folder where each unit of work is saved as it finishes and read back by a later scan
    of the same checkpoint and settings (:mod:`collapsecheck.state`). ``world``: this process among
    several (:func:`collapsecheck.distributed.world_from_env`; the caller made the process group): the
    work is shared and rank 0 alone returns the result, the others None. ``memo``: kept across a base model's two
    scans in fast mode with ``--reference`` (:mod:`collapsecheck.sweep`).
    """
    started = time.perf_counter()
    device = resolve_device(device_for(world, config.device))  # a missing CUDA device: a usage error before loading
    with profiling(Profiler(device) if config.profile else None):
        with stage("load"):
            ckpt, denoiser = load(config)
        return scan_loaded(config, ckpt, denoiser, progress, started, world=world, resume=resume, memo=memo)


def scan_loaded(config: ScanConfig, ckpt: LoadedCheckpoint, denoiser: Denoiser,
                progress: Optional[ProgressFactory] = None, started: Optional[float] = None, *,
                world: World = SINGLE, resume: Optional[str] = None, memo: Optional[SweepMemo] = None
                ) -> Optional[ScanResult]:
    """The scan of a loaded checkpoint, from disk (:func:`scan`) or from memory
    (:func:`collapsecheck.inmemory.scan_model`): its conditions, what the result says about it, then
    :func:`evaluate`; fast mode with ``--reference``: each model's second pass reads its first's sweep."""
    check_witnesses(config)  # --train-images, --features: before anything is sampled
    with stage("conditions"):
        schedule = schedule_for(config, ckpt, denoiser)
        conds = conditions_of(config, ckpt, denoiser)
        config, info = checkpoint_info(config, ckpt, denoiser, schedule)
    twice = two_passes(config)  # fast mode with --reference: each model's second pass reads its first's sweep
    memo = SweepMemo() if memo is None and twice else memo
    base_memo = SweepMemo() if twice else None
    result = evaluate(denoiser, schedule, conds, first_pass(config), info, progress, started, world=world,
                      resume=resume, memo=memo)
    result = with_reference(result, config, lambda base: scan(base, progress, world=world, memo=base_memo),
                            lambda again: evaluate(denoiser, schedule, conds, again, info, progress, started, world=world,
                                                   memo=memo),
                            lambda value: broadcast(value, world))
    return judge_against_data(result, config)  # --data-images: after the base, which may relieve a condition


def schedule_for(config: ScanConfig, ckpt: LoadedCheckpoint, denoiser: Denoiser) -> Schedule:
    """The noise schedule of ``ckpt``'s scheduler config; a flow-matching transformer's steps are its pipeline's
    (their sigmas, and the dynamic shift of the image size the scan samples)."""
    sampling = flow_sampling(ckpt.model_class, ckpt.model_config, denoiser.sample_shape, config.steps)
    if sampling is not None and ckpt.scheduler_source == DEFAULT_SCHEDULER_SOURCE:
        raise UsageError(f"a {ckpt.model_class} is a flow-matching model and {config.checkpoint} has no scheduler "
                         f"config: pass --base with its {sampling.pipeline} folder, or --scheduler")
    return schedule_from_config(ckpt.scheduler_config, config.prediction_type, config.sampler, sampling)


def scan_state(resume: Optional[str], config: ScanConfig, info: dict, conds: ConditionSet,
               device: torch.device) -> Optional[ScanState]:
    """The saved work of ``resume`` for this checkpoint, config and conditions (None without ``resume``)."""
    if not resume:
        return None
    if not info.get("content_hash"):
        raise UsageError("--resume: this checkpoint has no content hash to key its saved work by; scan without --resume")
    return ScanState(resume, {
        "content_hash": info["content_hash"],
        # the content decides, not the path; --profile changes how the scan is timed, not what it computes
        "config": {k: v for k, v in _config_dict(config).items() if k not in ("checkpoint", "profile")},
        "device": f"{device.type} ({config.dtype})",
        "conditions": [tensor_digest(conds.values, conds.null), list(conds.labels), conds.kind],
    })


def evaluate(
    denoiser: Denoiser,
    schedule: Schedule,
    conds: ConditionSet,
    config: ScanConfig,
    checkpoint_info: dict,
    progress: Optional[ProgressFactory] = None,
    started: Optional[float] = None,
    *,
    world: World = SINGLE,
    resume: Optional[str] = None,
    memo: Optional[SweepMemo] = None,
) -> Optional[ScanResult]:
    """Sample, measure and decide for a loaded denoiser. ``checkpoint_info`` is copied into the result.
    Rank 0 of several processes returns the result, the others None once their share is sampled. ``memo``: a
    first pass's sweep, read by the second (:mod:`collapsecheck.sweep`).
    With ``config.profile`` the result's ``profile`` says where the time went (:mod:`collapsecheck.profile`)."""
    started = time.perf_counter() if started is None else started
    device = resolve_device(device_for(world, config.device))
    profiler = active() or (Profiler(device) if config.profile else None)
    with profiling(profiler):
        result = _evaluate(denoiser, schedule, conds, config, checkpoint_info, progress, started, device, world, resume,
                           memo)
    if result is not None and config.profile and profiler is not None:
        result.profile = profiler.result(result.seconds)
    return result


def _evaluate(denoiser: Denoiser, schedule: Schedule, conds: ConditionSet, config: ScanConfig, checkpoint_info: dict,
              progress: Optional[ProgressFactory], started: float, device: torch.device, world: World,
              resume: Optional[str], memo: Optional[SweepMemo]) -> Optional[ScanResult]:
    with stage("LPIPS load"):
        lpips = LpipsMeter(*_lpips(config, device))
    adherence_fn = load_adherence(config.adherence) if config.adherence else None
    with stage("load"):
        denoiser.to(device, getattr(torch, config.dtype))
    denoiser = vp_denoiser(denoiser, schedule)  # flow-matching and EDM models answer in VP v-prediction
    s = Scan(denoiser, schedule, conds, config, progress, world, scan_state(resume, config, checkpoint_info, conds, device))
    swept = sweep(s, lpips, adherence_fn, memo)  # a second pass (fast mode, --reference) reads its first's
    if swept is None:  # not rank 0: its share went to rank 0
        return None
    sampled, measured, decided = swept.sampled, swept.measured, swept.decided
    # fast mode: borderline conditions re-sampled at full settings (collapsecheck.escalate)
    at_verdict = measured.stats.samples[s.scales.index(config.guidance_scale)]
    grids = FullGrids(s)  # fast mode's full-setting grids, drawn once for the escalation and --data-images
    decided, escalated = escalate(s, decided, at_verdict, lpips, grids)
    with stage("data images") as timed:  # --data-images: rho and the null's share, at full settings near a threshold
        against_data = measure_against_data(s, decided, at_verdict, lpips, grids)
        timed.nfe = against_data.nfe
    decided = hints_judged_by_cells(s, decided, against_data.cells)  # a hint read against its part of the data
    recovery, recovery_nfe = recovery_probes(s, measured, decided, lpips, adherence_fn)
    nfe = swept.nfe + recovery_nfe + escalated.nfe + timed.nfe
    with stage("assemble"):
        result = escalated.report(assemble(
            s, sampled, measured, decided, recovery, checkpoint_info, posterior_profile=swept.posterior,
            lpips=lpips.status, nfe=nfe, batch_size_used=s.batch_size, device=f"{device.type} ({config.dtype})", seconds=0.0,
            world_size=world.size))
        against_data.attach(result)
    with stage("training images and features"):
        result = add_witnesses(result, config, lpips.metric, device)  # --features, --train-images
    result.seconds = time.perf_counter() - started  # their time included
    return result


def assemble(s: Scan, sampled: Sampled, measured: Measured, decided: Decided, recovery: list, info: dict,
             **run_facts) -> ScanResult:
    """The result of a scan from its stages' outputs; ``run_facts``: the ScanResult fields the caller
    measured (posterior_profile, lpips, nfe, batch_size_used, device, seconds)."""
    config, null, guidance, collapse = s.config, decided.null, decided.guidance, decided.collapse
    wi = s.scales.index(config.guidance_scale)
    in_range = sample_range(config, measured.stats, wi)
    unreliable = [] if in_range.reliable else [in_range.reason]
    return ScanResult(
        verdict=collapse.verdict,
        reasons=list(collapse.reasons) + unreliable,
        sample_range=in_range,
        decided_by=list(collapse.evidence),
        recommendations=recommendations(collapse.verdict, guidance.verdict, null.verdict, s.conds.kind, recovery,
                                        config.recovery, some_collapsed_alone=collapsed_without_base(
                                            [c.verdict for c in decided.conditions], config.reference is not None)),
        guidance=GuidanceResult(
            verdict=guidance.verdict,
            reasons=list(guidance.reasons) + (["UNRELIABLE: the samples leave the data range (see the collapse "
                                               "verdict's reasons)"] if unreliable else []),
            decided_by=list(guidance.evidence),
            null_branch=null_result(null, decided, sampled),
            sweep=decided.sweep,
            max_shift=decided.max_shift,
            recovery=recovery,
            adherence_metric=measured.adherence_name,
            adherence_chance=None if decided.implicit is None else decided.implicit.chance,
            implicit_levels=[] if decided.implicit is None else list(decided.implicit.levels),
            kind="embedded" if getattr(s.denoiser, "embedded_guidance", False) else "cfg",
        ),
        conditions=decided.conditions,
        eps_profile=eps_profile(s, sampled, decided),
        checkpoint={
            **info,
            "condition_kind": s.conds.kind,
            "prediction_type": s.schedule.model_prediction,
            "notes": list(info.get("notes", [])) + list(s.conds.notes) + noise_like_notes(float(measured.stats.pixel_rms[wi].mean())) + s.notes,
        },
        condition_set=describe(s.conds),
        config=_config_dict(config),
        versions=_versions(),
        seeds=config.seed_list,
        verdict_guidance_scale=config.guidance_scale,
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        samples=measured.stats.samples.cpu(),
        **run_facts,
    )


def null_result(null, decided: Decided, sampled: Sampled) -> NullBranchResult:
    """The null-branch finding with the null ratio it read and the hull residual beside it."""
    n = decided.implicit.null if decided.implicit is not None else None
    return NullBranchResult(verdict=null.verdict, reasons=list(null.reasons), residual=decided.residual,
                            probes=null_probes(sampled), decided_by=list(null.evidence),
                            null_ratio=None if n is None else n.ratio, null_ratio_low=None if n is None else n.low,
                            null_ratio_high=None if n is None else n.high, null_samples=None if n is None else n.samples,
                            null_contrast=None if n is None else n.contrast, null_spread=decided.null_spread,
                            **coverage_fields(decided.coverage))


def coverage_fields(c: Optional[NullCoverage]) -> dict:
    if c is None:
        return {}
    return {"null_coverage": c.entropy, "null_coverage_low": c.low, "null_coverage_high": c.high,
            "null_coverage_largest": c.largest_share, "null_coverage_samples": c.samples}


def null_probes(sampled: Sampled) -> list[NullProbe]:
    """The null-branch test at each probed step."""
    st = sampled.null_stats
    if st is None:
        return []
    return [NullProbe(step=k, timestep=t, alpha_bar=a, centroid_gap=g, hull_residual=h)
            for k, t, a, g, h in zip(sampled.probe_steps, st.timesteps, st.alpha_bar, st.centroid_gap, st.hull_residual)]


def eps_profile(s: Scan, sampled: Sampled, decided: Decided) -> list[ProfilePoint]:
    """The condition's pull (eps ratio, cosine) at each sampling step, means over conditions."""
    timesteps = sampled.grid.timesteps
    abar = s.schedule.alpha_bar(timesteps)
    return [
        ProfilePoint(step=k, timestep=int(timesteps[k]), alpha_bar=float(abar[k]),
                     eps_ratio=float(decided.eps_ratio[k].mean()), eps_cos=float(decided.eps_cos[k].mean()))
        for k in range(len(timesteps))
    ]


def _lpips(config: ScanConfig, device: torch.device):
    """(metric or None, status). An explicit --lpips-weights that cannot be used is a usage error."""
    if not config.lpips:
        return None, LpipsStatus(available=False, reason="disabled with --no-lpips")
    from .measure.lpips import LpipsUnavailable, load_lpips

    try:
        metric = load_lpips(config.lpips_net, config.lpips_weights, device=device)
    except LpipsUnavailable as exc:
        if config.lpips_weights:
            prefix = "" if str(config.lpips_weights) in exc.reason else f"--lpips-weights {config.lpips_weights}: "
            raise UsageError(prefix + exc.reason) from None
        return None, LpipsStatus(available=False, net=config.lpips_net, reason=exc.reason)
    return metric, LpipsStatus(available=True, net=config.lpips_net, source=metric.source)


def _versions() -> dict:
    import diffusers

    return {
        "collapsecheck": __version__,
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "python": platform.python_version(),
    }


def sample_range(config: ScanConfig, stats, wi: int) -> SampleRange:
    """The data-range check of the samples at the verdict scale (sweep index ``wi``)."""
    outside, variance, max_abs = (float(getattr(stats, n)[wi]) for n in ("outside_share", "value_variance", "max_abs"))
    reason = out_of_range_reason(outside, variance, max_abs, config.sampler, config.thresholds)
    return SampleRange(sampler=config.sampler, outside_share=outside, variance=variance, max_abs=max_abs,
                       reliable=reason is None, reason=reason)


def _config_dict(config: ScanConfig) -> dict:
    d = config.as_dict()
    d["guidance"] = list(config.guidance)
    d["escalate_also"] = list(config.escalate_also)
    return d
