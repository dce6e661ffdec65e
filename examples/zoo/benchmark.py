"""Scan every zoo model with the default settings and compare the verdicts with the ground truth.

    python examples/zoo/benchmark.py [--zoo examples/zoo/out] [--truth examples/zoo/ground_truth.json]
                                     [--json OUT] [scan options as KEY=VALUE, e.g. seeds=8 steps=10]

Prints, for collapse, null branch and guidance: a confusion table (rows: ground truth, columns: scan),
the agreement, and per model the numbers that decided the verdict with their margin to the nearest
threshold (how far the number sits from flipping the verdict, as a factor). Ground truth comes from
ground_truth.json (brute force) where present, else from each recipe's expected verdicts.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from collapsecheck import make_config# noqa: E402
from collapsecheck.run import scan  # noqa: E402
from collapsecheck.thresholds import Thresholds  # noqa: E402

ORDERS = {
    "collapse": ("healthy", "at_risk", "collapsed"),
    "null_branch": ("learned", "unclear", "not_learned"),
    "guidance": ("steerable", "weak", "not_steerable"),
}


def zoo_targets(zoo: Path) -> list[tuple[str, Path, dict]]:
    """(name, checkpoint path, recipe) for every model and series checkpoint under ``zoo``."""
    targets = []
    for recipe_path in sorted(zoo.glob("*/recipe.json")):
        recipe = json.loads(recipe_path.read_text())
        folder = recipe_path.parent
        checkpoints = sorted(folder.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
        if checkpoints:
            for ck in checkpoints:
                targets.append((f"{folder.name}/{ck.name}", ck, recipe))
        else:
            targets.append((folder.name, folder, recipe))
    return targets


def truth_for(name: str, recipe: dict, truth: dict) -> dict:
    """Ground-truth labels: brute force where the table has them, else the recipe's expectations."""
    base, _, ck = name.partition("/")
    series = truth.get("series", {})
    entry = (series.get(name) or series.get(ck) if ck else None) or truth.get("models", {}).get(name) or {}
    expected = recipe.get("checkpoint_expected", {}).get(ck, {}) if ck else {}
    out = {
        "collapse": entry.get("gt_collapse") or expected.get("expected_collapse") or recipe.get("expected_collapse"),
        "null_branch": entry.get("gt_null_branch") or recipe.get("expected_null_branch"),
        "guidance": entry.get("gt_guidance"),
        "source": "brute force" if entry else "recipe",
    }
    if out["guidance"] is None and out["null_branch"]:
        out["guidance"] = "not_steerable" if out["null_branch"] == "not_learned" else "steerable"
    return out


def margin(value: float, thresholds: list[float]) -> float:
    """The factor by which ``value`` would have to change to cross the nearest threshold."""
    factors = [max(value, t) / max(min(value, t), 1e-12) for t in thresholds if t > 0 and value > 0]
    return min(factors) if factors else math.inf


def scan_one(path: Path, recipe: dict, options: dict):
    extra = {"concat_order": recipe.get("concat_order", "after")}
    if recipe.get("cond_file"):
        extra["cond"] = str((path if (path / recipe["cond_file"]).exists() else path.parent) / recipe["cond_file"])
    config = make_config(checkpoint=str(path), **extra, **options)
    return scan(config)


