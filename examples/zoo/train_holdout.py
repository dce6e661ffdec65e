"""Train the HOLDOUT zoo: tiny digit models with other seeds, widths, step counts and recipes than the
reference zoo, to test that collapsecheck's thresholds (calibrated on ``train_zoo.py``'s zoo) hold
beyond it.

    python examples/zoo/train_holdout.py --out examples/zoo/out-holdout [--only NAME ...] [--steps N]
    python examples/zoo/train_holdout.py --list
    python examples/zoo/train_holdout.py tool ground_truth.py --zoo examples/zoo/out-holdout \
        --json examples/zoo/ground_truth_holdout.json --markdown docs/zoo-ground-truth-holdout.md
    python examples/zoo/train_holdout.py tool benchmark.py --zoo examples/zoo/out-holdout \
        --truth examples/zoo/ground_truth_holdout.json --json /tmp/bench_holdout.json

Training reuses ``train_zoo.train_recipe`` (same optimiser, EMA, schedule, output layout and
``recipe.json`` fields).  Two holdout recipes need what train_zoo does not have: a full-resolution,
noisy condition concatenated BEFORE x_t (``h_concat_full``) and a cross-attention table with another
seed (``h_crossattn_nodrop``); for those, train_zoo's condition maker, model call and table are
swapped for the duration of that one recipe (``_patched``), nothing in train_zoo is edited.

``recipe.json`` gets three extra keys: ``concat_order`` ("after" | "before"; the scan must be given
``--concat-order before`` for ``h_concat_full``), ``condition`` (what the condition is) and
``main_zoo_counterpart`` (the reference-zoo recipe it varies).

``tool`` runs ground_truth.py or benchmark.py unchanged except for what a holdout zoo needs and they do
not read: the recipe's ``concat_order`` is passed to the denoiser / scan, and the ground truth's list
of expected model names is the holdout's (not train_zoo's, which would list every reference model as
missing).

CPU only, one thread by default, deterministic for a given seed and torch build.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, Optional

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE))

import digits  # noqa: E402
import train_zoo  # noqa: E402
from train_zoo import NULL_CLASS, Recipe  # noqa: E402

HOLDOUT_SEED = 7  # the reference zoo trains with --seed 0
XATTN_TABLE_SEED_HOLDOUT = 4321  # the reference zoo's table uses seed 1234
CONCAT_FULL_NOISE = 0.1  # sigma of the Gaussian noise on h_concat_full's condition
CONCAT_FULL_COND_SEED = 77  # seed of the fixed noise on the scan conditions of h_concat_full


@dataclass
class HoldoutRecipe(Recipe):
    """A train_zoo Recipe plus what the holdout varies beyond it."""

    seed: int = HOLDOUT_SEED
    concat_order: str = "after"  # concat models: where the condition sits in channels relative to x_t
    condition: str = ""  # what the condition is, in words ("" for class labels)
    cond_noise_std: float = 0.0  # Gaussian noise on a concatenated condition (training and scan conditions)
    main_zoo_counterpart: str = ""


# --------------------------------------------------------------------------------------- recipes
def h_class_drop10() -> HoldoutRecipe:
    return HoldoutRecipe(
        name="h_class_drop10",
        description="Class labels (null class 10), 10% condition dropout; width (16, 32), seed 7, 1200 steps.",
        conditioning="class",
        cond_dropout_prob=0.10,
        block_out_channels=(16, 32),
        steps=1200,
        expected_collapse="healthy",
        expected_null_branch="learned",
        main_zoo_counterpart="class_dropout (15% dropout, width (32, 32), seed 0, 1500 steps)",
    )


def h_class_nodrop_wide() -> HoldoutRecipe:
    return HoldoutRecipe(
        name="h_class_nodrop_wide",
        description=(
            "Class labels, no condition dropout (null class 10 never trained); wider net (32, 64), fewer steps "
            "(800), lr 1e-3, EMA decay 0.99, seed 7."
        ),
        conditioning="class",
        cond_dropout_prob=0.0,
        block_out_channels=(32, 64),
        steps=800,
        lr=1e-3,
        warmup_steps=50,
        ema_decay=0.99,
        expected_collapse="healthy",
        expected_null_branch="not_learned",
        main_zoo_counterpart="class_nodrop (width (32, 32), 1500 steps, lr 2e-3, EMA 0.995, seed 0)",
    )


def h_concat_full() -> HoldoutRecipe:
    return HoldoutRecipe(
        name="h_concat_full",
        description=(
            "Condition = the full-resolution image itself plus Gaussian noise (sigma 0.1), concatenated BEFORE "
            "x_t in channels (input = cat([c, x_t])); no dropout, null = zeros; width (16, 32), seed 7, 1500 steps. "
            "A decoder that copies its condition."
        ),
        conditioning="concat",
        cond_dropout_prob=0.0,
        block_out_channels=(16, 32),
        steps=1500,
        concat_order="before",
        condition=f"x0 + N(0, {CONCAT_FULL_NOISE}^2) at 8x8 (fresh noise every batch; fixed noise, seed "
        f"{CONCAT_FULL_COND_SEED}, on the scan conditions)",
        cond_noise_std=CONCAT_FULL_NOISE,
        expected_collapse="collapsed",
        expected_null_branch="not_learned",
        notes="Scan with --concat-order before (recipe.json concat_order).",
        main_zoo_counterpart="concat_copy (2x-pooled condition AFTER x_t, width (32, 32), seed 0)",
    )


def h_concat_drop20() -> HoldoutRecipe:
    return HoldoutRecipe(
        name="h_concat_drop20",
        description=(
            "Pixel-aligned condition (the image 2x average-pooled, nearest-upsampled) concatenated after x_t; "
            "20% of conditions replaced by zeros; width (16, 32), seed 7, 2500 steps."
        ),
        conditioning="concat",
        cond_dropout_prob=0.20,
        block_out_channels=(16, 32),
        steps=2500,
        condition="digits.lowres_condition(x0): 2x average pool, nearest upsample to 8x8",
        expected_collapse="collapsed",
        expected_null_branch="learned",
        main_zoo_counterpart="concat_copy_dropout (15% dropout, width (32, 32), seed 0)",
    )


def h_memorize2() -> HoldoutRecipe:
    return HoldoutRecipe(
        name="h_memorize2",
        description=(
            "Class labels with 15% dropout on TWO training images per class (20 images), 1200 steps until "
            "memorized; width (16, 32), seed 7."
        ),
        conditioning="class",
        cond_dropout_prob=0.15,
        train_per_class=2,
        block_out_channels=(16, 32),
        steps=1200,
        expected_collapse="collapsed",
        expected_null_branch="learned",
        notes=(
            "Two images per class: a perfect memorizer still has two modes per class, so the brute-force "
            "ground truth may say at_risk rather than collapsed."
        ),
        main_zoo_counterpart="memorize (ONE image per class, width (32, 32), seed 0)",
    )


def h_vpred_nodrop() -> HoldoutRecipe:
    return HoldoutRecipe(
        name="h_vpred_nodrop",
        description=(
            "Class labels, prediction_type='v_prediction', no condition dropout; width (24, 48), batch 96, "
            "seed 7, 1200 steps."
        ),
        conditioning="class",
        cond_dropout_prob=0.0,
        prediction_type="v_prediction",
        block_out_channels=(24, 48),
        batch_size=96,
        steps=1200,
        expected_collapse="healthy",
        expected_null_branch="not_learned",
        main_zoo_counterpart="class_vpred (15% dropout, width (32, 32), batch 128, seed 0)",
    )


def h_crossattn_nodrop() -> HoldoutRecipe:
    return HoldoutRecipe(
        name="h_crossattn_nodrop",
        description=(
            "UNet2DConditionModel, encoder_hidden_states = a fixed random class embedding table (10, 1, "
            f"{train_zoo.XATTN_DIM}) with seed {XATTN_TABLE_SEED_HOLDOUT}; no dropout (null = zeros never "
            "trained); width (16, 32), seed 7, 1000 steps."
        ),
        conditioning="crossattn",
        cond_dropout_prob=0.0,
        block_out_channels=(16, 32),
        steps=1000,
        condition=f"row c of randn(10, 1, {train_zoo.XATTN_DIM}) with seed {XATTN_TABLE_SEED_HOLDOUT}",
        expected_collapse="healthy",
        expected_null_branch="not_learned",
        notes="Cross-attention at the 4x4 level, as in the reference zoo's crossattn_dropout.",
        main_zoo_counterpart="crossattn_dropout (15% dropout, table seed 1234, width (32, 32), seed 0)",
    )


RECIPES: Dict[str, Callable[[], HoldoutRecipe]] = {
    f.__name__: f
    for f in (h_class_drop10, h_class_nodrop_wide, h_concat_full, h_concat_drop20, h_memorize2, h_vpred_nodrop,
              h_crossattn_nodrop)
}


# --------------------------------------------------------------------------------------- swaps
def holdout_xattn_table() -> torch.Tensor:
    g = torch.Generator().manual_seed(XATTN_TABLE_SEED_HOLDOUT)
    return torch.randn(digits.NUM_CLASSES, 1, train_zoo.XATTN_DIM, generator=g)


class FullCondMaker:
    """h_concat_full's condition: the image plus fresh Gaussian noise, zeros where dropped."""

    def __init__(self, r: HoldoutRecipe):
        self.r = r
        self.g = torch.Generator().manual_seed(r.seed + 1000)

    def __call__(self, x0: torch.Tensor, labels: torch.Tensor, drop: torch.Tensor) -> torch.Tensor:
        c = x0 + self.r.cond_noise_std * torch.randn(x0.shape, generator=self.g)
        return c * (~drop).float().view(-1, 1, 1, 1)


