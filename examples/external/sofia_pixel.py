"""``--model`` entry point for the pixel-space class-conditional ViT flow of sofia-dominguezc/MNIST-diffusion.

    collapsecheck scan DiffusionViT.pth --model examples/external/sofia_pixel.py:build

``parameters/MNIST/DiffusionViT.pth`` at commit 88bc058 (2026-01-04, HEAD when checked): a 209 K-parameter
vision transformer (7 x 7 patches, 4 layers, width 64) on MNIST pixels in [0, 1] (``ToTensor``, no
normalisation), 28 x 28.  The author's code (``diffusion/architecture.py``, ``diffusion/loss.py``,
``diffusion/generate.py`` at that commit) is imported from a checkout named by ``$SOFIA_HEAD_REPO``
(default: ``sofia-head/`` beside the checkpoint, where external_models.prepare_sofia puts it):

* the network predicts the clean image ``x1`` from ``x_t = t x1 + (1 - t) x0`` (x0 ~ N(0, I), t = 0
  noise, t = 1 data); their sampler turns it into the velocity ``(x1_pred - x_t) / (1 - t)``;
* the label is an integer; ``-1`` selects a LEARNED null embedding (row 10 of ``y_encoder``), and the
  trainer replaces the label by -1 with probability 0.1 (condition dropout);
* their guidance: ``w * v(x, t, y) + (1 - w) * v(x, t, -1)``, collapsecheck's w, but applied only for
  t in (0.3, 0.7) by default (``--cfg-start/--cfg-end``); default w = 2, ODE (no added noise), 50 steps.

In VP terms: ``x_t = c(t) x_vp`` with ``c(t) = sqrt(t^2 + (1 - t)^2)`` and ``abar = t^2 / c(t)^2``
(blaise_flow.py), and the network's ``x1`` prediction is the VP clean-sample prediction
(``prediction_type="sample"``).  Conditions are one-hot rows and the null row is zeros; the wrapper
turns a one-hot row into its class index and the zero row into the author's -1.  ``decode`` maps their
[0, 1] pixels to collapsecheck's [-1, 1] (``2 x - 1``); there is no latent.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch
from torch import nn

from collapsecheck.load.custom import CustomModel

sys.path.insert(0, str(Path(__file__).resolve().parent))
from blaise_flow import checkout_in, flow_times, ten_digit_classes  # noqa: E402
from external_models import SOFIA_VIT_KWARGS as VIT_KWARGS  # noqa: E402  (parameters/MNIST/DiffusionViT.pickle)

SAMPLE_SHAPE = (1, 28, 28)


def find_checkout(checkpoint: str) -> Path:
    here = Path(checkpoint).resolve().parent
    return checkout_in("SOFIA_HEAD_REPO", [here / "sofia-head", here], "diffusion/architecture.py",
                       "sofia-dominguezc/MNIST-diffusion")


def load_vit(checkpoint: str) -> nn.Module:
    """The author's DiffusionViT (their file, loaded by path) with ``torch.load(weights_only=True)``, eval mode."""
    path = find_checkout(checkpoint) / "diffusion" / "architecture.py"
    spec = importlib.util.spec_from_file_location("sofia_head_architecture", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    vit = module.DiffusionViT(**VIT_KWARGS)
    vit.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True), strict=True)
    return vit.eval()


def rows_to_labels(rows: torch.Tensor) -> torch.Tensor:
    """One-hot row -> its class index; the all-zero row -> -1 (the author's null label)."""
    return torch.where(rows.abs().sum(dim=1) > 0, rows.argmax(dim=1), torch.full_like(rows[:, 0], -1).long())


class SampleAsVP(nn.Module):
    """The author's x1-predicting network on VP inputs and integer timesteps (prediction_type="sample")."""

    def __init__(self, vit: nn.Module, num_timesteps: int = 1000):
        super().__init__()
        self.vit = vit
        self.register_buffer("t_of_k", flow_times(num_timesteps).float())

    def forward(self, x_vp: torch.Tensor, k: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        t = self.t_of_k[k.long().to(self.t_of_k.device)].to(x_vp.dtype).view(-1, 1, 1, 1)
        x_flow = x_vp * torch.sqrt(t**2 + (1 - t) ** 2)
        return self.vit(x_flow, t, rows_to_labels(cond))


class ToSymmetric(nn.Module):
    """[0, 1] pixels -> [-1, 1]."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2.0 * x - 1.0


def build(checkpoint: str) -> CustomModel:
    return ten_digit_classes(SampleAsVP(load_vit(checkpoint)).eval(), SAMPLE_SHAPE, "sample", decode=ToSymmetric())
