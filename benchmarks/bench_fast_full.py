"""Is fast mode worth it? Scan time of ``--mode fast`` against a full scan, per model, with the verdicts (issue 17:
fast at most 1/5 of full on every zoo model, with equal verdicts).

Every model found (``--models`` globs; by default the three committed examples, the pixel zoo in
``examples/zoo/out`` and ``/tmp/zoo_out``, and the latent zoo in ``examples/latent_zoo/models``: a folder
with a ``recipe.json``, ``unet/`` or ``transformer/``, or each ``checkpoint-*`` of a series; conditions from the
recipe's ``cond_file`` or a ``cond.safetensors`` beside the model) is scanned in one process with the library's
:func:`collapsecheck.scan` (the CLI's code, defaults otherwise: LPIPS on when ``COLLAPSECHECK_LPIPS_WEIGHTS``
names the weights, recovery and posterior in full mode), fast and full interleaved over ``--reps``
repetitions after one warm-up scan (imports), each timed by the scan's own clock (``ScanResult.seconds``,
load to result) and by the process CPU time it used. Prints per model the medians, the fast/full ratios and
the three verdicts (collapse, guidance, null branch) of each mode.

    python benchmarks/bench_fast_full.py                         # every model found, one repetition
    python benchmarks/bench_fast_full.py --reps 3 --models 'examples/digits-*'
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

DEFAULT_MODELS = ("examples/digits-*", "examples/zoo/out/*", "/tmp/zoo_out/*", "examples/latent_zoo/models/*/*")


def targets(patterns) -> list[tuple[str, Path, dict]]:
    """(name, checkpoint, recipe) for every model folder with a recipe.json (series: every checkpoint)."""
    found, seen = [], set()
    for pattern in patterns:
        base = Path(pattern) if Path(pattern).is_absolute() else ROOT / pattern
        for folder in sorted(Path(p) for p in glob.glob(str(base))):
            recipe_path = folder / "recipe.json"
            training = (folder.parent / "README_TRAINING_IN_PROGRESS.txt").exists()  # there: done = recipe.json
            model = recipe_path.is_file() or (not training and any((folder / s).is_dir() for s in ("unet", "transformer")))
            if not model or folder.resolve() in seen:
                continue
            seen.add(folder.resolve())
            recipe = json.loads(recipe_path.read_text()) if recipe_path.is_file() else {}
            checkpoints = sorted(folder.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
            for ck in checkpoints or [folder]:
                base = f"{recipe['dataset']}/{folder.name}" if recipe.get("dataset") else folder.name  # latent zoo
                name = base if ck == folder else f"{base}/{ck.name}"
                found.append((name, ck, recipe))
    return found


def config_for(path: Path, recipe: dict, mode: str):
    from collapsecheck import make_config

    extra = {"concat_order": recipe.get("concat_order", "after")}
    cond = recipe.get("cond_file") or ("cond.safetensors" if (path / "cond.safetensors").is_file() else None)
    if cond:
        extra["cond"] = str((path if (path / cond).exists() else path.parent) / cond)
    elif (path / "prompts.txt").is_file():  # a latent zoo pipeline: its scanned prompts
        extra["prompts"] = str(path / "prompts.txt")
    return make_config(checkpoint=str(path), mode=mode, device="cpu",
                       lpips_weights=os.environ.get("COLLAPSECHECK_LPIPS_WEIGHTS"), **extra)


def timed_scan(config) -> tuple[float, float, int, tuple[str, str, str]]:
    """(scan seconds by its own clock, process CPU seconds, NFE, (collapse, guidance, null-branch verdicts))."""
    from collapsecheck.run import scan

    cpu = time.process_time()
    r = scan(config)
    return r.seconds, time.process_time() - cpu, r.nfe, (r.verdict, r.guidance.verdict, r.guidance.null_branch.verdict)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="*", default=list(DEFAULT_MODELS), help="globs of model folders")
    parser.add_argument("--reps", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", help="write the numbers here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    found = targets(args.models)
    if not found:
        print("no models found")
        return 1
    timed_scan(config_for(found[0][1], found[0][2], "fast"))  # warm-up: imports
    print(f"{len(found)} models; {args.reps} interleaved rep(s); one process, {args.threads} thread(s); "
          f"LPIPS weights: {os.environ.get('COLLAPSECHECK_LPIPS_WEIGHTS') or 'none (LPIPS off)'}")
    print(f"{'model':28} {'fast s':>7} {'full s':>7} {'ratio':>6} {'cpu ratio':>9} {'NFE ratio':>9}  verdicts fast | full")
    rows, loads = [], []
    for name, path, recipe in found:
        runs = {"fast": [], "full": []}
        for rep in range(args.reps):
            for mode in (("fast", "full") if rep % 2 == 0 else ("full", "fast")):
                runs[mode].append(timed_scan(config_for(path, recipe, mode)))
            loads.append(os.getloadavg()[0])
        row = summarize(name, runs)
        rows.append(row)
        print(f"{name:28} {row['fast_s']:7.2f} {row['full_s']:7.2f} {row['ratio']:6.3f} {row['cpu_ratio']:9.3f} "
              f"{row['nfe_ratio']:9.3f}  {'/'.join(row['fast_verdicts'])} | {'/'.join(row['full_verdicts'])}"
              f"{'' if row['equal'] else '  DIFFERENT'}")
    worst = max(r["ratio"] for r in rows)
    worst_cpu = max(r["cpu_ratio"] for r in rows)
    print(f"largest fast/full ratio: {worst:.3f} by the scans' clocks, {worst_cpu:.3f} in CPU time (target <= 0.20: "
          f"{'met' if worst <= 0.20 else 'NOT met'}); verdicts equal on {sum(r['equal'] for r in rows)}/{len(rows)}; "
          f"1-min load average {min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} cores")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


def summarize(name: str, runs: dict) -> dict:
    """Medians over the repetitions, ratios of the medians, and the verdicts of the first repetition."""
    fast, full = runs["fast"], runs["full"]
    med = lambda rs, i: statistics.median(r[i] for r in rs)  # noqa: E731
    return {
        "model": name, "fast_s": med(fast, 0), "full_s": med(full, 0), "ratio": med(fast, 0) / med(full, 0),
        "cpu_ratio": med(fast, 1) / med(full, 1), "nfe_ratio": fast[0][2] / full[0][2],
        "fast_verdicts": list(fast[0][3]), "full_verdicts": list(full[0][3]), "equal": fast[0][3] == full[0][3],
    }


if __name__ == "__main__":
    sys.exit(main())