def full_scan_conditions(r: HoldoutRecipe):
    """Ten held-out digits (one per class) plus fixed noise: (cond, null, provenance)."""
    xh, yh = digits.load_split("heldout")
    _, held_idx = digits.split_indices()
    idx = torch.cat([torch.nonzero(yh == c).squeeze(1)[:1] for c in range(digits.NUM_CLASSES)])
    g = torch.Generator().manual_seed(CONCAT_FULL_COND_SEED)
    cond = xh[idx] + r.cond_noise_std * torch.randn(xh[idx].shape, generator=g)
    prov = {
        "source": (
            f"held-out digits (one per class, classes 0..9) at full resolution plus N(0, {r.cond_noise_std}^2) "
            f"noise (seed {CONCAT_FULL_COND_SEED})"
        ),
        "dataset_indices": held_idx[idx].tolist(),
    }
    return cond.contiguous(), torch.zeros(1, 1, 8, 8), prov


def model_output_before(unet, conditioning, x_t, t, cond):
    """zoo_common.model_output with the concatenated condition BEFORE x_t."""
    if conditioning != "concat":
        raise ValueError(conditioning)
    if t.ndim == 0:
        t = t.expand(x_t.shape[0])
    return unet(torch.cat([cond, x_t], dim=1), t).sample


