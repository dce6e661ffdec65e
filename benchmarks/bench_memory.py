"""Peak memory of a scan's sampling against the number of seeds, at a fixed batch size.

The claim to check: sampling keeps a small per-sample state (x, and two floats per cell and step for
the eps statistics) that grows linearly with the grid, while the network's activation memory is that of
one chunk of ``--batch-size`` inputs whatever the number of seeds. For each seed count the script
reports, separately:

* ``state``: the sampler's per-sample tensors, computed from their shapes (x_T, x, the statistics);
* ``activations``: the peak of one bare network call at the full batch, over the model's weights;
* ``peak``: the peak of the whole ``sample_grid`` call, over the same baseline;
* ``peak - activations - state``: what is left, which should stay flat (a chunk's worth of
  temporaries: the input copy, both halves of the output, eps, x0) as the seeds grow.

On CUDA it reads ``torch.cuda.max_memory_allocated`` in-process. On CPU torch allocations are invisible
to ``tracemalloc``, so each setting runs in a fresh subprocess and reads the peak resident set size
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``, a high-water mark): after building the model and one
network call at batch 1 (one-time costs: the baseline), after one call at the full batch, and after
``sample_grid``. The children run with glibc's ``MALLOC_MMAP_THRESHOLD_=131072`` and one arena, so
large blocks return to the OS when freed and RSS follows live memory; what remains is allocator and
page granularity, a few MB at these sizes: read the CPU rows for their trend, not their last digit.

With ``--conditions-list`` the rows vary the number of conditions at the first seed count instead (the
model is built with the largest class count, so its size is the same in every row). With ``--measures``
the rows measure ``measure_grid`` (pixel RMS, per-pixel std, near duplicates, seed share, shifts and the
built-in nearest-centroid adherence, no LPIPS) on a random (guidance scales x conditions x seeds) grid
of images: ``grid`` is the grid's own size, ``peak`` the peak over it, and ``peak/grid`` should stay flat
as conditions and seeds grow (the adherence used to hold a (V, C, S, C, pixels) tensor, quadratic in C).

    python benchmarks/bench_memory.py                         # CPU, seeds 4 16 64 256
    python benchmarks/bench_memory.py --conditions-list 4,16,64,256 --seeds-list 16
    python benchmarks/bench_memory.py --measures --conditions-list 8,32,128 --seeds-list 8,32
    python benchmarks/bench_memory.py --device cuda --size 64 --seeds-list 16,64,256,1024
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from bench_overhead import SCHEDULER, build_model  # noqa: E402
from collapsecheck.load.classes import class_conditions  # noqa: E402
from collapsecheck.model.schedule import schedule_from_config  # noqa: E402

MB = 1024.0 ** 2


def state_bytes(cells: int, seeds: int, sample_numel: int, steps: int) -> int:
    """sample_grid's per-sample tensors: x_T (S), x (N), ratio and cosine (K x N), index and scale (N)."""
    return 4 * sample_numel * (seeds + cells) + 2 * 4 * steps * cells + 8 * cells + 4 * cells


