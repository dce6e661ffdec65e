"""A tiny working example of ``--model file.py:function``: scan your own architecture.

    python examples/custom_model.py tiny.safetensors          # write seeded weights (a stand-in for yours)
    collapsecheck scan tiny.safetensors --model examples/custom_model.py:build --seeds 8

``build(checkpoint)`` receives the CHECKPOINT argument and returns a ``CustomModel``: the network
``(x_t, t, cond) -> eps``, its noise schedule, and the conditions to scan with their null.
"""
import sys

import torch
from torch import nn

from collapsecheck.load.custom import CustomModel

NUM_CLASSES = 4
CHANNELS, SIZE = 1, 8


class TinyEpsNet(nn.Module):
    """x_t and a time embedding and a condition vector in, eps out: a toy class-conditional denoiser."""

    def __init__(self, cond_dim: int = NUM_CLASSES, width: int = 16):
        super().__init__()
        self.time = nn.Linear(1, width)
        self.cond = nn.Linear(cond_dim, width)
        self.inp = nn.Conv2d(CHANNELS, width, 3, padding=1)
        self.out = nn.Conv2d(width, CHANNELS, 3, padding=1)

    def forward(self, x, t, cond):
        h = self.inp(x)
        emb = self.time(t.float().view(-1, 1) / 1000.0) + self.cond(cond)
        return self.out(torch.nn.functional.silu(h + emb[:, :, None, None]))


def build(checkpoint: str) -> CustomModel:
    net = TinyEpsNet()
    if checkpoint.endswith(".safetensors"):
        from safetensors.torch import load_file

        net.load_state_dict(load_file(checkpoint), strict=True)
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    return CustomModel(
        network=net.eval(),
        sample_shape=(CHANNELS, SIZE, SIZE),
        conditions=torch.eye(NUM_CLASSES),        # one-hot classes, one row per condition
        null=torch.zeros(NUM_CLASSES),            # the "no class" input used with condition dropout
        alphas_cumprod=torch.cumprod(1 - betas, 0),
        prediction_type="epsilon",
        labels=[f"class {i}" for i in range(NUM_CLASSES)],
    )


if __name__ == "__main__":
    from safetensors.torch import save_file

    torch.manual_seed(0)
    save_file(TinyEpsNet().state_dict(), sys.argv[1])
    print(f"wrote {sys.argv[1]}")
