"""``--model`` entry point for the class-conditional flow-matching models of Blaise143/stochastic-interpolant-diffusion.

    collapsecheck scan CHECKPOINT.pth --model examples/external/blaise_flow.py:build

The repository's own code is not copied here: ``build`` imports its ``models/unet.py`` from a checkout
named by the environment variable ``BLAISE_REPO`` (default: the checkpoint's folder, its ``checkout/``
subfolder (where external_models.prepare puts it), then its parent).
See examples/external/README.md for how to fetch the repository and extract its checkpoints.

What the authors trained (their ``models/flow.py``, ``sampling/ode_solver.py``, ``data/transforms.py``):

* a UNet ``vector_field(x, t, labels)`` predicting the velocity ``u = x0 - eps`` of the linear
  interpolant ``x_t = t * x0 + (1 - t) * eps``, t in [0, 1] (t = 0 noise, t = 1 data), on EMNIST
  digits normalised to [-1, 1] (rotated and flipped upright), 28 x 28, one channel;
* class labels 0..9 through ``nn.Embedding(10, 100)`` added to the time embedding; ``labels=None``
  adds nothing, and that is the unconditional branch their guidance uses:
  ``(1 - w) * v(x, t) + w * v(x, t, labels)`` (the same w as collapsecheck's: w = 1 is the
  conditional model, w = 0 the null branch);
* their sampler: Euler on the ODE from t = 0 to 1 (500 steps by default).

collapsecheck runs variance-preserving (VP) samplers on integer timesteps, so this wrapper states the
same model in VP terms, exactly: with ``c(t) = sqrt(t^2 + (1 - t)^2)``, the flow's ``x_t`` is
``c(t) * x_vp`` where ``x_vp = sqrt(abar) x0 + sqrt(1 - abar) eps`` and ``abar = t^2 / c(t)^2``; and
``eps = x_t - t * u``.  Timestep k in [0, T) is flow time ``t_k = 1 - (k + 1) / (T + 1)`` (k = 0 is
almost data, k = T - 1 almost pure noise: abar = 1e-6).

Conditions are one-hot rows; the null row is all zeros.  ``one_hot @ embedding.weight`` is the
authors' ``embedding(label)`` for a one-hot row and exactly zero for the null row, which is what
``labels=None`` adds (nothing), so the conditional and null halves run in one batch as collapsecheck
asks.  The authors' ``sample`` clamps the result to [0, 1] for display although the data are in
[-1, 1]; collapsecheck clips to the data range [-1, 1] (no decode needed).
"""
from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import torch
from torch import nn

from collapsecheck.load.custom import CustomModel

NUM_CLASSES = 10
SAMPLE_SHAPE = (1, 28, 28)
NUM_TIMESTEPS = 1000
UNET_KWARGS = dict(in_channels=1, out_channels=1, channels_list=[32, 64, 128], embedding_dim=100)


def flow_times(num_timesteps: int = NUM_TIMESTEPS) -> torch.Tensor:
    """Flow time t_k of each integer timestep k (float64, decreasing from ~1 to ~0)."""
    k = torch.arange(num_timesteps, dtype=torch.float64)
    return 1.0 - (k + 1.0) / (num_timesteps + 1.0)


def vp_alphas_cumprod(num_timesteps: int = NUM_TIMESTEPS) -> torch.Tensor:
    """abar_k = t^2 / (t^2 + (1 - t)^2): the VP signal fraction of the linear interpolant at t_k."""
    t = flow_times(num_timesteps)
    return t**2 / (t**2 + (1.0 - t) ** 2)


def checkout_in(env_var: str, candidates: list, marker: str, repo: str) -> Path:
    """The first of ``$env_var`` (when set) and ``candidates`` holding ``marker``: an author's checkout."""
    env = os.environ.get(env_var)
    candidates = ([Path(env)] if env else []) + list(candidates)
    for c in candidates:
        if (c / marker).is_file():
            return c
    raise FileNotFoundError(f"no {repo} checkout ({marker}) in {', '.join(str(c) for c in candidates)}; "
                            f"set {env_var}")


def find_checkout(checkpoint: str) -> Path:
    here = Path(checkpoint).resolve().parent
    return checkout_in("BLAISE_REPO", [here, here / "checkout", here.parent], "models/unet.py",
                       "Blaise143/stochastic-interpolant-diffusion")


def import_unet_class(checkout: Path):
    """The authors' Unet class, imported from their checkout (their package is called ``models``)."""
    sys.path.insert(0, str(checkout))
    try:
        return importlib.import_module("models.unet").Unet
    finally:
        sys.path.remove(str(checkout))


class OneHotEmbedding(nn.Module):
    """Stands in for the authors' ``nn.Embedding`` with one-hot (or zero) rows: ``rows @ weight``."""

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.weight = nn.Parameter(weight.detach().clone(), requires_grad=False)

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        return rows.to(self.weight.dtype) @ self.weight


class FlowAsEps(nn.Module):
    """The authors' velocity network as a VP eps-prediction network on integer timesteps."""

    def __init__(self, unet: nn.Module, num_timesteps: int = NUM_TIMESTEPS):
        super().__init__()
        self.unet = unet
        self.register_buffer("t_of_k", flow_times(num_timesteps).float())

    def forward(self, x_vp: torch.Tensor, k: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        t = self.t_of_k[k.long().to(self.t_of_k.device)].to(x_vp.dtype).view(-1, 1)
        t4 = t.view(-1, 1, 1, 1)
        x_flow = x_vp * torch.sqrt(t4**2 + (1 - t4) ** 2)
        u = self.unet(x_flow, t, cond)
        return x_flow - t4 * u


def load_unet(checkpoint: str) -> nn.Module:
    """The authors' UNet with the checkpoint's weights (``torch.load(weights_only=True)``), in eval mode."""
    unet = import_unet_class(find_checkout(checkpoint))(**UNET_KWARGS)
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    state = {k.removeprefix("vector_field."): v for k, v in state.items()}
    unet.load_state_dict(state, strict=True)
    unet.label_embedding = OneHotEmbedding(unet.label_embedding.embedding.weight)
    return unet.eval()


def ten_digit_classes(network: nn.Module, sample_shape, prediction_type: str, decode=None) -> CustomModel:
    """A class-conditional digit model for ``--model``: one-hot rows for the ten digits, the zero row as the null,
    the VP restatement's alpha-bars (:func:`vp_alphas_cumprod`)."""
    return CustomModel(network=network, sample_shape=sample_shape, conditions=torch.eye(NUM_CLASSES),
                       null=torch.zeros(NUM_CLASSES), alphas_cumprod=vp_alphas_cumprod(),
                       prediction_type=prediction_type, labels=[f"digit {i}" for i in range(NUM_CLASSES)],
                       decode=decode)


def build(checkpoint: str) -> CustomModel:
    return ten_digit_classes(FlowAsEps(load_unet(checkpoint)).eval(), SAMPLE_SHAPE, "epsilon")
