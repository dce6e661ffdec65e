"""A scan at Stable Diffusion 1.5 size on one GPU: time, NFE, and the ratio to the FLOP bound.

Builds the SD 1.5 ``UNet2DConditionModel`` from its config written out below (random weights, no
downloads), and scans 16 conditions (random text embeddings (16, 77, 768), zeros as the null) x 16
seeds x 25 DDIM steps with classifier-free guidance in bfloat16, with collapsecheck's
:func:`~collapsecheck.sample.grid.sample_grid`. It prints

* time, NFE, peak GPU memory;
* FLOPs per network evaluation (``torch.utils.flop_counter.FlopCounterMode`` on one forward at batch 1,
  on the meta device: convolutions, matmuls and attention; elementwise work is not counted);
* the FLOP bound ``NFE x FLOPs / peak`` and the ratio ``time / bound`` (1 = the card's peak;
  1 / ratio is the model-FLOP utilisation). Peak dense bf16: H100 SXM and H200 989 TFLOP/s, H100 PCIe
  756; other cards need ``--peak-tflops``;
* the same NFE through a bare loop of the network (same batch, same inputs): ``sample_grid / network``;
* the fast-mode measures: the cost of one probe (JVP and central difference against a forward pass,
  same batch), the first-step x0hat diversity and the posterior-variance profile (JVP and finite
  differences) at a few seeds: their time and NFE.

    python benchmarks/gpu_check.py                 # on a CUDA machine: a few minutes on an H100/H200
    python benchmarks/gpu_check.py --dry-run       # CPU: meta-device FLOP count + the whole code path
                                                   # on a narrow copy of the UNet, in under a minute
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from collapsecheck.load.conditions import ConditionSet  # noqa: E402
from collapsecheck.model.denoiser import Denoiser  # noqa: E402
from collapsecheck.model.schedule import schedule_from_config  # noqa: E402

#: runwayml/stable-diffusion-v1-5 unet/config.json, written out (diffusers defaults elsewhere)
SD15_UNET = dict(
    sample_size=64,
    in_channels=4,
    out_channels=4,
    center_input_sample=False,
    flip_sin_to_cos=True,
    freq_shift=0,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    block_out_channels=(320, 640, 1280, 1280),
    layers_per_block=2,
    downsample_padding=1,
    mid_block_scale_factor=1,
    act_fn="silu",
    norm_num_groups=32,
    norm_eps=1e-5,
    cross_attention_dim=768,
    attention_head_dim=8,
)

#: runwayml/stable-diffusion-v1-5 scheduler/scheduler_config.json (PNDM; the betas are what matter)
SD15_SCHEDULER = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "clip_sample": False,
    "prediction_type": "epsilon",
}

#: the dry run's narrow copy: the same blocks, attention and text width, at 1/10 of the channels
DRY_RUN_UNET = {**SD15_UNET, "block_out_channels": (32, 64, 64, 64), "sample_size": 16}

#: dense bf16 tensor-core peaks, TFLOP/s, by a substring of torch.cuda.get_device_name
PEAK_TFLOPS = (("H100 PCIe", 756.0), ("H100", 989.0), ("H200", 989.0), ("A100", 312.0))

TOKENS, WIDTH = 77, 768


def unet(config: dict, device: str | torch.device):
    from diffusers import UNet2DConditionModel

    with torch.device(device):
        return UNet2DConditionModel(**config).eval()


def flops_per_evaluation(config: dict) -> int:
    """FLOPs of one forward at batch 1 (conditional), counted on the meta device."""
    from torch.utils.flop_counter import FlopCounterMode

    model = unet(config, "meta")
    size = config["sample_size"]
    x = torch.empty(1, config["in_channels"], size, size, device="meta")
    emb = torch.empty(1, TOKENS, config["cross_attention_dim"], device="meta")
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x, torch.tensor([500], device="meta"), encoder_hidden_states=emb)
    return int(counter.get_total_flops())


def peak_tflops(device: torch.device, given: float | None) -> float | None:
    if given is not None:
        return given
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, value in PEAK_TFLOPS:
        if key in name:
            return value
    return None


def conditions(count: int) -> ConditionSet:
    g = torch.Generator().manual_seed(0)
    return ConditionSet(
        kind="cross_attn",
        values=torch.randn(count, TOKENS, WIDTH, generator=g),
        null=torch.zeros(1, TOKENS, WIDTH),
        labels=tuple(f"emb {i}" for i in range(count)),
        source="random embeddings",
        null_source="zeros",
    )


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, fn):
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - t0


def bare_loop(denoiser, schedule, conds, seeds, steps, batch_size) -> int:
    """The network alone at sample_grid's NFE and batch: conditional and null halves per chunk."""
    from collapsecheck.sample.grid import initial_noise

    device = denoiser.device
    C, S = len(conds), len(seeds)
    N = C * S
    x = initial_noise(seeds, denoiser.sample_shape).to(device).repeat(C, 1, 1, 1)
    values = conds.values.to(device).repeat_interleave(S, dim=0)
    null = conds.null.to(device)
    timesteps = schedule.timesteps(steps).to(device)
    chunk = max(1, batch_size // 2)
    nfe = 0
    with torch.inference_mode():
        for k in range(steps):
            for n0 in range(0, N, chunk):
                n1 = min(N, n0 + chunk)
                xc = x[n0:n1]
                denoiser(torch.cat([xc, xc]), timesteps[k].expand(2 * (n1 - n0)),
                         torch.cat([values[n0:n1], null.expand((n1 - n0,) + tuple(null.shape[1:]))]))
                nfe += 2 * (n1 - n0)
    return nfe


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="CPU: FLOP count and the code path on a narrow UNet")
    parser.add_argument("--device", default=None, help="default: cuda (cpu with --dry-run)")
    parser.add_argument("--dtype", default=None, choices=("bfloat16", "float16", "float32"),
                        help="default: bfloat16 (float32 with --dry-run)")
    parser.add_argument("--conds", type=int, default=None, help="default 16 (2 with --dry-run)")
    parser.add_argument("--seeds", type=int, default=None, help="default 16 (2 with --dry-run)")
    parser.add_argument("--steps", type=int, default=None, help="default 25 (2 with --dry-run)")
    parser.add_argument("--guidance", type=float, default=7.5)
    parser.add_argument("--batch-size", type=int, default=64, help="network inputs per call")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the card's dense peak at this dtype")
    parser.add_argument("--no-bare", action="store_true", help="skip the bare network loop")
    parser.add_argument("--no-fast", action="store_true", help="skip the fast-mode measures")
    parser.add_argument("--fast-seeds", type=int, default=4)
    parser.add_argument("--json", default=None, help="also write the numbers to this file")
    args = parser.parse_args(argv)

    dry = args.dry_run
    device = torch.device(args.device or ("cpu" if dry else "cuda"))
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: run with --dry-run on CPU", file=sys.stderr)
        return 2
    dtype = getattr(torch, args.dtype or ("float32" if dry else "bfloat16"))
    C = args.conds or (2 if dry else 16)
    S = args.seeds or (2 if dry else 16)
    steps = args.steps or (2 if dry else 25)
    batch = args.batch_size if not dry else min(args.batch_size, 8)
    if dry:
        torch.set_num_threads(1)
    report: dict = {"dry_run": dry, "device": str(device), "dtype": str(dtype).replace("torch.", ""),
                    "conds": C, "seeds": S, "steps": steps, "guidance": args.guidance, "batch_size": batch}

    flops_full, t_flops = timed(torch.device("cpu"), lambda: flops_per_evaluation(SD15_UNET))
    report["flops_per_eval_sd15"] = flops_full
    print(f"SD 1.5 UNet: {flops_full / 1e12:.4f} TFLOP per evaluation at batch 1 (64x64 latent, 77x768 text; "
          f"counted on the meta device in {t_flops:.1f} s)")

    config = DRY_RUN_UNET if dry else SD15_UNET
    torch.manual_seed(0)
    size = config["sample_size"]
    (denoiser, t_build) = timed(device, lambda: Denoiser(model=unet(config, device), kind="cross_attn",
                                                         sample_shape=(4, size, size)).to(device, dtype))
    params = sum(p.numel() for p in denoiser.model.parameters())
    flops = flops_full if not dry else flops_per_evaluation(config)
    what = "SD 1.5 UNet" if not dry else "dry run: narrow copy of the SD 1.5 UNet"
    print(f"{what}: {params / 1e6:.1f}M params, {size}x{size} latent, {dtype}, {device}; built in {t_build:.1f} s")
    report.update(params=params, flops_per_eval=flops, sample_size=size)

    from collapsecheck.sample.grid import sample_grid

    schedule = schedule_from_config(SD15_SCHEDULER)
    conds = conditions(C)
    seeds = list(range(S))
    # warm-up: kernels, autotuning, allocator (one step of one full chunk)
    timed(device, lambda: sample_grid(denoiser, schedule, conditions(1), list(range(max(1, batch // 2))),
                                      [args.guidance], 1, batch))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    grid, t_grid = timed(device, lambda: sample_grid(denoiser, schedule, conds, seeds, [args.guidance], steps, batch))
    peak = peak_tflops(device, args.peak_tflops)
    bound = grid.nfe * flops / (peak * 1e12) if peak else None
    report.update(nfe=grid.nfe, seconds=t_grid, achieved_tflops=grid.nfe * flops / t_grid / 1e12, peak_tflops=peak,
                  flop_bound_seconds=bound, ratio_to_bound=(t_grid / bound) if bound else None)
    if device.type == "cuda":
        report["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 1024 ** 3
    print(f"scan: {C} conditions x {S} seeds x {steps} steps, guidance {args.guidance}, batch {batch}: "
          f"NFE {grid.nfe}, {t_grid:.2f} s ({1e3 * t_grid / grid.nfe:.2f} ms/NFE), "
          f"{report['achieved_tflops']:.1f} TFLOP/s achieved"
          + (f", peak memory {report['peak_memory_gib']:.1f} GiB" if "peak_memory_gib" in report else ""))
    if bound:
        print(f"FLOP bound: {grid.nfe} x {flops / 1e12:.4f} TFLOP / {peak:.0f} TFLOP/s = {bound:.2f} s; "
              f"time / bound = {t_grid / bound:.2f} (utilisation {100 * bound / t_grid:.0f} %)")
    else:
        print("FLOP bound: no peak known for this device; pass --peak-tflops")

    if not args.no_bare:
        nfe_bare, t_bare = timed(device, lambda: bare_loop(denoiser, schedule, conds, seeds, steps, batch))
        assert nfe_bare == grid.nfe
        report.update(bare_seconds=t_bare, overhead_ratio=t_grid / t_bare)
        print(f"bare network loop, same NFE and batch: {t_bare:.2f} s; sample_grid / network = {t_grid / t_bare:.3f} "
              f"(target <= 1.10)")

    if not args.no_fast:
        from collapsecheck.measure.posterior import jacobian_quadratic, posterior_profile, rademacher

        # a JVP through math attention holds the attention matrices twice: a smaller batch
        jvp_batch = max(1, batch // 8) if not dry else batch
        xb = torch.randn((jvp_batch, 4, size, size), generator=torch.Generator().manual_seed(1))
        eb = conds.values[:1].expand(jvp_batch, TOKENS, WIDTH).contiguous()
        vb = rademacher((1, jvp_batch, 4, size, size), torch.Generator().manual_seed(2))

        def forward():
            with torch.no_grad():
                return denoiser(xb.to(device), torch.full((jvp_batch,), 500, device=device), eb.to(device))

        cost = {}
        for name, fn in (("forward", forward),
                         ("jvp", lambda: jacobian_quadratic(denoiser, xb, 500, eb, vb, "jvp", jvp_batch)),
                         ("fd", lambda: jacobian_quadratic(denoiser, xb, 500, eb, vb, "fd", 2 * jvp_batch))):
            fn()  # warm-up
            cost[name] = min(timed(device, fn)[1] for _ in range(3))
        report["probe_cost"] = {"batch": jvp_batch, **cost}
        print(f"one probe at batch {jvp_batch}: forward {1e3 * cost['forward']:.1f} ms, JVP {1e3 * cost['jvp']:.1f} ms "
              f"({cost['jvp'] / cost['forward']:.1f}x), central difference {1e3 * cost['fd']:.1f} ms "
              f"({cost['fd'] / cost['forward']:.1f}x)")

        fast_seeds = list(range(args.fast_seeds))
        for method in ("jvp", "fd"):
            per_call = jvp_batch if method == "jvp" else batch
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            prof, t_prof = timed(device, lambda: posterior_profile(denoiser, schedule, conds, fast_seeds[:2], probes=2,
                                                                    batch_size=per_call, method=method))
            report[f"posterior_{method}"] = {
                "seconds": t_prof, "nfe": prof.nfe, "jvps": prof.jvps, "batch": per_call,
                "timesteps": prof.timesteps.tolist(), "posterior_var": prof.posterior_var.mean(1).tolist(),
                "variance_share": prof.variance_share.mean(1).tolist()}
            if device.type == "cuda":
                report[f"posterior_{method}"]["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 1024 ** 3
            print(f"posterior profile ({method}): {C} conditions x 2 seeds, 2 probes, t={prof.timesteps.tolist()}: "
                  f"NFE {prof.nfe} + {prof.jvps} JVPs (batch {per_call}), {t_prof:.2f} s; posterior var "
                  + ", ".join(f"{v:.3g}" for v in prof.posterior_var.mean(1).tolist()))

    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