def confusion(rows: list[dict], key: str) -> str:
    order = ORDERS[key]
    labelled = [r for r in rows if r["truth"][key]]
    lines = [f"{key}: ground truth (rows) x scan (columns)", "  " + "".join(f"{o:>15}" for o in ("",) + order)]
    for t in order:
        counts = [sum(1 for r in labelled if r["truth"][key] == t and r["scan"][key] == s) for s in order]
        lines.append("  " + f"{t:>15}" + "".join(f"{c:>15}" for c in counts))
    agree = sum(1 for r in labelled if r["truth"][key] == r["scan"][key])
    lines.append(f"  agreement: {agree}/{len(labelled)}" + (f" ({agree / len(labelled):.0%})" if labelled else ""))
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--zoo", default="examples/zoo/out")
    parser.add_argument("--truth", default="examples/zoo/ground_truth.json")
    parser.add_argument("--json", help="write every scan's numbers here")
    parser.add_argument("--only", nargs="*", help="model names to scan")
    parser.add_argument("--rescore", help="re-read the rows of an earlier --json and score them against --truth")
    parser.add_argument("options", nargs="*", help="scan options KEY=VALUE (e.g. seeds=8 steps=10 lpips=false)")
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
    options = {}
    for item in args.options:
        key, value = item.split("=", 1)
        options[key] = {"true": True, "false": False}.get(value.lower(), value)
        if isinstance(options[key], str):
            try:
                options[key] = int(value)
            except ValueError:
                try:
                    options[key] = float(value)
                except ValueError:
                    pass
    truth = json.loads(Path(args.truth).read_text()) if Path(args.truth).exists() else {}
    th = Thresholds()
    rows = []
    if args.rescore:
        recipes = {name: recipe for name, _, recipe in zoo_targets(Path(args.zoo))}
        rows = json.loads(Path(args.rescore).read_text())["rows"]
        for row in rows:
            row["truth"] = truth_for(row["name"], recipes.get(row["name"], {}), truth)
        for key in ORDERS:
            print(confusion(rows, key))
            print()
        return 0
    for name, path, recipe in zoo_targets(Path(args.zoo)):
        if args.only and name.split("/")[0] not in args.only and name not in args.only:
            continue
        started = time.perf_counter()
        result = scan_one(path, recipe, options)
        conds = result.conditions
        med = lambda xs: sorted(xs)[len(xs) // 2] if xs else None  # noqa: E731
        stats = {
            "pixel_rms": med([c.pixel_rms for c in conds]),
            "near_duplicates": med([c.near_duplicates for c in conds]),
            "seed_share": med([c.seed_share for c in conds if c.seed_share is not None]),
            "lpips": med([c.lpips for c in conds if c.lpips is not None]),
            "null_gap": max([p["centroid_gap"] for p in result.guidance.null_branch.probes], default=None),
            "null_hull": result.guidance.null_branch.residual,
            "max_shift": result.guidance.max_shift,
            "eps_ratio": sum(c.eps_ratio for c in conds) / len(conds),
            "w0_rms": next(p.pixel_rms for p in result.guidance.sweep if p.w == 0.0) if any(p.w == 0.0 for p in result.guidance.sweep) else None,
        }
        row = {
            "name": name,
            "truth": truth_for(name, recipe, truth),
            "scan": {"collapse": result.verdict, "null_branch": result.guidance.null_branch.verdict,
                     "guidance": result.guidance.verdict},
            "per_condition": [c.verdict for c in conds],
            "stats": stats,
            "margins": {
                "pixel_rms": margin(stats["pixel_rms"], [th.collapsed_rms, th.at_risk_rms]),
                "lpips": None if stats["lpips"] is None else margin(stats["lpips"], [th.collapsed_lpips, th.at_risk_lpips]),
                "null_residual": None if stats["null_hull"] is None else margin(stats["null_hull"], [th.null_learned_residual, th.null_not_learned_residual]),
            },
            "nfe": result.nfe,
            "seconds": time.perf_counter() - started,
        }
        rows.append(row)
        s = stats
        fmt = lambda v: "   n/a" if v is None else f"{v:6.3f}"  # noqa: E731
        print(f"{name:32s} scan {row['scan']['collapse']:>9}/{row['scan']['null_branch']:>11}/{row['scan']['guidance']:>13}"
              f"  truth {row['truth']['collapse']}/{row['truth']['null_branch']}/{row['truth']['guidance']}"
              f"  rms {fmt(s['pixel_rms'])} share {fmt(s['seed_share'])} lpips {fmt(s['lpips'])} dup {fmt(s['near_duplicates'])}"
              f" gap {fmt(s['null_gap'])} hull {fmt(s['null_hull'])} shift {fmt(s['max_shift'])} w0 {fmt(s['w0_rms'])}"
              f"  {row['seconds']:.0f}s", flush=True)
    print()
    for key in ORDERS:
        print(confusion(rows, key))
        print()
    if args.json:
        Path(args.json).write_text(json.dumps({"options": options, "rows": rows}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
