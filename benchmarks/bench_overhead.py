"""How much slower is a scan's sampling than the bare network? (issue 5: target <= 1.10)

Times, side by side in one process and interleaved over several repetitions (medians reported):

* ``network``: a bare batched loop of the same diffusers UNet at the same NFE and batch size, calling
  the network only (the lower bound any sampler pays);
* ``sampler``: the same loop plus the irreducible work of a guided DDIM sampler written by hand
  (CFG combine, x0 and eps, the DDIM update);
* ``sample_grid``: :func:`collapsecheck.sample.grid.sample_grid` (conditional and null halves in one
  batch, eps statistics every step), at the same NFE and batch size.

and prints ``sample_grid / network`` (the overhead ratio) and ``sample_grid / sampler``, both in wall
time and, on CPU, in process CPU time (``time.process_time``): on a shared machine other jobs stretch
the wall clock of whichever run they land on, but not the CPU time a run itself uses. Finally the
three loops run again with the network replaced by one elementwise op: what is left is each loop's
own host work per chunk, and ``1 + (sample_grid - network) / network time per chunk`` predicts the
ratio without the noise of two long timings.

    python benchmarks/bench_overhead.py                      # CPU, one thread, small class-conditional UNet
    python benchmarks/bench_overhead.py --device cuda --dtype bfloat16 --size 32 --seeds 32
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from collapsecheck.load.conditions import class_conditions  # noqa: E402
from collapsecheck.model.denoiser import Denoiser  # noqa: E402
from collapsecheck.sample.grid import initial_noise, sample_grid  # noqa: E402
from collapsecheck.model.schedule import schedule_from_config  # noqa: E402

SCHEDULER = {"num_train_timesteps": 1000, "beta_schedule": "squaredcos_cap_v2", "prediction_type": "epsilon",
             "clip_sample": False, "set_alpha_to_one": False}


def build_model(size: int, channels: tuple[int, ...], classes: int, seed: int = 0):
    """A class-conditional ``UNet2DModel`` (3 channels, ``classes`` + 1 embeddings: the last is the null)."""
    from diffusers import UNet2DModel

    torch.manual_seed(seed)
    model = UNet2DModel(
        sample_size=size,
        in_channels=3,
        out_channels=3,
        block_out_channels=channels,
        down_block_types=("DownBlock2D",) * len(channels),
        up_block_types=("UpBlock2D",) * len(channels),
        layers_per_block=2,
        norm_num_groups=min(32, channels[0]),
        num_class_embeds=classes + 1,
    ).eval()
    return Denoiser(model=model, kind="class", sample_shape=(3, size, size))


class _Trivial(torch.nn.Module):
    """Stands in for the UNet: one elementwise op, so what is left of a run is the sampler's own work."""

    def __init__(self):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x, t, class_labels):
        from types import SimpleNamespace

        return SimpleNamespace(sample=x * 0.5)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def network_loop(denoiser, schedule, conds, seeds, steps, batch_size, with_sampler: bool, guidance: float):
    """The same NFE and batch as sample_grid; ``with_sampler`` adds CFG and the DDIM update."""
    device = denoiser.device
    C, S = len(conds), len(seeds)
    N = C * S
    x = initial_noise(seeds, denoiser.sample_shape).to(device).repeat(C, 1, 1, 1)
    labels = conds.values.to(device).repeat_interleave(S)
    null = conds.null.to(device)
    timesteps = schedule.timesteps(steps).to(device)
    abar = schedule.alpha_bar(timesteps.cpu()).float().to(device)
    abar_prev = schedule.previous_alpha_bar(timesteps.cpu()).float().to(device)
    chunk = max(1, batch_size // 2)
    with torch.inference_mode():
        for k in range(steps):
            t = timesteps[k]
            for n0 in range(0, N, chunk):
                n1 = min(N, n0 + chunk)
                xc = x[n0:n1]
                out = denoiser(torch.cat([xc, xc]), t.expand(2 * (n1 - n0)),
                               torch.cat([labels[n0:n1], null.expand(n1 - n0)]))
                if with_sampler:
                    out_c, out_u = out.chunk(2)
                    eps = out_u + guidance * (out_c - out_u)
                    x0 = (xc - (1 - abar[k]).sqrt() * eps) / abar[k].sqrt()
                    x[n0:n1] = abar_prev[k].sqrt() * x0 + (1 - abar_prev[k]).sqrt() * eps
    return x


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    parser.add_argument("--size", type=int, default=16)
    parser.add_argument("--channels", default="32,64", help="block_out_channels, comma separated")
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--guidance", type=float, default=3.0)
    parser.add_argument("--batch-size", type=int, default=16, help="network inputs per call (both halves)")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    channels = tuple(int(c) for c in args.channels.split(","))
    denoiser = build_model(args.size, channels, args.classes).to(device, getattr(torch, args.dtype))
    schedule = schedule_from_config(SCHEDULER)
    conds = class_conditions(args.classes + 1)
    seeds = list(range(args.seeds))
    nfe = 2 * len(conds) * len(seeds) * args.steps

    runs = {
        "network": lambda: network_loop(denoiser, schedule, conds, seeds, args.steps, args.batch_size, False, args.guidance),
        "sampler": lambda: network_loop(denoiser, schedule, conds, seeds, args.steps, args.batch_size, True, args.guidance),
        "sample_grid": lambda: sample_grid(denoiser, schedule, conds, seeds, [args.guidance], args.steps, args.batch_size),
    }
    times = {name: [] for name in runs}
    cpu = {name: [] for name in runs}
    for name, run in runs.items():  # warm-up: allocator, kernels
        run()
    for _ in range(args.reps):
        for name, run in runs.items():
            _sync(device)
            t0, c0 = time.perf_counter(), time.process_time()
            run()
            _sync(device)
            times[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    med = {name: statistics.median(ts) for name, ts in times.items()}
    med_cpu = {name: statistics.median(ts) for name, ts in cpu.items()}

    # the same three runs with the network replaced by one elementwise op: host work per chunk
    trivial = Denoiser(model=_Trivial(), kind="class", sample_shape=denoiser.sample_shape).to(device, torch.float32)
    chunks = args.steps * -(-len(conds) * len(seeds) // max(1, args.batch_size // 2))
    floor = {}
    for name, run in {
        "network": lambda: network_loop(trivial, schedule, conds, seeds, args.steps, args.batch_size, False, args.guidance),
        "sampler": lambda: network_loop(trivial, schedule, conds, seeds, args.steps, args.batch_size, True, args.guidance),
        "sample_grid": lambda: sample_grid(trivial, schedule, conds, seeds, [args.guidance], args.steps, args.batch_size),
    }.items():
        run()
        reps = []
        for _ in range(max(3, args.reps)):
            _sync(device)
            t0 = time.perf_counter()
            run()
            _sync(device)
            reps.append(time.perf_counter() - t0)
        floor[name] = min(reps) / chunks

    params = sum(p.numel() for p in denoiser.model.parameters())
    print(f"device {device} ({args.dtype}, {args.threads} CPU thread(s)); UNet2DModel {channels}, "
          f"{args.size}x{args.size}, {params / 1e6:.2f}M params")
    print(f"grid {len(conds)} conditions x {len(seeds)} seeds x {args.steps} steps, guidance {args.guidance}: "
          f"NFE {nfe}, batch {args.batch_size}, {args.reps} reps (median, min-max)")
    for name in runs:
        ts = times[name]
        print(f"  {name:12s} wall {med[name]:8.3f} s  ({min(ts):.3f}-{max(ts):.3f})  {1e3 * med[name] / nfe:7.3f} ms/NFE"
              f"   cpu {med_cpu[name]:8.3f} s")
    per_chunk = (med_cpu if device.type == "cpu" else med)["network"] / chunks
    print(f"host work per chunk, network replaced by one elementwise op (min of reps): network call "
          f"{1e3 * floor['network']:.3f} ms, sampler {1e3 * floor['sampler']:.3f} ms, sample_grid "
          f"{1e3 * floor['sample_grid']:.3f} ms; against {1e3 * per_chunk:.2f} ms of network per chunk, sample_grid's "
          f"extra work predicts a ratio of {1 + (floor['sample_grid'] - floor['network']) / per_chunk:.3f}")
    for label, m in (("wall", med), ("cpu", med_cpu)):
        if label == "cpu" and device.type != "cpu":
            continue  # host CPU time says nothing about GPU work
        ratio = m["sample_grid"] / m["network"]
        print(f"{label:4s}: sample_grid / network = {ratio:.3f}  (target <= 1.10: {'met' if ratio <= 1.10 else 'NOT met'})"
              f";  sample_grid / sampler = {m['sample_grid'] / m['sampler']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
