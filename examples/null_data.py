"""The fit of round 29 (issue 12): the null branch's own w = 0 samples against the training data (``--data-images``).

The brute force reads a null `learned` only when its w = 0 samples are as varied as real data (pairwise RMS at least
0.5 of held-out images'), besides data-like and covering the classes, and `not_learned` below 0.25. The scan had no
such reference: its null spread compares the w = 0 samples with the model's own w = 1 grid. With the training
images it can: :func:`collapsecheck.measure.datadiv.null_data_share` is the w = 0 samples' seed variance
(``pixel_rms(w = 0)^2 / 2``) over the images' variance. The rule (:func:`collapsecheck.verdict.data.null_against_data`):
below ``null_data_not_learned`` the null reads `not_learned`, below ``null_data_unclear`` a `learned` null reads
`unclear`; it never makes the null's verdict better.

This script computes ``null_data_share`` from each scan's w = 0 sweep point and its dataset's training images as
``calibrate.py`` exports them (the scan's own computation; scans written before round 29 lack it), simulates fast mode's
re-draw (since round 39 fast mode always reads the full scan's share, from w = 0 drawn again at full settings; in
round 29 it did so within a band of 1.25 around a threshold), scans both
thresholds over a grid on the calibration split (both modes; every axis and condition, as ``calibrate.py fit``
counts) and checks the fit by leave-one-dataset-out (the pixel zoo one group).

    python examples/null_data.py --scans scans/          # the scans of `calibrate.py scan --split calibration`
    python examples/null_data.py --scans scans/ --write filled/ && \
    python examples/calibrate.py score --split calibration --out filled/   # the split scored with the rule

``--write DIR`` writes every scan with the share as the defaults would read it (fast mode's re-draw simulated at the
default thresholds) and skips the grid.
"""
from __future__ import annotations

import argparse
import json
import dataclasses
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import calibrate as cal  # noqa: E402
from data_reference import calibration_rows, leave_one_dataset_out  # noqa: E402
from collapsecheck.measure.datadiv import null_data_share  # noqa: E402

UNCLEAR = [round(0.025 * k, 3) for k in range(1, 17)]  # 0.025 .. 0.4
NOT_LEARNED = [0.02, 0.03, 0.04, 0.05, 0.0625, 0.075, 0.1, 0.125, 0.15]


def share_of(data: dict, v: float):
    """null_data_share from the scan's own w = 0 sweep point: a full scan's, or fast mode's before any re-draw (which
    :func:`pairs_for` replaces by the full scan's)."""
    nb = data["guidance"]["null_branch"]
    if nb["verdict"] == "absent_by_design" or data["condition_set"]["kind"] == "control":
        return None
    w0 = [p["pixel_rms"] for p in data["guidance"]["sweep"] if p["w"] == 0.0]
    return null_data_share(w0[0], v) if w0 else None


def with_share(data: dict, share) -> dict:
    return cal.with_null_branch(data, dict(data["guidance"]["null_branch"], null_data_share=share))


def pairs_for(rows):
    """(full pairs, fast pairs): fast mode's share is the full scan's wherever it has one
    (it draws w = 0 again at full settings: :func:`collapsecheck.escalate.data.null_against_data`)."""
    full = [(item, with_share(f, sf)) for item, f, q, sf, sq in rows]
    fast = [(item, with_share(q, sf if sq is not None else sq)) for item, f, q, sf, sq in rows]
    return full, fast


def score(rows, u: float, n: float, th, off: bool = False) -> tuple[int, int, int]:
    """(full agreement, fast agreement, models whose null verdict is the same in both modes); ``off``: the rule
    off (no share: the scan before round 29)."""
    t = dataclasses.replace(th, null_data_unclear=u, null_data_not_learned=n)
    full, fast = pairs_for([(i, f, q, None, None) for i, f, q, *_ in rows] if off else rows)
    same = sum(cal.rejudge(a, t)["null_branch"] == cal.rejudge(b, t)["null_branch"] for (_, a), (_, b) in zip(full, fast))
    return cal.agreement(full, t)[0], cal.agreement(fast, t)[0], same


def best(rows, th) -> tuple[float, float]:
    """The pair with the most agreement (both modes); among ties, calibrate.py's rule for each threshold: the middle
    (geometric) of the widest run of tied values, u first (over the best n for each), then n at that u."""
    scores = {(u, n): sum(score(rows, u, n, th)[:2]) for u in UNCLEAR for n in NOT_LEARNED if n <= u}
    top = max(scores.values())
    tied_u = [u for u in UNCLEAR if max(v for (a, _), v in scores.items() if a == u) == top]
    u = middle_of_widest_run(UNCLEAR, lambda x: x in tied_u)
    on_grid = min(tied_u, key=lambda x: abs(x - u))  # n's run is read on the grid, at the tied u nearest the middle
    return u, middle_of_widest_run(NOT_LEARNED, lambda n: scores.get((on_grid, n)) == top)


def middle_of_widest_run(grid: list, best) -> float:
    """The geometric middle of the widest run of consecutive grid values for which ``best`` holds."""
    runs, run = [], []
    for v in grid:
        if best(v):
            run.append(v)
        elif run:
            runs, run = runs + [run], []
    widest = max(runs + [run], key=len)
    return float(f"{(widest[0] * widest[-1]) ** 0.5:.3g}")


def write_filled(rows, out: Path) -> None:
    """Each scan of ``rows`` with null_data_share as the defaults read it, as JSON under ``out`` (calibrate.py names)."""
    out.mkdir(parents=True, exist_ok=True)
    full, fast = pairs_for(rows)
    for mode, pairs in (("full", full), ("fast", fast)):
        for item, data in pairs:
            (out / f"{item['name'].replace('/', '__')}.{mode}.json").write_text(json.dumps(data))
    print(f"{len(rows)} models, both modes, written to {out}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scans", type=Path, required=True)
    p.add_argument("--write", type=Path, help="write the scans with the share filled in here, and stop")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    th = cal.Thresholds()
    rows = [(i, f, q, share_of(f, v), share_of(q, v)) for i, f, q, v in calibration_rows(args.scans)]
    if args.write:
        write_filled(rows, args.write)
        return 0
    ratios = sorted(sq / sf for *_, sf, sq in rows if sf and sq)
    print(f"{len(rows)} calibration models; null_data_share on {len(ratios)}; fast/full "
          f"{ratios[0]:.3f} .. {ratios[len(ratios) // 2]:.3f} (median) .. {ratios[-1]:.3f}")
    print(f"rule off: {sum(score(rows, 1.0, 0.1, th, off=True)[:2])} (both modes)")
    for u in UNCLEAR:
        print(f"null_data_unclear {u:5.3f}: " + "  ".join(
            f"{n:g}:{sum(score(rows, u, n, th)[:2])}" for n in NOT_LEARNED if n <= u))
    u, n = best(rows, th)
    a_full, a_fast, same = score(rows, u, n, th)
    print(f"best: null_data_unclear {u:g}, null_data_not_learned {n:g}: full {a_full}, fast {a_fast} "
          f"(rule off {score(rows, u, n, th, off=True)[:2]}); null fast = full {same} of {len(rows)}")
    held, off = leave_one_dataset_out(rows, lambda fit_on: best(fit_on, th),
                                      lambda test, un: sum(score(test, *un, th)[:2]),
                                      lambda test, un: sum(score(test, *un, th, off=True)[:2]))
    print(f"leave-one-dataset-out (both modes, every axis and condition): {held} vs rule off {off}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
