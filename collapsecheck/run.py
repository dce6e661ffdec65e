"""``scan(config) -> ScanResult``: load, sample, measure, decide. Never prints, never exits."""
from __future__ import annotations

import dataclasses
import datetime as _dt
import os
import platform
import time
from contextlib import contextmanager
from typing import Callable, Iterator, Optional, Sequence

import torch

from . import __version__
from .verdict.advice import recommendations
from .load.dispatch import LoadedCheckpoint, load_checkpoint
from .load.conditions import ConditionSet, class_conditions, describe, hint_conditions, pooled_conditions, tensor_conditions
from .config import ScanConfig
from .model.denoiser import Denoiser, build_denoiser, expected_condition_shape
from .errors import LoadError, UsageError, first_line
from .measure.eps import null_branch_stats
from .result import (
    ConditionResult,
    GuidanceResult,
    LpipsStatus,
    NullBranchResult,
    ProfilePoint,
    RecoveryProbe,
    ScanResult,
    SweepPoint,
)
from .measure.adherence import load_adherence
from .model.families import distilled_hint
from .sample.probes import null_probe_steps
from .verdict.recovery import recovery_outcome
from .measure.diversity import BUILTIN_ADHERENCE, measure_grid
from .model.parametrization import vp_denoiser
from .sample.grid import probe_null_branch, sample_grid
from .sample.variants import Variant, cads, control_strength, interval, plain
from .model.schedule import Schedule, schedule_from_config
from .verdict import rules as V
#: ``progress(description, total)`` returns an ``advance(n)`` callback; the CLI draws a bar with it
ProgressFactory = Callable[[str, int], Callable[[int], None]]

def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available; use --device cpu")
    return torch.device(name)


def resolve_conditions(config: ScanConfig, denoiser: Denoiser, model_config: dict) -> ConditionSet:
    """The condition set the config asks for, checked against what the model takes."""
    if denoiser.kind == "control":
        if not config.cond:
            raise UsageError("a ControlNet is conditioned on hint images: pass a folder of them (or a tensor file "
                             "(N, C, H, W) in [0, 1]) with --cond")
        return hint_conditions(config.cond, denoiser.hint_shape)
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


def _lpips_means(metric, samples: torch.Tensor, status: LpipsStatus, advance=None):
    """Mean pairwise LPIPS per (guidance, condition): ((W, C) tensor or None, updated status)."""
    from .measure.lpips import LpipsUnavailable

    try:
        with _evaluating("computing LPIPS"):
            means = metric.mean_pairwise(samples, advance).float()  # the backbone over many cells at once
    except LpipsUnavailable as exc:  # e.g. latents with 4 channels
        return None, LpipsStatus(available=False, net=status.net, source=status.source, reason=exc.reason)
    return means, LpipsStatus(available=True, net=status.net, source=status.source, note=metric.resize_note)


@contextmanager
def _evaluating(what: str) -> Iterator[None]:
    """Turn a failure inside the network into one LoadError line."""
    try:
        yield
    except (LoadError, UsageError):
        raise
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:
        first = first_line(exc)
        raise LoadError(f"the model failed while {what}: {first}") from exc


def _versions() -> dict:
    import diffusers

    return {
        "collapsecheck": __version__,
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "python": platform.python_version(),
    }


