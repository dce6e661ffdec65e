"""Round 19's measurement (docs/calibration.md): the null branch's spread share on the calibration models.

The spread share is the null branch's own w = 0 samples' seed variance over the variance of the model's w = 1
grid, every condition and seed together (``collapsecheck.measure.pixel.spread_share``). A null branch that was
learned draws the model's marginal (about 1); one that was never trained, behind a hint, can draw one image
whatever the seed (near 0). This script samples only the w = 0 and w = 1 grids, at the settings of a full or
fast scan (the same seeds and steps, so the same samples as the scan), and prints the share beside the brute
force's null label and the stored scan's null verdict, so that a rule can be chosen on the calibration split.

    python examples/experiments/null_spread.py --mode full --scans /work/scans > spread_full.tsv
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import calibrate  # noqa: E402
from collapsecheck.measure.pixel import spread_share  # noqa: E402
from collapsecheck.model.parametrization import vp_denoiser  # noqa: E402
from collapsecheck.run import checkpoint_info, conditions_of, load, schedule_for  # noqa: E402
from collapsecheck.stages import Scan, sample_sweep  # noqa: E402


def spread_of(config) -> float:
    """The spread share of ``config``'s checkpoint at its seeds and steps (w = 0 over the w = 1 grid)."""
    ckpt, denoiser = load(config)
    schedule = schedule_for(config, ckpt, denoiser)
    conds = conditions_of(config, ckpt, denoiser)
    config, _ = checkpoint_info(config, ckpt, denoiser, schedule)
    config = dataclasses.replace(config, guidance=(0.0, 1.0), guidance_scale=1.0)
    denoiser.to(torch.device("cpu"), torch.float32)
    s = Scan(vp_denoiser(denoiser, schedule), schedule, conds, config)
    sampled = sample_sweep(s)
    images = s.denoiser.decode_grid(sampled.raw, config.batch_size).clamp(-1.0, 1.0)
    return spread_share(images[0], images[1])


def stored_null(scans: Path, name: str, mode: str) -> str:
    path = scans / f"{name.replace('/', '__')}.{mode}.json"
    if not path.exists():
        return "-"
    nb = json.loads(path.read_text())["guidance"]["null_branch"]
    return f"{nb['verdict']}\t{nb.get('null_ratio')}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--mode", choices=("full", "fast"), default="full")
    p.add_argument("--split", choices=("calibration", "holdout"), default="calibration")
    p.add_argument("--scans", type=Path, help="stored scans (calibrate.py scan --out) to print the null verdict of")
    p.add_argument("--only", nargs="*", help="these model names only")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    items = calibrate.targets(a.split, calibrate.ROOT / "zoo" / "out", calibrate.ROOT / "latent_zoo")
    for item in items:
        if a.only and item["name"] not in a.only:
            continue
        options = {k: v for k, v in item["options"].items() if k != "reference"}
        share = spread_of(calibrate.make_config(checkpoint=item["path"], mode=a.mode, lpips=False, **options))
        stored = stored_null(a.scans, item["name"], a.mode) if a.scans else "-"
        print(f"{item['name']}\t{item['truth'].get('null_branch')}\t{share:.4f}\t{stored}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