@contextlib.contextmanager
def _patched(r: HoldoutRecipe) -> Iterator[None]:
    """Swap train_zoo's condition maker / model call / table for one recipe, restore afterwards."""
    saved = {k: getattr(train_zoo, k) for k in ("CondMaker", "scan_condition_tensors", "model_output", "xattn_table")}
    try:
        if r.conditioning == "concat" and r.cond_noise_std > 0:
            train_zoo.CondMaker = FullCondMaker
            train_zoo.scan_condition_tensors = full_scan_conditions
        if r.conditioning == "concat" and r.concat_order == "before":
            train_zoo.model_output = model_output_before
        if r.conditioning == "crossattn":
            train_zoo.xattn_table = holdout_xattn_table
        yield
    finally:
        for k, v in saved.items():
            setattr(train_zoo, k, v)


def train(r: HoldoutRecipe, out_root: Path, steps: Optional[int]) -> dict:
    with _patched(r):
        return train_zoo.train_recipe(r, out_root, r.seed, steps)


# --------------------------------------------------------------------------------------- tools
def run_tool(tool: str, argv: list) -> int:
    """ground_truth.py / benchmark.py on a holdout zoo, honouring recipe.json's concat_order."""
    sys.path.insert(0, str(REPO))
    if tool in ("ground_truth.py", "ground_truth"):
        import collapsecheck.model.denoiser as cd
        import ground_truth as gt

        orig_load, orig_build = gt.load_model, cd.build_denoiser

        def load_model(path, recipe):
            order = recipe.get("concat_order", "after")
            cd.build_denoiser = lambda m, cls, cfg, concat_order="after": orig_build(m, cls, cfg, order)
            try:
                return orig_load(path, recipe)
            finally:
                cd.build_denoiser = orig_build

        gt.load_model = load_model
        gt.expected_names = lambda: list(RECIPES)
        return gt.main(argv)
    if tool in ("benchmark.py", "benchmark"):
        import benchmark as bm

        orig_scan = bm.scan_one

        def scan_one(path, recipe, options):
            if recipe.get("concat_order", "after") != "after" and "concat_order" not in options:
                options = {**options, "concat_order": recipe["concat_order"]}
            return orig_scan(path, recipe, options)

        bm.scan_one = scan_one
        return bm.main(argv)
    raise SystemExit(f"unknown tool {tool!r}: ground_truth.py or benchmark.py")


# --------------------------------------------------------------------------------------- main
def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["tool"]:
        if len(argv) < 2:
            raise SystemExit("usage: train_holdout.py tool ground_truth.py|benchmark.py [ARGS ...]")
        return run_tool(argv[1], argv[2:])
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=HERE / "out-holdout")
    ap.add_argument("--only", nargs="+", choices=sorted(RECIPES), help="train only these recipes (in holdout order)")
    ap.add_argument("--steps", type=int, default=None, help="override every recipe's step count (smoke tests)")
    ap.add_argument("--seed", type=int, default=None, help=f"override every recipe's seed (default {HOLDOUT_SEED})")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--list", action="store_true", help="list recipes and exit")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    if a.list:
        for name, f in RECIPES.items():
            r = f()
            print(f"{name:22s} {r.expected_collapse:10s} null {r.expected_null_branch:12s} {r.description}")
        return 0
    names = [n for n in RECIPES if a.only is None or n in a.only]
    a.out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    for n in names:
        r = RECIPES[n]()
        if a.seed is not None:
            r.seed = a.seed
        train(r, a.out, a.steps)
    print(f"holdout: {len(names)} model(s) in {time.time() - t0:.0f}s -> {a.out}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
