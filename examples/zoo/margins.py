"""Print the calibration margins of the scan's thresholds from benchmark.py --json outputs.

    python examples/zoo/margins.py /tmp/bench_full.json [/tmp/bench_holdout.json ...]

For each decisive number (median over a model's conditions, or the model-level number the verdict
uses) and each model: the value, the verdict it falls in, and its margin: the factor by which it
would have to change to cross the nearest threshold (the larger, the safer).
"""
from __future__ import annotations

import json
import sys

from collapsecheck.thresholds import Thresholds

TH = Thresholds()
MEASURES = [
    # (stat key in benchmark rows, label, thresholds low->high, direction)
    ("seed_share", "seed share (median over conditions)", (TH.collapsed_seed_share, TH.at_risk_seed_share)),
    ("pixel_rms", "pixel RMS (median over conditions)", (TH.collapsed_rms, TH.at_risk_rms)),
    ("lpips", "LPIPS, AlexNet (median over conditions)", (TH.collapsed_lpips, TH.at_risk_lpips)),
    ("null_hull", "null residual (largest over probes)", (TH.null_learned_residual, TH.null_not_learned_residual)),
    ("eps_ratio", "mean eps ratio at the verdict scale", (TH.weak_eps_ratio,)),
]


def margin(value, thresholds):
    if value is None or value <= 0:
        return None
    return min(max(value, t) / min(value, t) for t in thresholds)


def main(paths):
    rows = []
    for path in paths:
        rows += json.load(open(path))["rows"]
    for key, label, thresholds in MEASURES:
        print(f"\n{label}; thresholds {', '.join(f'{t:g}' for t in thresholds)}\n")
        print("| model | truth | scan | value | margin |")
        print("| --- | --- | --- | ---: | ---: |")
        for r in rows:
            v = r["stats"].get(key)
            m = margin(v, thresholds)
            truth = "/".join(str(r["truth"][k]) for k in ("collapse", "null_branch", "guidance"))
            scan = "/".join(r["scan"][k] for k in ("collapse", "null_branch", "guidance"))
            print(f"| {r['name']} | {truth} | {scan} | {'n/a' if v is None else f'{v:.3f}'} | "
                  f"{'n/a' if m is None else f'{m:.2f}x'} |")


if __name__ == "__main__":
    main(sys.argv[1:])
