"""An exploration for the null-branch finding (issue 12; docs/calibration.md, round 6): how evenly the null
branch's w = 0 samples cover the conditions, as the model's own implicit classifier reads them, beside the brute
force's null label. The scan now reports the same measure (`guidance.null_branch.null_coverage`, round 27).

    python examples/null_coverage.py --split calibration [--seeds 96]

Each latent zoo model draws ``--seeds`` w = 0 samples with the scan's own loading, schedule and sampler (full
mode's 25 DDIM steps); each sample is noised at the implicit classifier's four noise levels (one seeded noise
per level, shared by every candidate) and assigned to the condition whose denoising error is lowest. Printed:
the normalized entropy of those assignments (1: every condition equally often; 0: all one condition) and the
largest share.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib.util
from pathlib import Path

import torch

from collapsecheck import make_config
from collapsecheck.measure.coverage import assignment_errors, coverage_of
from collapsecheck.run import conditions_of, load, schedule_for
from collapsecheck.sample.grid import sample_grid

ROOT = Path(__file__).resolve().parent


def calibrate_script():
    spec = importlib.util.spec_from_file_location("calibrate_script", ROOT / "calibrate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def null_samples(item: dict, seeds: int):
    """The model's denoiser, schedule, conditions and ``seeds`` w = 0 samples (one condition's grid row: at
    w = 0 the condition does not enter)."""
    config = make_config(checkpoint=item["path"], mode="full", **item["options"])
    ckpt, denoiser = load(config)
    schedule = schedule_for(config, ckpt, denoiser)
    conds = conditions_of(config, ckpt, denoiser)
    first = dataclasses.replace(conds, values=conds.values[:1], labels=conds.labels[:1],
                                null=conds.null[:1] if conds.paired_null else conds.null)
    grid = sample_grid(denoiser, schedule, first, list(range(seeds)), [0.0], config.steps, 64)
    return denoiser, schedule, conds, grid.samples[0, 0]


def coverage(denoiser, schedule, conds, x: torch.Tensor) -> tuple[float, float]:
    """Normalized entropy and largest share of the implicit classifier's assignments of ``x`` to the conditions:
    the scan's own computation (:mod:`collapsecheck.measure.coverage`: the same noise levels, noises and errors)."""
    c = coverage_of(assignment_errors(denoiser, schedule, conds.values, x, 64))
    return c.entropy, c.largest_share


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--split", choices=("calibration", "holdout"), required=True)
    p.add_argument("--seeds", type=int, default=96)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    calibrate = calibrate_script()
    for item in calibrate.targets(args.split, ROOT / "zoo" / "out", ROOT / "latent_zoo"):
        if item["name"].startswith("latent/"):
            entropy, top = coverage(*null_samples(item, args.seeds))
            print(f"{item['name']:34s} truth null {str(item['truth'].get('null_branch')):12s} "
                  f"coverage entropy {entropy:.3f}  largest share {top:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
