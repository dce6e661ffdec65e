"""Round 39's reading for the next round (docs/calibration.md): class and prompt conditions judged both ways by cells.

Since round 32 a class or prompt condition that its seed share reads collapsed reads ``at_risk`` when its cell share
(its seeds' spread over that of its own cell of ``--data-images``) reaches ``cell_collapsed_share``: relief only. A
hint is judged both ways (round 36). This script re-judges the calibration split's scans (``calibrate.py``'s own
``rejudge``) with the class and prompt conditions judged both ways as well: a condition whose cell share is under X
reads ``collapsed`` whatever its seed share says, and the overall verdict is counted again from the conditions. It
prints, for each X, the collapse agreement and the conditions' collapsed-or-not agreement, then the models one X
moves. Nothing in the library changes: ``calibrate.relieved_by_cells`` is wrapped for the run.

Round 40 tried it as a rule of the library with a fitted bound (commit 7509245, reverted by the next commit):
``calibrate.py fit`` took it to 0.0886 (collapse 281 -> 283 of 300, conditions unchanged), but leave-one-dataset-out
scored 6,752 fitted against 6,760 kept: declined (docs/calibration.md, round 40).

    python examples/experiments/cell_both_ways.py --scans scans/ [--mode full] [--x 0.1]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import calibrate  # noqa: E402
from collapsecheck.thresholds import Thresholds  # noqa: E402
from collapsecheck.verdict.rules import Finding, overall_collapse  # noqa: E402

GRID = (None, 0.03, 0.05, 0.07, 0.1, 0.12, 0.15)
RELIEF = calibrate.relieved_by_cells
BOUND: dict = {"x": None}


def both_ways(own, verdicts, shares, lost, th):
    """Round 32's relief, then every condition under BOUND's cell share read collapsed; the overall verdict counted
    again wherever a condition moved (better or worse than ``own``)."""
    found, overall = RELIEF(own, verdicts, shares, lost, th)
    x = BOUND["x"]
    if x is None:
        return found, overall
    found = [Finding("collapsed", (f"cell share {s:.3g} < {x:g}",), ()) if f is None and s is not None and s < x
             and v != "collapsed" else f for f, v, s in zip(found, verdicts, shares)]
    if not any(found):
        return found, None
    counted = overall_collapse([f.verdict if f else v for f, v in zip(found, verdicts)], th)
    return found, counted if counted.verdict != own else None


def tally(pairs, th) -> tuple[int, int, int, int]:
    """(collapse agreeing, labelled models, conditions agreeing, labelled conditions)."""
    hit = models = agree = conditions = 0
    for item, data in pairs:
        got = calibrate.rejudge(data, th)
        if item["truth"].get("collapse") in calibrate.ORDERS["collapse"]:
            models += 1
            hit += got["collapse"] == item["truth"]["collapse"]
        a, n = calibrate.per_condition_agreement(item, got)
        agree, conditions = agree + a, conditions + n
    return hit, models, agree, conditions


def moved(pairs, th, x: float) -> None:
    """The models whose collapse verdict or conditions move at ``x``, with their cell shares."""
    for item, data in pairs:
        BOUND["x"] = None
        before = calibrate.rejudge(data, th)
        BOUND["x"] = x
        after = calibrate.rejudge(data, th)
        if before["collapse"] != after["collapse"] or before["per_condition"] != after["per_condition"]:
            shares = [round(c.get("cell_share") or -1, 3) for c in data["conditions"]]
            print(f"{item['name']}: truth {item['truth'].get('collapse')} {item['truth'].get('collapsed_conditions')}, "
                  f"{before['collapse']} -> {after['collapse']}; cell shares {shares}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scans", type=Path, required=True)
    p.add_argument("--mode", default="full", choices=("full", "fast"))
    p.add_argument("--x", type=float, default=0.1, help="the bound whose moved models are listed")
    a = p.parse_args()
    calibrate.relieved_by_cells = both_ways
    items = calibrate.targets("calibration", calibrate.ROOT / "zoo" / "out", calibrate.ROOT / "latent_zoo")
    pairs = calibrate.load_scans(items, a.scans, a.mode)
    th = Thresholds()
    print(f"{len(pairs)} {a.mode} scans")
    for x in GRID:
        BOUND["x"] = x
        hit, models, agree, conditions = tally(pairs, th)
        print(f"X {x if x is not None else 'off':>5}: collapse {hit}/{models}, conditions {agree}/{conditions}")
    moved(pairs, th, a.x)


if __name__ == "__main__":
    main()
