"""Models for the --reference and --train-images tests, as ``--model tests/helpers_witness.py:FUNCTION`` entry points.

``memorizer(folder)``: the exact minimiser of the denoising loss on the PNG images of ``folder`` (the ideal
denoiser of their empirical distribution: ``E[x0 | x_t]`` is a softmax-weighted mean of the training images),
i.e. what a network that fits its training set perfectly becomes; its samples are training images.
Condition k draws on the images whose index is k mod 2.

With a file ``pull.txt`` in the folder, its outputs are squashed toward the first image (:class:`Pulled`): a
fine-tune that fell toward one image while its absolute diversity stays ordinary. ``train_tiny_unet``: a real
tiny UNet trained until it memorises a few images.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from collapsecheck.load.custom import CustomModel

PULL = 0.8
#: the pull acts at timesteps below this: the last DDIM step (t = 0) of 7 or 25 steps, so the fine-tune's
#: outputs are the base's squashed toward one image, (1 - pull) of its seed-to-seed differences left
PULL_BELOW = 20
CONDITIONS = 2


def write_pngs(images: torch.Tensor, folder: Path, names) -> None:
    """(N, 1, H, W) images in [-1, 1] as 8-bit grayscale PNGs."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for img, name in zip(images, names):
        arr = ((img[0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
        Image.fromarray(arr, mode="L").save(folder / name)


def _alphas_cumprod() -> torch.Tensor:
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    return torch.cumprod(1 - betas, 0).float()


class EmpiricalDenoiser(nn.Module):
    """eps of the ideal denoiser of each condition's training images (variance-preserving schedule)."""

    def __init__(self, images: torch.Tensor, alphas_cumprod: torch.Tensor):
        super().__init__()
        self.register_buffer("images", images)
        self.register_buffer("abar", alphas_cumprod)
        self.register_buffer("member", torch.stack([torch.arange(len(images)) % CONDITIONS == k
                                                    for k in range(CONDITIONS)]).float())

    def forward(self, x, t, cond):
        a = self.abar[t.long()].view(-1, 1, 1, 1).to(x.dtype)
        d2 = (x[:, None] - a.sqrt()[:, None] * self.images[None]).flatten(2).pow(2).sum(-1)  # (B, N)
        mask = torch.where(cond.sum(-1, keepdim=True) > 0, cond @ self.member, torch.ones_like(d2))  # null: all
        logits = -d2 / (2 * (1 - a.view(-1, 1))) + torch.log(mask.clamp_min(1e-30))
        x0 = torch.einsum("bn,nchw->bchw", logits.softmax(-1), self.images)
        return (x - a.sqrt() * x0) / (1 - a).sqrt()


class Pulled(nn.Module):
    """A denoiser whose x0 prediction at the last step (t < PULL_BELOW) is pulled toward one image:
    ``x0' = (1 - pull) x0 + pull target``: its outputs squashed toward that image."""

    def __init__(self, inner: nn.Module, alphas_cumprod: torch.Tensor, target: torch.Tensor, pull: float = PULL):
        super().__init__()
        self.inner, self.pull = inner, pull
        self.register_buffer("abar", alphas_cumprod)
        self.register_buffer("target", target)

    def forward(self, x, t, cond):
        eps = self.inner(x, t, cond)
        a = self.abar[t.long()].view(-1, 1, 1, 1).to(x.dtype)
        x0 = (x - (1 - a).sqrt() * eps) / a.sqrt()
        pulled = (1 - self.pull) * x0 + self.pull * self.target
        x0 = torch.where((t < PULL_BELOW).view(-1, 1, 1, 1), pulled, x0)  # the last step: the outputs squashed
        return (x - a.sqrt() * x0) / (1 - a).sqrt()


def memorizer(checkpoint: str) -> CustomModel:
    """The ideal denoiser of the PNG images in ``checkpoint``; with a file ``pull.txt`` there (a number PULL),
    "fine-tuned" toward its first image: x0' = (1 - PULL) x0 + PULL image_0, for every condition."""
    from collapsecheck.load.images import read_training_images

    images, _ = read_training_images(checkpoint, 1, (8, 8))
    network = EmpiricalDenoiser(images, _alphas_cumprod())
    pull = Path(checkpoint) / "pull.txt"
    if pull.is_file():
        network = Pulled(network, _alphas_cumprod(), images[0], float(pull.read_text()))
    return _custom(network)


def _custom(network: nn.Module) -> CustomModel:
    return CustomModel(network=network, sample_shape=(1, 8, 8),
                       conditions=torch.eye(CONDITIONS), null=torch.zeros(CONDITIONS),
                       alphas_cumprod=_alphas_cumprod(), labels=[f"class {k}" for k in range(CONDITIONS)])


def train_tiny_unet(images: torch.Tensor, steps: int = 150, batch: int = 16, lr: float = 5e-3):
    """A tiny class-conditional UNet (class k = image k, 10% null-class dropout) trained with the DDPM loss on
    ``images`` (N, 1, 8, 8) until it memorises them; with its scheduler. Seeded; the global RNG is left alone."""
    from diffusers import DDPMScheduler

    from helpers_models import tiny_class_unet

    n = images.shape[0]
    unet = tiny_class_unet(num_classes=n).train()
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
    abar = scheduler.alphas_cumprod
    opt = torch.optim.Adam(unet.parameters(), lr=lr)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        idx = torch.randint(0, n, (batch,), generator=g)
        labels = torch.where(torch.rand(batch, generator=g) < 0.1, torch.full_like(idx, n), idx)
        t = torch.randint(0, 1000, (batch,), generator=g)
        eps = torch.randn(batch, 1, 8, 8, generator=g)
        a = abar[t].view(-1, 1, 1, 1)
        loss = (unet(a.sqrt() * images[idx] + (1 - a).sqrt() * eps, t, class_labels=labels).sample - eps).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return unet.eval().requires_grad_(False), scheduler
