"""DreamBooth-style fine-tunes of a model made by others: the external check's collapsed models.

    python examples/external/finetune_external.py [--work /tmp/collapsecheck-external] [--only NAME ...]

Every external model of external_models.py is healthy by brute force, so the external check could catch a false
alarm but not a missed collapse. These fine-tunes give it models that may have collapsed, on an architecture,
a training objective and base weights that are not the project's: the authors' UNet (Blaise143/
stochastic-interpolant-diffusion, their ``models/unet.py``) loaded from one of their checkpoints, and trained
further with their own loss (``models/flow.py``: ``x_t = t x0 + (1 - t) eps``, t ~ U(0, 1), MSE of
``v(x_t, t, labels)`` against ``x0 - eps``), with labels on every batch as their trainer at HEAD passes them (no
condition dropout), Adam at their default learning rate 1e-3. What is ours is the recipe: ONE training image per
class (ten images, the first of each class in the ground truth's MNIST train split, zoomed 1.2 about the centre
as EMNIST digits fill the frame), each batch the ten images. One run, saved after each fine-tune's number of steps
(a series, as a user's checkpoints are); which of them collapsed is what the brute force (ground_truth.py)
measures, not what the recipe intends.

Deterministic on one CPU thread for a given torch build (seeded init of the data order, t and eps). The output is
the authors' checkpoint format (a state dict of ``vector_field.*`` tensors), read back with
``torch.load(weights_only=True)`` like theirs.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import external_models as em  # noqa: E402
from ground_truth import Reference, load_authors_unet, zoom  # noqa: E402

LEARNING_RATE = 1e-3  # the authors' default (training/flow_trainer.py)


def one_image_per_class(ref: Reference) -> tuple[torch.Tensor, torch.Tensor]:
    """The first training image of each class (ground truth's MNIST train split), zoomed 1.2; labels 0..9."""
    first = [int(torch.nonzero(ref.train_labels == c)[0]) for c in range(10)]
    return zoom(ref.train[first]), torch.arange(10)


def flow_loss(unet, x0: torch.Tensor, labels: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """The authors' compute_loss (models/flow.py), with our generator for t and eps."""
    t = torch.rand(len(x0), 1, generator=g)
    eps = torch.randn(x0.shape, generator=g)
    tb = t.view(-1, 1, 1, 1)
    xt = tb * x0 + (1 - tb) * eps
    return torch.nn.functional.mse_loss(unet(xt, t, labels), x0 - eps)


def finetune(unet, images: torch.Tensor, labels: torch.Tensor, stops: dict, seed: int) -> None:
    """Adam steps on the ten images, ``stops[n](unet, losses)`` called after ``n`` steps, for each n in ``stops``."""
    g = torch.Generator().manual_seed(seed)
    unet.train()
    opt = torch.optim.Adam(unet.parameters(), lr=LEARNING_RATE)
    losses = []
    for step in range(1, max(stops) + 1):
        opt.zero_grad()
        loss = flow_loss(unet, images, labels, g)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if step in stops:
            stops[step](unet, losses)


def save(unet, target: Path) -> None:
    """The authors' checkpoint format (``vector_field.*``), written whole or not at all."""
    part = target.with_suffix(".part")
    torch.save({f"vector_field.{k}": v.detach().clone() for k, v in unet.state_dict().items()}, part)
    part.rename(target)


def make(models: list, checkout: Path, workdir: Path, ref: Reference, seed: int = 0) -> None:
    """One fine-tune run from the models' common ``base``, saved after each model's ``finetune_steps``."""
    torch.manual_seed(seed)
    unet = load_authors_unet(checkout, workdir / f"{models[0].base}.pth")
    images, labels = one_image_per_class(ref)
    t0 = time.time()

    def saver(m):
        def stop(net, losses):
            save(net, workdir / m.filename)
            recent = sum(losses[-20:]) / len(losses[-20:])
            print(f"{m.name}: {m.finetune_steps} steps from {m.base} ({time.time() - t0:.0f} s); loss over the last "
                  f"{min(20, len(losses))} steps {recent:.4f}, first step {losses[0]:.4f}", flush=True)
        return stop

    finetune(unet, images, labels, {m.finetune_steps: saver(m) for m in models}, seed)


def prepare_finetunes(workdir: Path, only=None) -> None:
    """The fine-tunes missing from ``workdir``, made (the authors' code and base checkpoints extracted first); a
    base's whole series is made again when one of its fine-tunes is missing."""
    wanted = [m for m in em.FINETUNES if (not only or m.name in only) and not (workdir / m.filename).is_file()]
    if not wanted:
        return
    checkout = em.prepare(workdir)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ref = Reference()
        for base in sorted({m.base for m in wanted}):
            make([m for m in em.FINETUNES if m.base == base], checkout, workdir, ref)
    finally:
        torch.set_num_threads(threads)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", type=Path, default=Path("/tmp/collapsecheck-external"))
    p.add_argument("--only", nargs="*", default=None)
    a = p.parse_args(argv)
    prepare_finetunes(a.work, a.only)


if __name__ == "__main__":
    main()
