"""The denoiser over a user's own network (``--model module:function``, see :mod:`collapsecheck.load.custom`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from ..errors import LoadError
from .denoiser import Denoiser


@dataclass
class CustomDenoiser(Denoiser):
    """A :class:`Denoiser` over a user network: conditions go in as they are, CADS noise is added to them."""

    def _parameter(self) -> Optional[torch.Tensor]:
        if isinstance(self.model, torch.nn.Module):
            return next(iter(self.model.parameters()), None)
        return None

    @property
    def dtype(self) -> torch.dtype:
        p = self._parameter()
        return torch.float32 if p is None else p.dtype

    @property
    def device(self) -> torch.device:
        p = self._parameter()
        return torch.device("cpu") if p is None else p.device

    def condition_feature_shape(self, conds) -> tuple:
        return tuple(conds.values.shape[1:])

    def condition_spread(self, conds) -> float:
        return float(conds.values.float().std())

    def __call__(self, x, t, cond, perturb=None):
        if perturb is not None:
            gamma, noise = perturb
            g = gamma.view((-1,) + (1,) * (noise.dim() - 1))
            cond = g.sqrt() * cond.float() + (1 - g).sqrt() * noise
        x = x.to(self.dtype)
        out = self.model(x, t, cond.to(device=x.device, dtype=self.dtype))
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != tuple(x.shape):
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise LoadError(f"--model: network(x_t, t, cond) returned {got}; it must return a tensor shaped like x_t "
                            f"{tuple(x.shape)}")
        return out.float()

    def to(self, device, dtype) -> "CustomDenoiser":
        if isinstance(self.model, torch.nn.Module):
            self.model.to(device=device, dtype=dtype)
        if self.decoder is not None and hasattr(self.decoder, "to"):
            self.decoder.to(device)
        return self