def _rss() -> float:
    """Peak RSS of this process so far, bytes (ru_maxrss is KB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024.0


def measure(args, seeds: int, classes: int, model_classes: int) -> dict:
    from collapsecheck.sample.grid import sample_grid

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    channels = tuple(int(c) for c in args.channels.split(","))
    denoiser = build_model(args.size, channels, model_classes).to(device, getattr(torch, args.dtype))
    schedule = schedule_from_config(SCHEDULER)
    conds = class_conditions(model_classes + 1, f"0-{classes - 1}")
    seed_list = list(range(seeds))
    cells = len(conds) * seeds

    def peak() -> float:
        if cuda:
            torch.cuda.synchronize(device)
            return float(torch.cuda.max_memory_allocated(device))
        return _rss()

    def call(batch: int) -> None:
        x = torch.randn((batch,) + tuple(denoiser.sample_shape), device=device)
        with torch.inference_mode():
            denoiser(x, torch.full((batch,), 500, device=device), torch.zeros(batch, dtype=torch.long, device=device))

    call(1)  # one-time costs (kernel libraries, lazy initialisation) belong to the baseline
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    base = peak()
    call(args.batch_size)
    if cuda:
        torch.cuda.empty_cache()
    activations = peak() - base
    sample_grid(denoiser, schedule, conds, seed_list, [args.guidance], args.steps, args.batch_size)
    total = peak() - base
    state = state_bytes(cells, seeds, int(torch.Size(denoiser.sample_shape).numel()), args.steps)
    return {"conditions": classes, "seeds": seeds, "cells": cells, "state": state, "activations": activations,
            "peak": total}


def measure_measures(args, seeds: int, classes: int) -> dict:
    """Peak memory of measure_grid on a random (V, C, S, 3, size, size) image grid, over the grid itself."""
    from collapsecheck.measure.diversity import measure_grid
    from collapsecheck.thresholds import Thresholds

    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    V = 4
    raw = torch.rand((V, classes, seeds, 3, args.size, args.size), generator=g) * 2 - 1
    reference = raw[1].clone()
    base = _rss()
    measure_grid(raw, reference, Thresholds(), class_conditions(classes + 1))
    grid = raw.numel() * raw.element_size()
    return {"conditions": classes, "seeds": seeds, "cells": V * classes * seeds, "grid": grid,
            "peak": _rss() - base}


def _children(args, argv) -> list[dict]:
    """One row per (conditions, seeds) setting, each in a fresh subprocess on CPU."""
    seeds_list = [int(s) for s in args.seeds_list.split(",")]
    cond_list = [int(c) for c in args.conditions_list.split(",")] if args.conditions_list else [args.classes]
    settings = [(c, s) for c in cond_list for s in seeds_list]
    model_classes = max(cond_list)
    rows = []
    for classes, seeds in settings:
        if args.device.startswith("cuda") and not args.measures:
            rows.append(measure(args, seeds, classes, model_classes))
            continue
        child = [sys.executable, __file__] + list(argv if argv is not None else sys.argv[1:])
        child += ["--child", f"{classes}:{seeds}:{model_classes}"]
        # large blocks go straight to mmap and back to the OS when freed, so RSS follows live memory
        env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_ARENA_MAX": "1"}
        done = subprocess.run(child, capture_output=True, text=True, check=True, env=env)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--channels", default="32,64")
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--seeds-list", default="4,16,64,256")
    parser.add_argument("--conditions-list", default=None, help="rows over these condition counts (x each seed count)")
    parser.add_argument("--measures", action="store_true", help="measure measure_grid instead of sample_grid")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--guidance", type=float, default=3.0)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child is not None:
        classes, seeds, model_classes = (int(v) for v in args.child.split(":"))
        row = measure_measures(args, seeds, classes) if args.measures else measure(args, seeds, classes, model_classes)
        print(json.dumps(row))
        return 0
    rows = _children(args, argv)
    if args.measures:
        print(f"measure_grid on a random 4 x C x S x 3x{args.size}x{args.size} grid (no LPIPS), CPU peak RSS over "
              "the grid, one subprocess per row; MB")
        print(f"{'conds':>6} {'seeds':>6} {'cells':>7} {'grid':>9} {'peak':>9} {'peak/grid':>10}")
        for r in rows:
            print(f"{r['conditions']:>6} {r['seeds']:>6} {r['cells']:>7} {r['grid'] / MB:>9.2f} {r['peak'] / MB:>9.2f} "
                  f"{r['peak'] / r['grid']:>10.2f}")
        return 0
    how = "CUDA max_memory_allocated" if args.device.startswith("cuda") else "peak RSS, one subprocess per row"
    print(f"device {args.device} ({args.dtype}); UNet2DModel ({args.channels}), {args.size}x{args.size}, "
          f"batch {args.batch_size}, {args.steps} steps; {how}; MB over the loaded model")
    print(f"{'conds':>6} {'seeds':>6} {'cells':>6} {'state':>9} {'activations':>12} {'peak':>9} {'peak-act-state':>15}")
    for r in rows:
        rest = r["peak"] - r["activations"] - r["state"]
        print(f"{r['conditions']:>6} {r['seeds']:>6} {r['cells']:>6} {r['state'] / MB:>9.3f} {r['activations'] / MB:>12.2f} "
              f"{r['peak'] / MB:>9.2f} {rest / MB:>15.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
