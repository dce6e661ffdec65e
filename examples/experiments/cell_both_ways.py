"""Class and prompt conditions judged both ways by their cells: the calibration split under each bound (round 40).

Since round 32 a class or prompt condition that its seed share reads collapsed reads ``at_risk`` when its cell share
(its seeds' spread over that of its own cell of ``--data-images``) reaches ``cell_collapsed_share``; since round 40
one its seed share reads better reads ``collapsed`` under ``class_cell_collapsed_share``
(:func:`collapsecheck.verdict.data.judged_by_cells`). This script re-judges the calibration split's scans
(``calibrate.py``'s own ``rejudge``) at each bound of a grid (a bound of 0 is the rule off, round 39's reading) and
prints the collapse agreement and the conditions' collapsed-or-not agreement, then the models that one bound moves
against the rule off, with their cell shares. Round 39 ran its first form after that round's scoring.

    python examples/experiments/cell_both_ways.py --scans scans/ [--mode full] [--x 0.1]
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import calibrate  # noqa: E402
from collapsecheck.thresholds import Thresholds  # noqa: E402

GRID = (0.0, 0.03, 0.05, 0.07, 0.08, 0.09, 0.1, 0.11, 0.12, 0.13, 0.15)


def at(x: float) -> Thresholds:
    """The default thresholds with ``class_cell_collapsed_share`` at ``x``."""
    return dataclasses.replace(Thresholds(), class_cell_collapsed_share=x)


def tally(pairs, th: Thresholds) -> tuple[int, int, int, int]:
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


def moved(pairs, x: float) -> None:
    """The models whose collapse verdict or conditions move at ``x`` against the rule off, with their cell shares."""
    for item, data in pairs:
        before, after = calibrate.rejudge(data, at(0.0)), calibrate.rejudge(data, at(x))
        if before["collapse"] != after["collapse"] or before["per_condition"] != after["per_condition"]:
            shares = [round(c.get("cell_share") or -1, 3) for c in data["conditions"]]
            print(f"{item['name']}: truth {item['truth'].get('collapse')} {item['truth'].get('collapsed_conditions')}, "
                  f"{before['collapse']} -> {after['collapse']}; cell shares {shares}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scans", type=Path, required=True)
    p.add_argument("--mode", default="full", choices=("full", "fast"))
    p.add_argument("--x", type=float, default=Thresholds().class_cell_collapsed_share,
                   help="the bound whose moved models are listed")
    a = p.parse_args()
    items = calibrate.targets("calibration", calibrate.ROOT / "zoo" / "out", calibrate.ROOT / "latent_zoo")
    pairs = calibrate.load_scans(items, a.scans, a.mode)
    print(f"{len(pairs)} {a.mode} scans")
    for x in GRID:
        hit, models, agree, conditions = tally(pairs, at(x))
        print(f"class_cell_collapsed_share {x:<5g} collapse {hit}/{models}  conditions {agree}/{conditions}")
    moved(pairs, a.x)


if __name__ == "__main__":
    main()
