"""Which spread of a condition's seeds, over which spread of its cell, reads the brute force's div_ratio?

Round 34's exploration (docs/calibration.md), on the calibration split only. For every latent text model with a
condition its full scan's seed share reads collapsed (under 0.184), the condition's 16 seeds are drawn at w = 1 as
the scan draws them (DDIM, 25 steps, seeds 0-15: the scan's own cell shares come out to every digit), each training
image is given to the condition whose seeds' mean lies nearest (the scan's cell), and six estimators of
seeds' spread / cell's spread are set against the brute force's div_ratio (48 seeds, 100 steps, over the held-out
class's variance) on those conditions, on collapsed-or-not at 0.15 and on the three labels at 0.15 / 0.40:

    python examples/latent_zoo/spread_estimators.py --scans scans/ [--json out.json]

R: the median over a set of images of their mean squared distance per pixel to its pixel-wise median (the cell's
spread in the scan); P: the median over pairs of half their mean squared distance per pixel (the seeds' spread in
the scan since schema 2.15); V: the plain variance per pixel (ddof 1); T: the mean of the lowest 75% of distances to
the mean. Reads scans written by ``examples/calibrate.py scan``; writes nothing unless --json.
"""
from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import ground_truth as G  # noqa: E402

from collapsecheck.measure.cells import MIN_CELL, pair_spread, robust_spread  # noqa: E402

ESTIMATORS = {"R / R": ("R", "R"), "V / R": ("V", "R"), "P / P": ("P", "P"), "P / R": ("P", "R"),
              "V / V": ("V", "V"), "T / T": ("T", "T")}


def spread(kind: str, a: torch.Tensor) -> float:
    """One of the four spreads of the images ``a`` (N, D), N at least MIN_CELL: R and P as the scan computes them."""
    if kind == "R":
        return robust_spread(a)
    if kind == "P":
        return pair_spread(a)
    if kind == "V":
        return float(a.var(0, unbiased=True).mean())
    d = ((a - a.mean(0)) ** 2).mean(1)
    return float(d[d <= d.quantile(0.75)].mean())


def models_with_collapsed_seed_shares(scans: Path) -> list:
    found = []
    for f in sorted(scans.glob("latent__*.full.json")):
        _, ds, recipe = f.name.split(".")[0].split("__")
        if not recipe.startswith("hint") and any(c["seed_share"] is not None and c["seed_share"] < 0.184
                                                 for c in json.loads(f.read_text())["conditions"]):
            found.append((ds, recipe, f))
    return found


def measure(scans: Path) -> list:
    truth = json.loads((HERE / "ground_truth.json").read_text())["models"]
    G.STEPS = 25
    refs, rows = {}, []
    for ds, recipe, f in models_with_collapsed_seed_shares(scans):
        ref = refs.setdefault(ds, G.Reference(ds))
        model = G.Model(HERE / "models" / ds / recipe)
        x = model.sample(model.cond, 1.0, list(range(16))).reshape(len(model.cond), 16, -1).double()
        train = ref.train_x.reshape(len(ref.train_x), -1).double()
        cell = torch.cdist(train, x.mean(1)).argmin(1)
        scan = json.loads(f.read_text())["conditions"]
        for c in range(len(model.cond)):
            seeds, mine = x[c], train[cell == c]
            t = truth[f"{ds}/{recipe}"]["per_condition"][c]
            row = {"model": f"{ds}/{recipe}", "condition": c, "seed_share": scan[c]["seed_share"],
                   "truth": t["collapse"], "div_ratio": t["w1"]["div_ratio"], "cell_images": len(mine)}
            if len(mine) >= MIN_CELL:
                row.update({name: spread(a, seeds) / spread(b, mine) for name, (a, b) in ESTIMATORS.items()})
            rows.append(row)
        print(f"{ds}/{recipe}", file=sys.stderr, flush=True)
    return rows


def label(v: float) -> str:
    return "collapsed" if v < 0.15 else "at_risk" if v < 0.40 else "healthy"


def table(rows: list) -> str:
    pop = [r for r in rows if r["seed_share"] < 0.184 and r["truth"] != "broken" and "P / R" in r]
    lines = [f"{len(pop)} conditions the seed share reads collapsed: {dict(collections.Counter(r['truth'] for r in pop))}",
             "| seeds' spread / cell's spread | three labels | collapsed-or-not | relieved but collapsed | "
             "collapsed but not |", "| --- | --- | --- | --- | --- |"]
    for name in ESTIMATORS:
        got = [(r["truth"], label(r[name])) for r in pop]
        three = sum(t == p for t, p in got)
        either = sum((t == "collapsed") == (p == "collapsed") for t, p in got)
        relieved = sum(t == "collapsed" and p != "collapsed" for t, p in got)
        missed = sum(t != "collapsed" and p == "collapsed" for t, p in got)
        lines.append(f"| {name} | {three} | {either} | {relieved} | {missed} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scans", type=Path, required=True, help="calibrate.py's scan folder (full scans are read)")
    ap.add_argument("--json", type=Path, help="write every condition's numbers here")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    rows = measure(args.scans)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
