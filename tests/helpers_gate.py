"""``--model helpers_gate:FUNCTION`` entry points with known verdicts, and a switch that makes them fail.

The networks are the exact Gaussian denoisers of :mod:`helpers_analytic` behind the custom-model protocol
(one-hot condition rows; the all-zero null row is the null class), so their verdicts are known:

* :func:`healthy_unsteerable`: diverse classes (healthy) whose null branch was never learned, so guidance
  cannot steer (not_steerable, null branch not_learned);
* :func:`collapsed`: a deterministic decoder (collapsed), which makes a scan run its recovery probes;
* :func:`decode_raises`: the healthy model with a latent decoder that raises;
* :func:`decode_out_of_memory`: the healthy model with a latent decoder that runs out of memory.

``FAULT["exc"]``: while set, every forward raises it (tests set it from inside one stage of a scan).
"""
from __future__ import annotations

import torch

from collapsecheck.load.custom import CustomModel
from collapsecheck.model.schedule import schedule_from_config
from helpers_analytic import SCHEDULER, GaussianClasses

CLASSES, SIZE = 4, 8
#: the exception every forward raises while set (None: the network works)
FAULT = {"exc": None}


class OneHotGaussian(torch.nn.Module):
    """``network(x_t, t, cond)`` over :class:`GaussianClasses`: a one-hot row is its class, the zero row the null."""

    def __init__(self, sigma: float, null: str):
        super().__init__()
        schedule = schedule_from_config(SCHEDULER)
        g = torch.Generator().manual_seed(0)
        means = torch.rand(CLASSES, 1, SIZE, SIZE, generator=g) * 1.2 - 0.6
        self.inner = GaussianClasses(means, sigma, schedule.alphas_cumprod, null=null)

    def forward(self, x, t, cond):
        if FAULT["exc"] is not None:
            raise FAULT["exc"]
        labels = torch.where(cond.abs().sum(-1) > 0.5, cond.argmax(-1), torch.full_like(cond[:, 0], CLASSES).long())
        return self.inner(x, t, labels).sample


def _model(sigma: float, null: str, decode=None) -> CustomModel:
    return CustomModel(
        network=OneHotGaussian(sigma, null).eval(),
        sample_shape=(1, SIZE, SIZE),
        conditions=torch.eye(CLASSES),
        null=torch.zeros(CLASSES),
        scheduler_config=dict(SCHEDULER),
        labels=[f"class {i}" for i in range(CLASSES)],
        decode=decode,
    )


def healthy_unsteerable(checkpoint: str) -> CustomModel:
    return _model(0.4, "arbitrary")


def collapsed(checkpoint: str) -> CustomModel:
    return _model(0.005, "mixture")


def _broken_decoder(samples: torch.Tensor) -> torch.Tensor:
    raise KeyError("decoder.up_blocks.0.resnets.0.conv1.weight")


def decode_raises(checkpoint: str) -> CustomModel:
    return _model(0.4, "arbitrary", decode=_broken_decoder)


def _exhausted_decoder(samples: torch.Tensor) -> torch.Tensor:
    raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 GiB")


def decode_out_of_memory(checkpoint: str) -> CustomModel:
    return _model(0.4, "arbitrary", decode=_exhausted_decoder)
