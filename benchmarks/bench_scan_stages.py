"""Where does a scan's time go? Per-stage wall and CPU time of full scans, side by side, in one run.

Each scan runs in a fresh Python process, as the CLI does, so start-up (importing torch, diffusers and
collapsecheck) is counted. In that process the stages of :func:`collapsecheck.run.scan` are timed by
wrapping the functions ``run.py`` calls (the scan itself is not changed):

* ``import``: ``import collapsecheck.run`` (torch; collapsecheck's own modules)
* ``load``: reading the checkpoint, which also imports diffusers on first use
* ``lpips load``: building the LPIPS backbone from the offline weights
* ``sampling``: the guidance sweep's grid (:func:`~collapsecheck.sample.grid.sample_grid`)
* ``null probe``: the null-branch probe, run to the end for the w = 0 samples
* ``posterior``: the posterior-variance profile
* ``lpips``: LPIPS over the sweep's and the recovery probes' images
* ``measures``: the other measures of the sweep and recovery grids (pixel RMS, seed share, adherence)
* ``recovery``: sampling the recovery probes (only when the verdict scale is not healthy)
* ``other``: everything else in the process (verdicts, building the result)

in wall time and in the process's CPU time (all threads; another job on a shared machine stretches the
wall clock of whichever stage it lands on, much less the CPU time a stage uses).

The default is the README's set-up: ``examples/digits-healthy`` and ``examples/digits-decoder``
(``--cond examples/digits-decoder/cond.safetensors``), full mode. Medians over ``--reps``; each
repetition runs the examples in turn. The machine's load average is printed beside the numbers:
other jobs on a shared machine stretch the wall clock.

    python benchmarks/bench_scan_stages.py                       # the README's two examples, full mode
    python benchmarks/bench_scan_stages.py --reps 3 --mode fast --threads 1
    python benchmarks/bench_scan_stages.py --scan examples/digits-nodrop
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README_SCANS = ("examples/digits-healthy", "examples/digits-decoder --cond examples/digits-decoder/cond.safetensors")
STAGES = ("import", "load", "lpips load", "sampling", "null probe", "posterior", "lpips", "measures", "recovery",
          "other", "total")


def _clocks() -> tuple[float, float]:
    """(wall time, this process's CPU time over all its threads)."""
    return time.perf_counter(), time.process_time()


def _timed(times: dict, name: str, fn):
    """``fn`` wrapped so that its wall and CPU time are added to ``times[name]`` and ``times[name + " cpu"]``."""

    def wrapper(*args, **kwargs):
        wall, cpu = _clocks()
        try:
            return fn(*args, **kwargs)
        finally:
            times[name] = times.get(name, 0.0) + time.perf_counter() - wall
            times[name + " cpu"] = times.get(name + " cpu", 0.0) + time.process_time() - cpu

    return wrapper


def _instrument(run, times: dict) -> None:
    """Wrap the stage functions run.py calls; the second sample_grid call of a scan is the recovery grid."""
    calls = {"sample_grid": 0}
    sample_grid = run.sample_grid

    def grid(*args, **kwargs):
        calls["sample_grid"] += 1
        name = "sampling" if calls["sample_grid"] == 1 else "recovery"
        return _timed(times, name, sample_grid)(*args, **kwargs)

    run.sample_grid = grid
    run.load_checkpoint = _timed(times, "load", run.load_checkpoint)
    run._lpips = _timed(times, "lpips load", run._lpips)
    run.probe_null_branch = _timed(times, "null probe", run.probe_null_branch)
    run._posterior = _timed(times, "posterior", run._posterior)
    run._lpips_means = _timed(times, "lpips", run._lpips_means)
    run.measure_grid = _timed(times, "measures (with lpips)", run.measure_grid)


def child(argv: list[str]) -> None:
    """One scan in this process; prints its stage times as one JSON line."""
    started, started_cpu = _clocks()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.path.insert(0, str(ROOT))
    import collapsecheck.run as run
    from collapsecheck.cli import cli

    times = {"import": time.perf_counter() - started, "import cpu": time.process_time() - started_cpu}
    _instrument(run, times)
    try:
        cli.main(["scan", "--quiet", *argv], standalone_mode=False)
    except SystemExit:
        pass
    totals = {"": time.perf_counter() - started, " cpu": time.process_time() - started_cpu}
    for clock, total in totals.items():
        times["measures" + clock] = times.pop("measures (with lpips)" + clock, 0.0) - times.get("lpips" + clock, 0.0)
        times["other" + clock] = total - sum(times.get(stage + clock, 0.0) for stage in STAGES[:-2])
        times["total" + clock] = total
    print(json.dumps(times))


def _run_child(scan: str, mode: str, threads: str) -> dict:
    command = [sys.executable, __file__, "--child", *scan.split(), "--mode", mode, "--fail-on", "never"]
    env = dict(os.environ)
    if threads != "default":
        env["OMP_NUM_THREADS"] = threads
    out = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scan", action="append", help="a scan's arguments (repeatable); default: the README's two")
    parser.add_argument("--mode", default="full", choices=("full", "fast"))
    parser.add_argument("--reps", type=int, default=1)
    parser.add_argument("--threads", default=os.environ.get("OMP_NUM_THREADS", "default"),
                        help="torch's intra-op threads in the scans (OMP_NUM_THREADS); default: torch's own choice")
    args = parser.parse_args()
    scans = args.scan or list(README_SCANS)
    runs: dict[str, list[dict]] = {s: [] for s in scans}
    loads = []
    for _ in range(args.reps):
        for s in scans:
            runs[s].append(_run_child(s, args.mode, args.threads))
            loads.append(os.getloadavg()[0])
    names = [s.split()[0].rstrip("/").split("/")[-1] for s in scans]
    print(f"mode {args.mode}, {args.reps} rep(s), medians in seconds, wall and process CPU time (all threads); torch threads: "
          f"{args.threads}; 1-min load average {min(loads):.1f}-{max(loads):.1f} "
          f"on {os.cpu_count()} cores")
    header = "".join(f"{n + ' ' + clock:>22}" for clock in ("wall", "cpu") for n in names)
    print(f"{'stage':<12}{header}{'both wall':>11}{'both cpu':>10}")
    for stage in STAGES:
        wall = [statistics.median(r.get(stage, 0.0) for r in runs[s]) for s in scans]
        cpu = [statistics.median(r.get(stage + " cpu", 0.0) for r in runs[s]) for s in scans]
        print(f"{stage:<12}" + "".join(f"{m:>22.2f}" for m in wall + cpu) + f"{sum(wall):>11.2f}{sum(cpu):>10.2f}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2:])
    else:
        main()
