"""Where does a scan's time go? Per-stage wall time of scans, side by side, in one run.

Each scan runs in a fresh Python process, as the CLI does, so start-up (importing torch, diffusers and
collapsecheck) is counted. In that process the CLI runs ``scan --profile --json``, and the stages are the
scan's own profile (:mod:`collapsecheck.profile`: load, conditions, LPIPS load, sampling, eps statistics,
null-branch probe, posterior profile, decoding, measures, LPIPS, verdicts, recovery probes, assemble;
each stage's own seconds, nested ones counted apart), plus:

* ``import``: ``import collapsecheck.cli`` and torch, before the scan starts;
* ``reports``: after the scan, writing the JSON and printing the report (the CLI's part);
* ``other``: the rest of the process's life (interpreter start-up is not counted).

and the process's CPU time in total (all threads; another job on a shared machine stretches the wall
clock of whichever stage it lands on, much less the CPU time a run uses).

The default is the README's set-up: ``examples/digits-healthy`` and ``examples/digits-decoder``
(``--cond examples/digits-decoder/cond.safetensors``), fast mode as the README runs them. Medians over
``--reps``; each repetition runs the examples in turn. The machine's load average is printed beside
the numbers.

    python benchmarks/bench_scan_stages.py                       # the README's two examples, fast mode
    python benchmarks/bench_scan_stages.py --reps 3 --mode full --threads 1
    python benchmarks/bench_scan_stages.py --scan examples/digits-nodrop
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README_SCANS = ("examples/digits-healthy", "examples/digits-decoder --cond examples/digits-decoder/cond.safetensors")


def child(argv: list[str]) -> None:
    """One scan in this process (the CLI, with --profile); prints its stage times as one JSON line."""
    started, started_cpu = time.perf_counter(), time.process_time()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.path.insert(0, str(ROOT))
    import torch  # noqa: F401
    from collapsecheck.cli import cli

    times = {"import": time.perf_counter() - started}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "scan.json"
        scan_started = time.perf_counter()
        try:
            cli.main(["scan", "--quiet", "--profile", "--json", str(path), *argv], standalone_mode=False)
        except SystemExit:
            pass
        scan_wall = time.perf_counter() - scan_started
        profile = json.loads(path.read_text())["profile"]
    for stage in profile["stages"]:
        times[stage["name"]] = stage["seconds"]
    times["reports"] = max(0.0, scan_wall - profile["total_seconds"])
    total = time.perf_counter() - started
    times["other"] = total - sum(times.values())
    times["total"] = total
    times["total cpu"] = time.process_time() - started_cpu
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
    parser.add_argument("--mode", default="fast", choices=("full", "fast"))
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
    stages = list(dict.fromkeys(k for s in scans for r in runs[s] for k in r if k not in ("other", "total", "total cpu")))
    print(f"mode {args.mode}, {args.reps} rep(s), medians in seconds (wall; the last row: process CPU time, all "
          f"threads); torch threads: {args.threads}; 1-min load average {min(loads):.1f}-{max(loads):.1f} "
          f"on {os.cpu_count()} cores")
    print(f"{'stage':<20}" + "".join(f"{n:>18}" for n in names) + f"{'together':>10}")
    for stage in stages + ["other", "total", "total cpu"]:
        values = [statistics.median(r.get(stage, 0.0) for r in runs[s]) for s in scans]
        print(f"{stage:<20}" + "".join(f"{v:>18.2f}" for v in values) + f"{sum(values):>10.2f}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2:])
    else:
        main()
