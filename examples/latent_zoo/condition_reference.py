"""Exploration for the next round (docs/calibration.md, round 31): each condition judged against its own part of the
training data, found without labels.

The seed share judges a condition's seeds against the model's own grid, so a class narrow by nature (a CT slice on a
flat field, a forest seen from a satellite) reads collapsed in a healthy model. Here each training image is given to
the condition whose w = 1 centroid (the mean of SEEDS seeds) lies nearest, and a condition's seeds' variance per pixel
is compared with a robust spread of its cell (the median over the cell's images of their mean squared distance to the
cell's pixel-wise median: a few images of another class, far away, do not move it as they move a variance), and
(round 32) the scan's cell share (:mod:`collapsecheck.measure.cells`: the seeds' robust spread over the cell's).
Printed per condition beside the same seeds against the class's own training images (the oracle, with labels) and the brute
force's ``div_ratio`` (``ground_truth.json``). Nothing in collapsecheck reads this; it samples with the ground truth's
own sampler (DDIM, STEPS steps, seeds 0..SEEDS-1).

    python examples/latent_zoo/condition_reference.py mednist,eurosat drop10,nodrop,tied_half
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "zoo"))
sys.path.insert(0, str(HERE))
import ground_truth as G  # noqa: E402
import latent_data as D  # noqa: E402
from gt_measures import mean_pixel_variance  # noqa: E402
from collapsecheck.measure.cells import cell_shares, reduced_data  # noqa: E402

SEEDS, STEPS = 16, 50


def robust_spread(images: torch.Tensor) -> float:
    """The median over ``images`` of their mean squared distance per pixel to the pixel-wise median (nan under 2)."""
    if len(images) < 2:
        return float("nan")
    flat = images.reshape(len(images), -1).double()
    return float(((flat - flat.median(0).values) ** 2).mean(1).median())


def condition_rows(dataset: str, recipe: str, train: tuple, truth: dict) -> list[str]:
    """One line per condition of ``dataset/recipe``: its cell's size and purity, the seeds against the cell's robust
    spread, against the class's own variance, and the brute force's div_ratio. ``train``: the dataset's training
    split (images, labels)."""
    train_x, train_y = train
    model = G.Model(HERE / "models" / dataset / recipe)
    x = model.sample(model.cond, 1.0, list(range(SEEDS))).reshape(len(model.cond), SEEDS, -1).double()
    cell = torch.cdist(train_x.reshape(len(train_x), -1).double(), x.mean(1)).argmin(1)
    shares, _ = cell_shares(x.reshape(len(model.cond), SEEDS, 1, 16, 16),
                            reduced_data([train_x.reshape(-1, 1, 16, 16)]))
    rows = []
    for c, cls in enumerate(model.cond_class):
        seeds = float(x[c].var(0).mean())
        mine = cell == c
        purity = float((train_y[mine] == cls).double().mean()) if mine.any() else float("nan")
        oracle = mean_pixel_variance(train_x[train_y == cls])
        gt = truth[f"{dataset}/{recipe}"]["per_condition"][c]["w1"]["div_ratio"]
        share = float("nan") if shares[c] is None else shares[c]
        rows.append(f"{dataset:9s} {recipe:16s} c{c} cell {int(mine.sum()):4d} purity {purity:.2f}  "
                    f"seeds/cell {seeds / robust_spread(train_x[mine]):6.3f}  cell share {share:6.3f}  "
                    f"seeds/class {seeds / oracle:6.3f}  brute force {gt:.3f}")
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("datasets", help="comma-separated latent zoo datasets")
    p.add_argument("recipes", help="comma-separated recipes")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    G.STEPS = STEPS
    truth = json.loads((HERE / "ground_truth.json").read_text())["models"]
    for dataset in args.datasets.split(","):
        train = D.load_split(dataset, "train")
        for recipe in args.recipes.split(","):
            print("\n".join(condition_rows(dataset, recipe, train, truth)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
