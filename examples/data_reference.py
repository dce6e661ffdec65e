"""Exploration (issue 12, after round 27): can the training data's spread, without its labels, show the models that
draw every condition narrower than their data?

The scan judges a condition's seed diversity against the model's own grid (the seed share), so a model uniformly
narrower than its data reads healthy where the brute force, which divides by the data's within-class variance,
reads `at_risk` (rounds 8, 17, 22 and 27). This script asks, from the committed scans and the zoo's training images
alone, what the label-free reference of :mod:`collapsecheck.measure.datadiv` would say:

    rho_c = W_c / (V - B)

with W_c = pixel_rms_c^2 / 2, V the training images' per-pixel variance (no labels) and B the conditions' between
variance as the seed shares imply it. The rule tried: a model the scan reads healthy reads `at_risk` when its mean
rho is below t. Fast mode reads rho from its fast samples and, when the model is healthy and its rho is below
t x BAND, from the w = 1 samples re-drawn at full settings, which are a full scan's samples, so the full scan's
numbers. Only models whose conditions are classes or prompts (not pixel-aligned images) are judged. t is scanned
over a grid on the calibration split (both modes) and checked by leave-one-dataset-out (the pixel zoo one group).

    python examples/data_reference.py --scans scans/          # the scans of `calibrate.py scan --split calibration`
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import calibrate as cal  # noqa: E402
from collapsecheck.escalate.data import CLASS_LIKE  # noqa: E402
from collapsecheck.load.images import read_training_images  # noqa: E402
from collapsecheck.measure.datadiv import data_relative, image_variance  # noqa: E402

GRID = [round(0.025 * k, 3) for k in range(0, 25)]  # 0 (rule off) .. 0.6
BAND = 1.5  # fast mode re-draws w = 1 at full settings when rho < t x BAND (fast/full rho ratios: main())


def group(name: str) -> str:
    return "pixel" if name.startswith("pixel/") else name.split("/")[1]


def variance_of(name: str, cache: dict) -> float:
    """V of the model's training data, read by the scan's own image reader from calibrate.py's PNG export."""
    key = group(name)
    if key not in cache:
        folder = cal.data_images_dir(key)
        first = next(folder.iterdir())
        from PIL import Image

        with Image.open(first) as im:
            channels, size = (1 if im.mode == "L" else 3), (im.size[1], im.size[0])
        cache[key] = image_variance(read_training_images(folder, channels, size, "--data-images")[0])
    return cache[key]


def rho_of(data: dict, v: float):
    if data["condition_set"]["kind"] not in CLASS_LIKE:
        return None
    conds = data["conditions"]
    return data_relative([c["pixel_rms"] for c in conds], [c["seed_share"] for c in conds], v, 0)


def verdict(data: dict, rho, t: float, th) -> str:
    base = cal.rejudge(data, th)["collapse"]
    return "at_risk" if base == "healthy" and rho is not None and rho.mean < t else base


def fast_rho(fast: dict, full: dict, v: float, t: float, th):
    """The rho fast mode reads: its own, or the full scan's where it re-draws (healthy and below t x BAND)."""
    rho = rho_of(fast, v)
    if rho is not None and cal.rejudge(fast, th)["collapse"] == "healthy" and rho.mean < t * BAND:
        return rho_of(full, v)
    return rho


def agreement(rows, t: float, th) -> tuple[int, int, int]:
    """(full agreeing, fast agreeing, fast = full) over ``rows`` of (item, full, fast, V)."""
    a_full = a_fast = same = 0
    for item, full, fast, v in rows:
        f = verdict(full, rho_of(full, v), t, th)
        q = verdict(fast, fast_rho(fast, full, v, t, th), t, th)
        truth = item["truth"]["collapse"]
        a_full, a_fast, same = a_full + (f == truth), a_fast + (q == truth), same + (f == q)
    return a_full, a_fast, same


def calibration_rows(scans: Path) -> list[tuple]:
    """(target, full scan, fast scan, V of its training data) for every calibration model scanned in both modes."""
    items = cal.targets("calibration", cal.ROOT / "zoo" / "out", cal.ROOT / "latent_zoo")
    full = dict((i["name"], d) for i, d in cal.load_scans(items, scans, "full"))
    fast = dict((i["name"], d) for i, d in cal.load_scans(items, scans, "fast"))
    cache: dict = {}
    return [(i, full[i["name"]], fast[i["name"]], variance_of(i["name"], cache)) for i in items
            if i["name"] in full and i["name"] in fast]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scans", type=Path, required=True)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    th = cal.Thresholds()
    rows = calibration_rows(args.scans)
    ratios = sorted(a.mean / b.mean for _, f, q, v in rows
                    if (a := rho_of(q, v)) is not None and (b := rho_of(f, v)) is not None)
    print(f"{len(rows)} calibration models; rho judged on {len(ratios)}; fast/full mean rho "
          f"{ratios[0]:.3f} .. {ratios[len(ratios) // 2]:.3f} (median) .. {ratios[-1]:.3f}")
    for t in GRID:
        a_full, a_fast, same = agreement(rows, t, th)
        print(f"t = {t:5.3f}: collapse full {a_full}, fast {a_fast} of {len(rows)}; fast = full {same}")
    held, off = leave_one_dataset_out(rows, lambda fit_on: max(GRID, key=lambda t: (sum(agreement(fit_on, t, th)[:2]), -t)),
                                      lambda test, t: sum(agreement(test, t, th)[:2]),
                                      lambda test, t: sum(agreement(test, 0.0, th)[:2]))
    print(f"leave-one-dataset-out (both modes): {held} vs rule off {off} of {2 * len(rows)}")
    return 0


def leave_one_dataset_out(rows, fit, held, off) -> tuple[int, int]:
    """Each dataset of ``rows`` (tuples whose first item is a calibrate.py target) held out in turn: ``fit`` on the
    others, then ``held(test, fitted)`` and ``off(test, fitted)`` (the rule off) on it, printed; their sums."""
    held_total = off_total = 0
    for g in sorted({group(r[0]["name"]) for r in rows}):
        fit_on, test = [r for r in rows if group(r[0]["name"]) != g], [r for r in rows if group(r[0]["name"]) == g]
        fitted = fit(fit_on)
        a, b = held(test, fitted), off(test, fitted)
        held_total, off_total = held_total + a, off_total + b
        print(f"held out {g:10s} {fitted}: {a} vs rule off {b}")
    return held_total, off_total


if __name__ == "__main__":
    raise SystemExit(main())
