"""examples/external/blaise_flow.py restates a flow-matching velocity model in VP/eps terms: check it exactly.

The authors' network is not needed: for data that is one point x0, the exact velocity of the linear
interpolant x_t = t x0 + (1 - t) eps is u(x_t, t) = (x0 - x_t) / (1 - t), so the restated network must
return the very eps that made its VP input.  The null row must add nothing to the time embedding (what
the authors' labels=None does) and a one-hot row exactly the authors' embedding row.
"""
import importlib.util
from pathlib import Path

import torch

WRAPPER = Path(__file__).resolve().parent.parent / "examples" / "external" / "blaise_flow.py"


def _module(name):
    """An examples/external module, imported from its file under a test-only name."""
    path = WRAPPER.parent / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"{name}_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _wrapper():
    return _module("blaise_flow")


class PointMassVelocity(torch.nn.Module):
    """The exact velocity field of the linear interpolant towards a single data point."""

    def __init__(self, x0):
        super().__init__()
        self.register_buffer("x0", x0)

    def forward(self, x, t, labels=None):
        return (self.x0 - x) / (1 - t.view(-1, 1, 1, 1))


def test_flow_times_and_alphas_cover_data_to_noise():
    bf = _wrapper()
    t, abar = bf.flow_times(), bf.vp_alphas_cumprod()
    assert t.shape == abar.shape == (bf.NUM_TIMESTEPS,)
    assert bool((t[1:] < t[:-1]).all()) and bool((abar[1:] < abar[:-1]).all())
    assert 0.998 < float(t[0]) < 1 and 0 < float(t[-1]) < 0.002
    assert float(abar[0]) > 0.999999 and float(abar[-1]) < 1e-5


def test_restated_network_returns_the_noise_of_a_point_mass():
    bf = _wrapper()
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(1, 1, 28, 28, generator=g, dtype=torch.float64) * 2 - 1
    net = bf.FlowAsEps(PointMassVelocity(x0)).double()
    k = torch.tensor([0, 10, 500, 998, 999])
    eps = torch.randn(len(k), 1, 28, 28, generator=g, dtype=torch.float64)
    abar = bf.vp_alphas_cumprod()[k].view(-1, 1, 1, 1)
    x_vp = abar.sqrt() * x0 + (1 - abar).sqrt() * eps
    net.t_of_k = bf.flow_times().double()
    out = net(x_vp, k, torch.zeros(len(k), 10, dtype=torch.float64))
    torch.testing.assert_close(out, eps, rtol=0, atol=1e-9)


def test_one_hot_rows_are_the_embedding_rows_and_the_null_row_adds_nothing():
    bf = _wrapper()
    weight = torch.randn(10, 100, generator=torch.Generator().manual_seed(1))
    emb = bf.OneHotEmbedding(weight)
    labels = torch.tensor([3, 0, 9])
    torch.testing.assert_close(emb(torch.eye(10)[labels]), torch.nn.functional.embedding(labels, weight))
    assert torch.equal(emb(torch.zeros(2, 10)), torch.zeros(2, 100))


class PointMassSample(torch.nn.Module):
    """The exact clean-image prediction towards one data point, taking integer labels (-1 = null)."""

    def __init__(self, x1):
        super().__init__()
        self.register_buffer("x1", x1)
        self.seen = None

    def forward(self, x, t, y):
        self.seen = y
        return self.x1.expand_as(x)


def test_sofia_pixel_rows_become_labels_and_sample_prediction_is_exact():
    sp = _module("sofia_pixel")
    rows = torch.cat([torch.eye(10)[[3, 7]], torch.zeros(1, 10)])
    assert sp.rows_to_labels(rows).tolist() == [3, 7, -1]
    x1 = torch.rand(1, 1, 28, 28)
    net = sp.SampleAsVP(PointMassSample(x1))
    k = torch.tensor([0, 500, 999])
    out = net(torch.randn(3, 1, 28, 28), k, rows)
    assert net.vit.seen.tolist() == [3, 7, -1]
    assert torch.equal(out, x1.expand(3, 1, 28, 28))
    assert torch.equal(sp.ToSymmetric()(torch.tensor([0.0, 0.5, 1.0])), torch.tensor([-1.0, 0.0, 1.0]))


def test_sofia_latent_passes_the_rows_as_the_author_calls_it():
    sl = _module("sofia_latent")
    z_data = torch.randn(1, 1, 6, 6, dtype=torch.float64)
    seen = {}

    def velocity(z, t, y):
        seen["y"] = y
        return (z_data - z) / (1 - t.view(-1, 1, 1, 1))

    class Net(torch.nn.Module):
        forward = staticmethod(velocity)

    net = sl.FlowAsEps(sl.AuthorsCall(Net())).double()
    net.t_of_k = _wrapper().flow_times()  # float64 times, so the restatement is checked to 1e-9
    k = torch.tensor([0, 300, 999])
    abar = _wrapper().vp_alphas_cumprod()[k].view(-1, 1, 1, 1)
    eps = torch.randn(3, 1, 6, 6, dtype=torch.float64)
    x_vp = abar.sqrt() * z_data + (1 - abar).sqrt() * eps
    rows = torch.cat([torch.eye(10)[:2], torch.zeros(1, 10)]).double()
    assert torch.allclose(net(x_vp, k, rows), eps, atol=1e-9)
    assert torch.equal(seen["y"], rows)
