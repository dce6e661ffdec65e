"""The latent zoo's brute force measured twice: how often does it agree with itself on other x_T seeds?

Every verdict is calibrated and scored against ``examples/latent_zoo/ground_truth.json``, one brute-force run per
model (x_T seeds 0..n-1). Its labels are estimates: a label near one of its own boundaries may fall the other way on
other seeds. This script compares the committed run with a second one on other seeds (``ground_truth.py
--seed-offset``, the same models, classifier, settings and rules; only the x_T noise differs), axis by axis, split by
the first run's own "decided" reading (``guidance_decided``, ``collapse_decided``, ``condition_decided``, the bands
that ``calibrate.py margins`` uses). With ``--scans`` it scores the scan against both runs as well: the agreement a
scan can be expected to reach is bounded by the brute force's agreement with itself.

    python examples/latent_zoo/ground_truth.py --seed-offset 1000 --seeds 32 --guided-seeds 32 --steps 50 \\
        --only digits --json repeat/digits.json        # each dataset at its committed settings (docs/calibration.md)
    python examples/latent_zoo/ground_truth.py --merge repeat/*.json --json repeat.json
    python examples/truth_repeat.py --repeat repeat.json [--scans scans/ --mode full]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import calibrate  # noqa: E402
from collapsecheck.thresholds import Thresholds  # noqa: E402

AXES = ("collapse", "null_branch", "guidance")
ORDER = {**calibrate.ORDERS, "collapse": calibrate.ORDERS["collapse"] + ("broken",)}


def decided(gt, entry: dict, axis: str):
    """The first run's own reading of its label: True (decided), False (near a boundary), None (no such reading)."""
    if axis == "collapse":
        return gt.collapse_decided(entry)
    if axis == "guidance":
        _, low, high = gt.guidance_interval(entry["per_condition"])
        return gt.guidance_decided(entry, low, high)
    return None


def split_counts(rows: list[tuple[bool, object]]) -> str:
    """'a/n' agreeing over all rows, then over the decided and the undecided ones where a reading exists."""
    def count(sel):
        return f"{sum(same for same, _ in sel)}/{len(sel)}"
    said = count(rows)
    if any(d is not None for _, d in rows):
        said += (f" (decided {count([r for r in rows if r[1] is True])}, "
                 f"near a boundary {count([r for r in rows if r[1] is False])})")
    return said


def compare_runs(gt, first: dict, second: dict, say=print) -> None:
    keys = [k for k in first if k in second]
    say(f"the brute force twice on {len(keys)} models: committed run (first) against the repeat (second)")
    for axis in AXES:
        pairs = [(first[k]["labels"][axis], second[k]["labels"][axis]) for k in keys]
        rows = [(a == b, decided(gt, first[k], axis)) for k, (a, b) in zip(keys, pairs)]
        say(f"{axis}: {split_counts(rows)} agree")
        for line in calibrate.confusion_lines(pairs, ORDER[axis]):
            say(line)
    say(f"conditions collapsed-or-not: {split_counts(condition_rows(gt, first, second, keys))} agree")
    moved = [f"{k}: {a} -> {b}" for k in keys for a, b in
             [(first[k]["labels"][x], second[k]["labels"][x]) for x in AXES] if a != b]
    say("labels that moved: " + ("; ".join(moved) or "none"))


def condition_rows(gt, first: dict, second: dict, keys: list[str]) -> list[tuple[bool, bool]]:
    rows = []
    for k in keys:
        c1, c2 = set(first[k]["labels"]["collapsed_conditions"]), set(second[k]["labels"]["collapsed_conditions"])
        for i, c in enumerate(first[k]["per_condition"]):
            rows.append(((i in c1) == (i in c2), gt.condition_decided(c["w1"]["div_ratio"])))
    return rows


def scan_against_both(first: dict, second: dict, scans: Path, mode: str, say=print) -> None:
    """The scan's verdicts (re-judged with the default thresholds) against each run, on the models both cover."""
    th = Thresholds()
    items = [i for ds in calibrate.CALIBRATION_DATASETS for i in calibrate.latent_targets(ds)]
    got = {item["name"].removeprefix("latent/"): calibrate.rejudge(data, th)
           for item, data in calibrate.load_scans(items, scans, mode)}
    keys = [k for k in first if k in second and k in got]
    say(f"the scan ({mode}) on those of them it has ({len(keys)} models):")
    for axis in AXES:
        ok1 = sum(got[k][axis] == first[k]["labels"][axis] for k in keys)
        ok2 = sum(got[k][axis] == second[k]["labels"][axis] for k in keys)
        same = [k for k in keys if first[k]["labels"][axis] == second[k]["labels"][axis]]
        ok = sum(got[k][axis] == first[k]["labels"][axis] for k in same)
        say(f"{axis}: against the first {ok1}/{len(keys)}, against the second {ok2}/{len(keys)}; "
            f"where the two runs agree {ok}/{len(same)}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=Path, required=True, help="ground_truth.py's JSON from another --seed-offset")
    p.add_argument("--first", type=Path, default=calibrate.ROOT / "latent_zoo" / "ground_truth.json")
    p.add_argument("--scans", type=Path, help="calibrate.py's scan folder: score the scan against both runs")
    p.add_argument("--mode", default="full", choices=("full", "fast"))
    a = p.parse_args(argv)
    gt, _ = calibrate.latent_ground_truth(calibrate.ROOT / "latent_zoo")
    first = json.loads(a.first.read_text())["models"]
    second = json.loads(a.repeat.read_text())["models"]
    compare_runs(gt, first, second)
    if a.scans:
        scan_against_both(first, second, a.scans, a.mode)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