def scan(config: ScanConfig, progress: Optional[ProgressFactory] = None) -> ScanResult:
    """Run a scan as ``config`` says and return its result."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    resolve_device(config.device)  # a missing CUDA device is a usage error before any loading
    ckpt: LoadedCheckpoint = load_checkpoint(
        config.checkpoint,
        config=config.model_config,
        scheduler=config.scheduler,
        weights=config.weights,
        prediction_type=config.prediction_type,
        base=config.base,
        lora=config.lora,
        lora_scale=config.lora_scale,
        prompts=config.prompts,
        negative_prompt=config.negative_prompt,
        model=config.model,
        controlnet_scale=config.controlnet_scale,
    )
    schedule: Schedule = schedule_from_config(ckpt.scheduler_config, config.prediction_type)
    denoiser = ckpt.denoiser
    if denoiser is None:
        denoiser = build_denoiser(ckpt.model, ckpt.model_class, ckpt.model_config, config.concat_order)
        denoiser.decoder = ckpt.decoder
    conds = ckpt.conditions
    if conds is not None and config.cond:
        raise UsageError("--prompts gives the conditions of this pipeline; leave out --cond")
    if conds is None:
        from .model.denoiser import condition_config

        conds = resolve_conditions(config, denoiser, condition_config(ckpt.model_class, ckpt.model_config))
    notes = list(ckpt.notes) + denoiser.notes()
    scheduler_source = ckpt.scheduler_source
    if schedule.table is not None:  # flow matching or EDM, sampled in VP terms: say what the model really is
        scheduler_source = f"{scheduler_source} ({schedule.table.description})"
        notes.extend(schedule.table.notes)
    hint = distilled_hint(ckpt.model_config, ckpt.scheduler_config)
    if hint and not config.guidance_distilled:
        config = dataclasses.replace(config, guidance_distilled=True)
        notes.append(f"treated as guidance-distilled: {hint}")
    info = {
        "path": str(config.checkpoint),
        "source": ckpt.source,
        "model_class": ckpt.model_class,
        "scheduler_source": scheduler_source,
        "notes": notes,
        "content_hash": ckpt.content_hash,
        "decoder": ckpt.decoder_info,
    }
    return evaluate(denoiser, schedule, conds, config, info, progress, started)


def evaluate(
    denoiser: Denoiser,
    schedule: Schedule,
    conds: ConditionSet,
    config: ScanConfig,
    checkpoint_info: dict,
    progress: Optional[ProgressFactory] = None,
    started: Optional[float] = None,
) -> ScanResult:
    """Sample, measure and decide for a loaded denoiser. ``checkpoint_info`` is copied into the result."""
    started = time.perf_counter() if started is None else started
    th = config.thresholds
    device = resolve_device(config.device)
    dtype = getattr(torch, config.dtype)
    metric, lpips_status = _lpips(config, device)
    adherence_fn = load_adherence(config.adherence) if config.adherence else None
    denoiser.to(device, dtype)
    denoiser = vp_denoiser(denoiser, schedule)  # flow-matching and EDM models answer in VP v-prediction
    seeds = config.seed_list
    C = len(conds)
    gs = config.guidance_scale

    # w = 0 ignores the condition: its samples come from one null trajectory per seed (the null-branch
    # probe's, run to the end), not from C conditional-and-null trajectories
    scales = list(config.guidance)
    null_column = 0.0 in scales and gs != 0.0
    advance = progress("sampling", config.steps) if progress else None
    with _evaluating("sampling"):
        grid = sample_grid(denoiser, schedule, conds, seeds, [w for w in scales if not (null_column and w == 0.0)],
                           config.steps, config.batch_size, advance)
    nfe = grid.nfe
    null_stats, probe_steps, null_final = None, [], None
    probe_conds = conds.complete_set()  # all classes, even when --classes scans a few
    test_null = len(probe_conds) >= 2 and not config.guidance_distilled
    if test_null or null_column:
        probe_steps = null_probe_steps(schedule, grid.timesteps, complete=probe_conds.complete) if test_null else []
        advance = progress("null branch", config.steps) if progress else None
        with _evaluating("probing the null branch"):
            probe = probe_null_branch(denoiser, schedule, probe_conds if test_null else conds, seeds, config.steps,
                                      probe_steps, config.batch_size, advance, run_to_end=null_column)
        nfe += probe.nfe
        null_final = probe.final
        if test_null:
            null_stats = null_branch_stats(probe)
    raw = torch.stack([
        null_final.unsqueeze(0).expand((C,) + tuple(null_final.shape)) if null_column and w == 0.0
        else grid.samples[grid.at(w)]
        for w in scales
    ])  # (W, C, S, ...) in the order of config.guidance

    posterior = []
    if config.posterior:
        posterior, posterior_nfe = _posterior(denoiser, schedule, conds, seeds, config, progress)
        nfe += posterior_nfe

    def lpips_means(samples: torch.Tensor) -> Optional[torch.Tensor]:
        nonlocal lpips_status
        if metric is None:
            return None
        advance = progress("LPIPS", samples.shape[0] * C) if progress else None
        means, lpips_status = _lpips_means(metric, samples, lpips_status, advance)
        return means

    one = scales.index(1.0)
    images = denoiser.decode_grid(raw, config.batch_size)  # latents -> images; identity for pixel models
    reference = images[one].clamp(-1.0, 1.0)
    stats = measure_grid(images, reference, th, conds, lpips_means, adherence_fn)
    adherence_name = config.adherence if adherence_fn else (BUILTIN_ADHERENCE if stats.adherence is not None else None)

    wi = scales.index(gs)
    ratio = grid.eps_ratio[:, grid.at(gs)].mean(-1).cpu()  # (K, C)
    cosine = grid.eps_cos[:, grid.at(gs)].mean(-1).cpu()
    conditions = []
    for c in range(C):
        f = stats.finding(wi, c, th)
        conditions.append(
            ConditionResult(
                index=c,
                label=conds.labels[c],
                verdict=f.verdict,
                reasons=list(f.reasons),
                pixel_rms=float(stats.pixel_rms[wi, c]),
                pixel_std=float(stats.pixel_std[wi, c]),
                near_duplicates=float(stats.near_duplicates[wi, c]),
                seed_share=stats.value("seed_share", wi, c),
                lpips=stats.value("lpips", wi, c),
                eps_ratio=float(ratio[:, c].mean()),
                eps_cos=float(cosine[:, c].mean()),
            )
        )
    collapse = stats.overall(wi, th)
    sweep = [
        SweepPoint(
            w=w,
            pixel_rms=float(stats.pixel_rms[i].mean()),
            near_duplicates=float(stats.near_duplicates[i].mean()),
            seed_share=stats.mean("seed_share", i),
            lpips=stats.mean("lpips", i),
            shift_from_w1=float(stats.shift_from_w1[i]),
            adherence=stats.mean("adherence", i),
            verdict=stats.overall(i, th).verdict,
        )
        for i, w in enumerate(scales)
    ]
    others = [p.shift_from_w1 for p in sweep if p.w != 1.0]
    max_shift = max(others) if others else None
    adherence_change = None
    if adherence_fn is not None and max(config.guidance) > 1.0:
        adherence_change = stats.mean("adherence", scales.index(max(scales))) - stats.mean("adherence", one)

    residual = None if null_stats is None else max(null_stats.hull_residual)
    base_model = conds.kind == "control"  # a ControlNet's null is its base model, trained on its own
    null = V.null_branch(residual, th, distilled=config.guidance_distilled, base_model=base_model)
    guidance = V.guidance_verdict(null, max_shift, th, adherence_change, eps_ratio=float(ratio.mean()),
                                  base_model=base_model)
    probes = []
    if null_stats is not None:
        probes = [
            {"step": k, "timestep": t, "alpha_bar": a, "centroid_gap": g, "hull_residual": h}
            for k, t, a, g, h in zip(probe_steps, null_stats.timesteps, null_stats.alpha_bar,
                                     null_stats.centroid_gap, null_stats.hull_residual)
        ]

    # recovery probes: sampled only when the verdict scale is not healthy
    recovery = []
    if config.recovery and collapse.verdict != "healthy":
        variants = _recovery_variants(config.guidance, gs, control=conds.kind == "control")
        advance = progress("recovery probes", config.steps) if progress else None
        with _evaluating("sampling the recovery probes"):
            rgrid = sample_grid(denoiser, schedule, conds, seeds, variants, config.steps, config.batch_size, advance)
        nfe += rgrid.nfe
        rstats = measure_grid(denoiser.decode_grid(rgrid.samples, config.batch_size), reference, th, conds, lpips_means, adherence_fn)
        base_adherence = stats.mean("adherence", wi)
        for i, v in enumerate(variants):
            verdict_v = rstats.overall(i, th).verdict
            adh = rstats.mean("adherence", i)
            kept = None if adh is None or not base_adherence else adh / base_adherence
            # a ControlNet's null is the base model, a trained model: drawing on it is no flaw
            uses_null = conds.kind != "control" and (v.switch_time is not None or (v.is_plain and v.scale < 1.0))
            works, why = recovery_outcome(collapse.verdict, verdict_v, uses_null, null.verdict, kept)
            recovery.append(
                RecoveryProbe(
                    name=v.name, description=_describe_variant(v, config.controlnet_scale), uses_null_branch=uses_null,
                    pixel_rms=float(rstats.pixel_rms[i].mean()), seed_share=rstats.mean("seed_share", i),
                    lpips=rstats.mean("lpips", i), adherence=adh, shift_from_w1=float(rstats.shift_from_w1[i]),
                    verdict=verdict_v, works=works, reason=why,
                )
            )

    profile_abar = schedule.alpha_bar(grid.timesteps)
    profile = [
        ProfilePoint(
            step=k,
            timestep=int(grid.timesteps[k]),
            alpha_bar=float(profile_abar[k]),
            eps_ratio=float(ratio[k].mean()),
            eps_cos=float(cosine[k].mean()),
        )
        for k in range(len(grid.timesteps))
    ]
    advice = recommendations(collapse.verdict, guidance.verdict, null.verdict, conds.kind, recovery, config.recovery)
    return ScanResult(
        verdict=collapse.verdict,
        reasons=list(collapse.reasons),
        recommendations=advice,
        guidance=GuidanceResult(
            verdict=guidance.verdict,
            reasons=list(guidance.reasons),
            null_branch=NullBranchResult(verdict=null.verdict, reasons=list(null.reasons), residual=residual, probes=probes),
            sweep=sweep,
            max_shift=max_shift,
            recovery=recovery,
            adherence_metric=adherence_name,
        ),
        conditions=conditions,
        eps_profile=profile,
        lpips=lpips_status,
        checkpoint={
            **checkpoint_info,
            "condition_kind": conds.kind,
            "prediction_type": schedule.model_prediction,
            "notes": list(checkpoint_info.get("notes", [])) + list(conds.notes) + _sanity_notes(stats, wi),
        },
        condition_set=describe(conds),
        config=_config_dict(config),
        versions=_versions(),
        seeds=seeds,
        verdict_guidance_scale=gs,
        nfe=nfe,
        seconds=time.perf_counter() - started,
        device=f"{device.type} ({config.dtype})",
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        posterior_profile=posterior,
        samples=stats.samples.cpu(),
    )


#: samples farther apart than this (mean pairwise RMS, pixels clipped to [-1, 1]) are as far apart as
#: clipped Gaussian noise (about 1.1): the diversity numbers then measure noise, not images
NOISE_LIKE_RMS = 1.0


def _sanity_notes(stats, wi: int) -> list[str]:
    rms = float(stats.pixel_rms[wi].mean())
    if rms > NOISE_LIKE_RMS:
        return [
            f"the samples are as far apart as noise (mean pixel RMS {rms:.2f} > {NOISE_LIKE_RMS:g}): check "
            "--concat-order, the condition's value range, --prediction-type and the scheduler; the diversity "
            "numbers may measure noise rather than images"
        ]
    return []


#: the posterior profile uses at most this many seeds and Hutchinson probes per cell
POSTERIOR_SEEDS = 8
POSTERIOR_PROBES = 2


def _posterior(denoiser, schedule, conds, seeds, config, progress) -> tuple[list, int]:
    """Posterior variance by timestep (Tweedie), means over conditions, and the forward passes it cost."""
    from .measure.posterior import posterior_profile

    method = "fd" if config.dtype == "float32" else "auto"  # a JVP costs 5-10 forward passes on CPU
    with _evaluating("measuring the posterior variance"):
        prof = posterior_profile(
            denoiser, schedule, conds, seeds[:POSTERIOR_SEEDS], probes=POSTERIOR_PROBES,
            batch_size=config.batch_size, method=method,
        )
    points = [
        {
            "timestep": int(prof.timesteps[p]),
            "alpha_bar": float(prof.alpha_bar[p]),
            "posterior_var": float(prof.posterior_var[p].mean()),
            "x0hat_var": float(prof.x0hat_var[p].mean()),
            "variance_share": float(prof.variance_share[p].mean()),
        }
        for p in range(len(prof.timesteps))
    ]
    return points, prof.nfe + 2 * prof.jvps


#: lower guidance scales tried as recovery probes, as fractions of the verdict scale (w = 0 is not one:
#: it drops the condition altogether; the sweep reports it as the null branch's own samples)
RECOVERY_LOW_FRACTIONS = (0.5, 0.25)


#: ControlNet scans also try the ControlNet at these fractions of its conditioning scale
RECOVERY_CONTROL_STRENGTHS = (0.8, 0.5)


def _recovery_variants(guidance: Sequence[float], scale: float, control: bool = False) -> list[Variant]:
    lows = [plain(scale * f) for f in RECOVERY_LOW_FRACTIONS if scale * f not in guidance]
    controls = [control_strength(scale, f) for f in RECOVERY_CONTROL_STRENGTHS] if control else []
    return controls + lows + [interval(scale), cads(scale)]


def _describe_variant(v: Variant, controlnet_scale: float = 1.0) -> str:
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


def _config_dict(config: ScanConfig) -> dict:
    d = config.as_dict()
    d["guidance"] = list(config.guidance)
    return d


def gate(result: ScanResult, fail_on: str) -> bool:
    """Does the result pass the gate? ``fail_on``: collapsed, at_risk, not_steerable or never."""
    if fail_on == "never":
        return True
    if fail_on in V.GUIDANCE_ORDER:
        return not V.worse_or_equal(result.guidance.verdict, fail_on)
    return not V.worse_or_equal(result.verdict, fail_on)
