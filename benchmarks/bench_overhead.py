"""What does a whole scan cost against a bare DDIM + CFG loop of the same network? (issue 17: target <= 1.10)

Two programs, each timed by its own clock from loading the checkpoint to its result, interleaved in one
process over ``--reps`` repetitions (after one warm-up of each, so neither pays the one-off imports):

* ``scan``: the library's :func:`collapsecheck.scan` (in-process, the same code the CLI runs), its own timer
  (``ScanResult.seconds``: load to result: loading, sampling the guidance sweep, the null-branch probe, the
  measures, the verdicts, the result) and its own network-evaluation count (``ScanResult.nfe``);
* ``bare``: the smallest program that does the same network work by hand with diffusers alone:
  ``UNet2DModel.from_pretrained`` + ``DDIMScheduler.from_pretrained``, then a batched DDIM loop with
  classifier-free guidance (conditional and null halves in one batch of ``--batch-size`` network inputs,
  ``scheduler.step`` per chunk) over as many (class, seed) cells as make the scan's NFE (equal NFE, up
  to one cell of rounding), one generator per seed.

Each repetition gives the ratio of the scan's seconds per NFE to the bare loop's; the median over the
repetitions is the number (pairs measured seconds apart see the same machine load). One CPU thread by
default. The scan runs with ``--profile``, whose per-stage table is printed for the median repetition.

    python benchmarks/bench_overhead.py                                  # examples/digits-healthy, 16 seeds, 25 steps
    python benchmarks/bench_overhead.py --lpips --posterior --reps 7     # the scan's defaults: LPIPS and posterior on
    python benchmarks/bench_overhead.py --checkpoint examples/zoo/out/class_dropout --device cuda
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_loop(path: Path, device: torch.device, classes: int, null_class: int, seeds: int, steps: int,
              guidance: float, batch_size: int, nfe: int) -> tuple[float, int]:
    """Load the UNet and its scheduler with diffusers and run batched DDIM + CFG at ``nfe`` network
    evaluations (rounded down to whole cells). Returns (seconds, NFE)."""
    from diffusers import DDIMScheduler, UNet2DModel

    _sync(device)
    start = time.perf_counter()
    unet = UNet2DModel.from_pretrained(str(path / "unet")).to(device).eval()
    scheduler = DDIMScheduler.from_pretrained(str(path / "scheduler"))
    scheduler.set_timesteps(steps)
    cells = max(1, nfe // (2 * steps))
    shape = (unet.config.in_channels, unet.config.sample_size, unet.config.sample_size)
    x = torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(i % seeds)) for i in range(cells)])
    x = x.to(device)
    labels = (torch.arange(cells) // seeds % classes).to(device)
    null = torch.full((cells,), null_class, device=device)
    chunk = max(1, batch_size // 2)
    with torch.inference_mode():
        for t in scheduler.timesteps:
            for n0 in range(0, cells, chunk):
                n1 = min(cells, n0 + chunk)
                xc = x[n0:n1]
                out = unet(torch.cat([xc, xc]), t, class_labels=torch.cat([labels[n0:n1], null[n0:n1]])).sample
                cond, uncond = out.chunk(2)
                x[n0:n1] = scheduler.step(uncond + guidance * (cond - uncond), t, xc).prev_sample
    _sync(device)
    return time.perf_counter() - start, 2 * cells * len(scheduler.timesteps)


def run_scan(config):
    from collapsecheck.run import scan

    result = scan(config)
    return result.seconds, result.nfe, result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="examples/digits-healthy", help="a class-conditional UNet2DModel folder")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seeds", type=int, default=16)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lpips", action="store_true", help="LPIPS on (COLLAPSECHECK_LPIPS_WEIGHTS); default off")
    parser.add_argument("--posterior", action="store_true", help="the posterior profile on; default off")
    parser.add_argument("--recovery", action="store_true", help="recovery probes on (only run when not healthy)")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    from collapsecheck import make_config
    from collapsecheck.report.tables import profile_table

    path = (ROOT / args.checkpoint) if not Path(args.checkpoint).is_absolute() else Path(args.checkpoint)
    device = torch.device(args.device)
    config = make_config(checkpoint=str(path), device=args.device, seeds=args.seeds, steps=args.steps,
                         batch_size=args.batch_size, lpips=args.lpips, posterior=args.posterior,
                         recovery=args.recovery, lpips_weights=os.environ.get("COLLAPSECHECK_LPIPS_WEIGHTS"),
                         profile=True)
    from diffusers import UNet2DModel

    classes = UNet2DModel.load_config(str(path / "unet"))["num_class_embeds"] - 1
    bare = lambda nfe: bare_loop(path, device, classes, classes, args.seeds, args.steps, 3.0, args.batch_size, nfe)  # noqa: E731

    seconds, nfe, result = run_scan(config)  # warm-up: imports, allocator, kernels
    bare(nfe)
    rows = []
    for rep in range(args.reps):
        order = ("scan", "bare") if rep % 2 == 0 else ("bare", "scan")
        got, cpu = {}, {}
        for name in order:
            c0 = time.process_time()
            got[name] = run_scan(config) if name == "scan" else bare(nfe)
            cpu[name] = time.process_time() - c0
        (ss, sn, res), (bs, bn) = got["scan"], got["bare"]
        rows.append(((ss / sn) / (bs / bn), ss, sn, bs, bn, res, (cpu["scan"] / sn) / (cpu["bare"] / bn)))
    rows.sort(key=lambda r: r[0])
    median = statistics.median(r[0] for r in rows)
    median_cpu = statistics.median(r[6] for r in rows)
    mid = rows[len(rows) // 2]
    print(f"{args.checkpoint}: {classes} classes x {args.seeds} seeds x {args.steps} steps, guidance "
          f"{list(config.guidance)}, batch {args.batch_size}, LPIPS {'on' if args.lpips else 'off'}, posterior "
          f"{'on' if args.posterior else 'off'}, recovery {'on' if args.recovery else 'off'}; device {device}, "
          f"{args.threads} thread(s); {args.reps} interleaved reps; 1-min load average {os.getloadavg()[0]:.1f}")
    print(f"{'rep':>4} {'scan s':>8} {'scan NFE':>9} {'scan ms/NFE':>12} {'bare s':>8} {'bare NFE':>9} "
          f"{'bare ms/NFE':>12} {'ratio':>7} {'cpu ratio':>10}")
    for i, (ratio, ss, sn, bs, bn, _, cr) in enumerate(rows):
        print(f"{i:>4} {ss:8.3f} {sn:9d} {1e3 * ss / sn:12.4f} {bs:8.3f} {bn:9d} {1e3 * bs / bn:12.4f} {ratio:7.3f}"
              f" {cr:10.3f}")
    print(f"whole scan / bare DDIM+CFG loop, per NFE, median of {args.reps}: {median:.3f} "
          f"(min {rows[0][0]:.3f}, max {rows[-1][0]:.3f}; target <= 1.10: {'met' if median <= 1.10 else 'NOT met'})")
    best = min(r[1] / r[2] for r in rows) / min(r[3] / r[4] for r in rows)
    print(f"fastest scan / fastest bare loop, per NFE (the least disturbed runs of each): {best:.3f}")
    print(f"the same in process CPU time (each program's time.process_time; other jobs on the machine do not "
          f"stretch it): median {median_cpu:.3f}")
    from rich.console import Console

    Console(width=110).print(profile_table(mid[5].profile))
    return 0


if __name__ == "__main__":
    sys.exit(main())
