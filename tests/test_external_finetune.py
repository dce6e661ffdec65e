"""The external check's fine-tunes (examples/external/finetune_external.py): the authors' flow-matching loss, the
series saved along one run, and the authors' checkpoint format read back without unpickling code."""
from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

EXTERNAL = Path(__file__).resolve().parent.parent / "examples" / "external"
sys.path.insert(0, str(EXTERNAL))

import finetune_external as fe  # noqa: E402


class TinyField(nn.Module):
    """v(x, t, labels): a 1x1 convolution plus a per-label bias, the authors' call signature."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1)
        self.label = nn.Embedding(10, 1)

    def forward(self, x, t, labels=None):
        out = self.conv(x) * t.view(-1, 1, 1, 1)
        return out if labels is None else out + self.label(labels).view(-1, 1, 1, 1)


def test_flow_loss_is_the_authors_interpolant_and_target():
    x0 = torch.rand(4, 1, 5, 5) * 2 - 1
    zero = lambda x, t, labels: torch.zeros_like(x)  # noqa: E731
    got = fe.flow_loss(zero, x0, torch.arange(4), torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    torch.rand(4, 1, generator=g)  # t, drawn first
    eps = torch.randn(x0.shape, generator=g)
    assert torch.allclose(got, ((x0 - eps) ** 2).mean())

    seen = {}

    def field(x, t, labels):  # x_t = t x0 + (1 - t) eps, t in [0, 1)
        seen["x"], seen["t"] = x, t
        return torch.zeros_like(x)

    fe.flow_loss(field, x0, torch.arange(4), torch.Generator().manual_seed(3))
    tb = seen["t"].view(-1, 1, 1, 1)
    assert torch.allclose(seen["x"], tb * x0 + (1 - tb) * eps) and bool(((seen["t"] >= 0) & (seen["t"] < 1)).all())


def test_one_run_stops_at_each_step_count_and_lowers_the_loss_on_its_images():
    torch.manual_seed(0)
    net = TinyField()
    images, labels = torch.rand(10, 1, 4, 4) * 2 - 1, torch.arange(10)

    def held_loss():  # the same t and eps draws before and after
        with torch.no_grad():
            return float(fe.flow_loss(net, images.repeat(20, 1, 1, 1), labels.repeat(20), torch.Generator().manual_seed(9)))

    before, seen = held_loss(), {}
    fe.finetune(net, images, labels, {n: (lambda m, losses, n=n: seen.setdefault(n, list(losses))) for n in (3, 300)},
                seed=0)
    assert sorted(seen) == [3, 300] and len(seen[3]) == 3 and len(seen[300]) == 300
    assert seen[300][:3] == seen[3]  # the same run, saved along the way
    assert held_loss() < 0.9 * before


def test_saved_fine_tune_is_the_authors_format_and_loads_weights_only(tmp_path):
    net = TinyField()
    target = tmp_path / "ft.pth"
    fe.save(net, target)
    state = torch.load(target, map_location="cpu", weights_only=True)
    assert set(state) == {f"vector_field.{k}" for k in net.state_dict()}
    again = TinyField()
    again.load_state_dict({k.removeprefix("vector_field."): v for k, v in state.items()})
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), net.state_dict().values()))
    assert not target.with_suffix(".part").exists()
