"""``--dry-run``: what a scan will cost, before any sampling. Never prints, never exits.

It loads the checkpoint and its conditions as the scan would, counts the network evaluations (NFE) each
stage will spend, and runs the network on one batch of ``--batch-size`` inputs to see what a batch needs:

* memory: on CUDA measured, ``torch.cuda.max_memory_allocated`` over the batch (weights included); on
  other devices estimated: the weights plus the sum of every leaf module's output for the batch, an upper
  bound, since inference frees most activations as it goes;
* time: a second batch, timed; the estimate is NFE / batch size x that time (network only: decoding,
  LPIPS and the measures come on top).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from .config import FULL_STEPS, ScanConfig
from .load.conditions import ConditionSet
from .measure.coverage import applies as coverage_applies, coverage_nfe
from .measure.implicit import FAST, FULL, implicit_nfe
from .model.guard import evaluating
from .model.parametrization import vp_denoiser
from .run import conditions_of, load, resolve_device, schedule_for
from .sample.probes import null_probe_steps
from .stages import POSTERIOR_PROBES, POSTERIOR_SEEDS, null_column, recovery_variants


@dataclass
class DryRun:
    """What a scan will cost. ``nfe``: per stage, in the order they run (recovery only if not healthy)."""

    nfe: dict
    conditions: int
    condition_source: str
    batch_size: int
    memory_bytes: int
    memory_method: str  # "measured" (CUDA) or "estimated"
    seconds_per_batch: float
    device: str

    @property
    def total_nfe(self) -> int:
        return sum(self.nfe.values())

    @property
    def seconds(self) -> float:
        """Network time of every stage, recovery probes included, from the timed batch."""
        return self.total_nfe / self.batch_size * self.seconds_per_batch


def dry_run(config: ScanConfig) -> DryRun:
    """Load as the scan would, count its NFE and measure one batch of the network."""
    device = resolve_device(config.device)
    ckpt, denoiser = load(config)
    conds = conditions_of(config, ckpt, denoiser)
    schedule = schedule_for(config, ckpt, denoiser)
    denoiser.to(device, getattr(torch, config.dtype))
    net = vp_denoiser(denoiser, schedule)
    with evaluating("running one batch for --dry-run", config.batch_size):  # the model raising: exit 3, OOM: 4
        memory, method, seconds = measure_batch(net, conds, config.batch_size, device)
    return DryRun(stage_nfe(config, conds, schedule), len(conds), conds.source, config.batch_size, memory, method,
                  seconds, f"{device} ({config.dtype})")


def stage_nfe(config: ScanConfig, conds: ConditionSet, schedule) -> dict:
    """Network evaluations per stage, as the stages count them (the posterior profile: at most)."""
    C, S, K = len(conds), config.seeds, config.steps
    from_null = null_column(config)
    columns = [w for w in config.guidance if not (from_null and w == 0.0)]
    nfe = {"sampling": 2 * len(columns) * C * S * K}
    probe = conds.complete_set()
    test_null = len(probe) >= 2 and not config.guidance_distilled
    if test_null or from_null:
        steps = null_probe_steps(schedule, schedule.timesteps(K), complete=probe.complete) if test_null else []
        run = K if from_null or not steps else max(steps) + 1
        nfe["null branch"] = S * run + len(steps) * len(probe) * S
    if config.posterior:
        from .measure.posterior import default_probe_timesteps

        cells, points = C * min(S, POSTERIOR_SEEDS), len(default_probe_timesteps(schedule))
        nfe["posterior (at most)"] = cells * (10 + points) + 2 * cells * POSTERIOR_PROBES * points
    settings = FAST if config.mode == "fast" else FULL
    nfe["implicit classifier"] = implicit_nfe(len(config.guidance), C, S, settings, not config.guidance_distilled)
    if coverage_applies(config.guidance_distilled, conds.kind == "control"):  # the null's own w = 0 samples
        nfe["null coverage"] = coverage_nfe(C, max(K, FULL_STEPS))
    if config.recovery:
        variants = recovery_variants(config.guidance, config.guidance_scale, control=conds.kind == "control")
        nfe["recovery probes (if not healthy)"] = 2 * len(variants) * C * S * K
    if config.reference:  # the base model's grid and null-branch probe, the same conditions and seeds
        nfe["--reference base model (same grid)"] = nfe["sampling"] + nfe.get("null branch", 0)
    return nfe


def measure_batch(net, conds: ConditionSet, batch: int, device: torch.device) -> tuple[int, str, float]:
    """(bytes a batch needs, "measured" or "estimated", seconds of one batch) for ``batch`` inputs."""
    shape = (batch,) + tuple(net.sample_shape)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(device)
    t = torch.full((batch,), 500, dtype=torch.long, device=device)
    cond = conds.values[torch.zeros(batch, dtype=torch.long)].to(device)
    cuda = device.type == "cuda"
    with torch.inference_mode():
        if cuda:
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            net(x, t, cond)
            torch.cuda.synchronize(device)
            memory, method = int(torch.cuda.max_memory_allocated(device)), "measured"
        else:
            memory, method = estimated_memory(net, x, t, cond), "estimated"
        started = time.perf_counter()
        net(x, t, cond)
        if cuda:
            torch.cuda.synchronize(device)
    return memory, method, time.perf_counter() - started


def estimated_memory(net, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> int:
    """Weights plus every leaf module's output for one batch (an upper bound on the activations)."""
    model = net.model if hasattr(net, "model") else None
    modules = [m for m in model.modules() if not list(m.children())] if isinstance(model, torch.nn.Module) else []
    outputs = []

    def record(_module, _inputs, out):
        for o in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(o, torch.Tensor):
                outputs.append(o.numel() * o.element_size())

    hooks = [m.register_forward_hook(record) for m in modules]
    try:
        net(x, t, cond)
    finally:
        for h in hooks:
            h.remove()
    weights = sum(p.numel() * p.element_size() for p in model.parameters()) if modules else 0
    return int(weights + sum(outputs) + 2 * x.numel() * x.element_size())
