"""``--model`` entry point for the latent class-conditional flow model of sofia-dominguezc/MNIST-diffusion.

    collapsecheck scan DIFFUSION.pth --model examples/external/sofia_latent.py:build

A LATENT model: a small VAE (``VarAutoEncoder``, 82 K parameters) maps MNIST digits (28 x 28, pixels in
[0, 1]) to a 1 x 6 x 6 latent (its mean), and a 16.8 K-parameter flow network (``Diffusion``) generates
that latent from noise, conditioned on the digit.  The repository's code is not copied here: ``build``
imports its ``src/architectures.py`` from a checkout named by ``$SOFIA_REPO`` (default: ``sofia-checkout/``
beside the checkpoint, where external_models.prepare puts it).  The VAE's weights are the file named by
``$SOFIA_VAE`` (default: ``sofia-vae.pth`` beside the checkpoint).

What the author trained (``src/pl_train.py``, ``src/generate.py`` at commit 720f60d):

* the flow ``model(z_t, t, y)`` predicts the velocity ``u = z1 - z0`` of ``z_t = (1 - t) z0 + t z1``
  (t = 0 noise, t = 1 data latent), as Blaise143's models do;
* ``y`` is a one-hot row of 10 classes entering through a bias-free ``nn.Linear``; the trainer replaces
  it by the zero row with probability 0.1 (condition dropout), and their sampler's unconditional branch
  is that zero row; guidance ``w * model(z, t, y) + (1 - w) * model(z, t, 0)``, collapsecheck's w;
* their sampler: Euler-Maruyama on an SDE with the same marginals (noise ``1.5 (1 - t)``, 25 steps,
  guidance 4 by default), then ``vae.decode`` and a clip to [0, 1].

The restatement in VP terms is blaise_flow.py's (exact): ``abar = t^2 / (t^2 + (1 - t)^2)``,
``z_flow = sqrt(t^2 + (1 - t)^2) z_vp`` and ``eps = z_flow - t u``; conditions are the one-hot rows
and the null row is zeros, exactly the author's call.  ``decode`` is their ``vae.decode`` mapped from
[0, 1] to collapsecheck's [-1, 1] (``2 x - 1``).
"""
from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import torch
from torch import nn

from collapsecheck.load.custom import CustomModel

sys.path.insert(0, str(Path(__file__).resolve().parent))
from blaise_flow import FlowAsEps, checkout_in, ten_digit_classes  # noqa: E402  (same restatement, tested there)
from external_models import SOFIA_FLOW_KWARGS as DIFFUSION_KWARGS, SOFIA_VAE_KWARGS as VAE_KWARGS  # noqa: E402

LATENT_SHAPE = DIFFUSION_KWARGS["z_shape"]


def find_checkout(checkpoint: str) -> Path:
    here = Path(checkpoint).resolve().parent
    return checkout_in("SOFIA_REPO", [here / "sofia-checkout", here], "src/architectures.py",
                       "sofia-dominguezc/MNIST-diffusion")


def import_architectures(checkout: Path):
    """The author's ``architectures`` module (their ``src/`` is a flat folder of modules)."""
    sys.path.insert(0, str(checkout / "src"))
    try:
        return importlib.import_module("architectures")
    finally:
        sys.path.remove(str(checkout / "src"))


def load_models(checkpoint: str, vae_path: str | None = None) -> tuple[nn.Module, nn.Module]:
    """The author's flow network and VAE with their weights (``torch.load(weights_only=True)``), eval mode."""
    arch = import_architectures(find_checkout(checkpoint))
    vae_path = vae_path or os.environ.get("SOFIA_VAE") or str(Path(checkpoint).resolve().parent / "sofia-vae.pth")
    flow = arch.Diffusion(**DIFFUSION_KWARGS)
    flow.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True), strict=True)
    vae = arch.VarAutoEncoder(**VAE_KWARGS)
    vae.load_state_dict(torch.load(vae_path, map_location="cpu", weights_only=True), strict=True)
    return flow.eval(), vae.eval()


class AuthorsCall(nn.Module):
    """``flow(z, t, y)`` with t shaped (B, 1), as FlowAsEps passes it (the author views t as (-1, 1))."""

    def __init__(self, flow: nn.Module):
        super().__init__()
        self.flow = flow

    def forward(self, z: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.flow(z, t, cond.to(z.dtype))


class Decode(nn.Module):
    """The author's ``vae.decode`` (pixels in [0, 1]) mapped to [-1, 1]."""

    def __init__(self, vae: nn.Module):
        super().__init__()
        self.vae = vae

    @torch.no_grad()
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return 2.0 * self.vae.decode(z.to(torch.float32)) - 1.0


def build(checkpoint: str) -> CustomModel:
    flow, vae = load_models(checkpoint)
    return ten_digit_classes(FlowAsEps(AuthorsCall(flow)).eval(), LATENT_SHAPE, "epsilon", decode=Decode(vae).eval())
