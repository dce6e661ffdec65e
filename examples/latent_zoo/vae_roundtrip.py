"""How far the latent zoo's shared VAE moves each class's held-out images from the data: a check of the ground truth.

The brute force (``ground_truth.py``) calls a condition ``broken`` when its decoded samples lie farther from the
training images than ``BROKEN_NN_RATIO`` (1.5) times a held-out image's nearest-neighbour distance. A sampler that
drew the data's own latents would still be decoded by the VAE; so for every class this script encodes and decodes
the held-out images and measures the same ratio on the round trip:

    round-trip nn_ratio = mean over the class's held-out images of RMS(decode(encode(x)), nearest training image)
                          / the mean nearest-neighbour RMS of all held-out images to the training images

A class whose round trip is over the bound is ``broken`` for the brute force whatever the UNet does: its collapse
labels there measure the VAE (docs/calibration.md, round 24). Nothing here imports collapsecheck.

    python examples/latent_zoo/vae_roundtrip.py                # every dataset with a committed model
    python examples/latent_zoo/vae_roundtrip.py tifinagh rsscn7
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from typing import Callable, List

import torch

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
import latent_data as D  # noqa: E402  (puts examples/zoo on the path: gt_measures)
from gt_measures import nn_rms  # noqa: E402


def broken_nn_ratio() -> float:
    """The brute force's bound (ground_truth.py, loaded by path: examples/zoo has a ground_truth.py of its own;
    not at import, since ground_truth.py imports this file)."""
    spec = importlib.util.spec_from_file_location("latent_ground_truth", ROOT / "ground_truth.py")
    gt = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gt)
    return gt.BROKEN_NN_RATIO


def class_ratios(roundtrip: Callable[[torch.Tensor], torch.Tensor], train_x: torch.Tensor, held_x: torch.Tensor,
                 held_y: torch.Tensor, classes: int) -> List[float]:
    """Per class: the round trip's mean nearest-training-image RMS over all held-out images' mean nearest RMS."""
    held_nn = float(nn_rms(held_x, train_x)[0].mean())
    back = roundtrip(held_x)
    return [float(nn_rms(back[held_y == c], train_x)[0].mean()) / held_nn for c in range(classes)]


def vae_roundtrip(folder: Path) -> Callable[[torch.Tensor], torch.Tensor]:
    """encode (the posterior mean) then decode with the VAE of a zoo folder, clamped to [-1, 1] as the samples are."""
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(folder / "vae", low_cpu_mem_usage=False).eval()

    @torch.no_grad()
    def run(x: torch.Tensor) -> torch.Tensor:
        return vae.decode(vae.encode(x).latent_dist.mean).sample.clamp(-1, 1)

    return run


def dataset_roundtrip(dataset: str, folder: Path) -> List[float]:
    """Each class's round-trip ratio of ``dataset`` with the VAE of its model folder ``folder`` (every folder of a
    dataset shares one VAE)."""
    train_x, _ = D.load_split(dataset, "train")
    held_x, held_y = D.load_split(dataset, "heldout")
    return class_ratios(vae_roundtrip(folder), train_x, held_x, held_y, D.num_classes(dataset))


def dataset_row(dataset: str, models: Path, bound: float) -> str:
    ratios = dataset_roundtrip(dataset, models / dataset / "drop10")
    over = [f"{D.CLASS_WORDS[dataset][c]} {r:.2f}" for c, r in enumerate(ratios) if r > bound]
    return f"| {dataset} | {min(ratios):.2f} | {max(ratios):.2f} | {', '.join(over) or '-'} |"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("datasets", nargs="*", help="default: every dataset with a committed drop10 model")
    p.add_argument("--models", type=Path, default=ROOT / "models")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    todo = a.datasets or [d for d in D.DATASETS if (a.models / d / "drop10" / "vae").is_dir()]
    bound = broken_nn_ratio()
    print(f"| dataset | round-trip nn_ratio, lowest class | highest class | classes over {bound} |")
    print("| --- | --- | --- | --- |")
    for dataset in todo:
        print(dataset_row(dataset, a.models, bound), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
