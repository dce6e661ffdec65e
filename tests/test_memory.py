"""Bounded memory: the built-in adherence in chunks (same numbers as the (V, C, S, C, D) formula), default
class subsets for large label sets."""
from __future__ import annotations

import pytest
import torch

from collapsecheck.measure import adherence as A


def _direct_adherence(samples: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """The formula centroid_adherence had before chunking: a (V, C, S, C, D) difference tensor."""
    V, C, S = samples.shape[:3]
    centroids = reference.reshape(C, S, -1).double().mean(1)
    flat = samples.reshape(V, C, S, -1).double()
    d2 = (flat.unsqueeze(-2) - centroids.view(1, 1, 1, C, -1)).pow(2).sum(-1)
    return (d2.argmin(-1) == torch.arange(C).view(1, C, 1)).double().mean(-1)


@pytest.mark.parametrize("shape", [(3, 4, 5, (3, 8, 8)), (2, 7, 3, (1, 5, 5)), (1, 3, 4, (2, 3, 3))])
@pytest.mark.parametrize("chunk", [1, 7, 2 ** 22])
def test_chunked_adherence_equals_the_direct_formula(monkeypatch, shape, chunk):
    V, C, S, dims = shape
    g = torch.Generator().manual_seed(V * 100 + C)
    ref = torch.randn((C, S) + dims, generator=g)
    # samples near their own centroid, some near another one, so that the scores are not all 0 or 1
    samples = ref.unsqueeze(0) + 3.0 * torch.randn((V, C, S) + dims, generator=g)
    monkeypatch.setattr(A, "ADHERENCE_CHUNK_ELEMENTS", chunk)
    got = A.centroid_adherence(samples, ref)
    assert torch.equal(got, _direct_adherence(samples, ref))
    assert 0.0 < float(got.mean()) < 1.0


def test_collapsed_identical_centroids_tie_to_the_first_like_the_direct_formula(monkeypatch):
    ref = torch.ones(3, 4, 1, 2, 2)  # every condition the same image: equal centroids
    samples = torch.ones(2, 3, 4, 1, 2, 2)
    monkeypatch.setattr(A, "ADHERENCE_CHUNK_ELEMENTS", 4)
    assert torch.equal(A.centroid_adherence(samples, ref), _direct_adherence(samples, ref))


def test_adherence_block_stays_within_the_chunk_budget(monkeypatch):
    """No block of the computation is larger than the budget, however many conditions: record the blocks."""
    seen = []
    real = A.nearest_centroid

    def spy(rows, centroids):
        seen.append(rows.shape[0] * rows.shape[1])
        return real(rows, centroids)

    monkeypatch.setattr(A, "nearest_centroid", spy)
    monkeypatch.setattr(A, "ADHERENCE_CHUNK_ELEMENTS", 4096)
    C, S, D = 64, 4, 16
    A.centroid_adherence(torch.randn(2, C, S, 1, 4, 4), torch.randn(C, S, 1, 4, 4))
    assert sum(seen) == 2 * C * S * D
    assert max(seen) * C <= 4096 or max(seen) == D  # rows x centroids x pixels within budget (or one row)


# ------------------------------------------------------------------------------------ devices


@pytest.mark.parametrize("name", ["cpu", "auto", "cuda", "cuda:0", "cuda:12", "mps"])
def test_device_names_parse(name):
    from collapsecheck import make_config

    assert make_config(checkpoint="x", device=name).device == name


@pytest.mark.parametrize("name", ["cuda:", "cuda:x", "gpu", "cuda1", "cuda:-1"])
def test_bad_device_names_are_usage_errors(name):
    from collapsecheck import make_config
    from collapsecheck.errors import UsageError

    with pytest.raises(UsageError, match="device"):
        make_config(checkpoint="x", device=name)


def _cli(*args, env_extra=None):
    import os
    import subprocess
    import sys

    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "collapsecheck", *args], capture_output=True, text=True, env=env,
                          timeout=300)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without CUDA")
@pytest.mark.parametrize("device, says", [("cuda:1", "no CUDA device"), ("cuda", "no CUDA device"),
                                          ("mps", "no MPS device")])
def test_a_missing_device_is_a_one_line_usage_error(device, says):
    proc = _cli("scan", "examples/digits-healthy", "--device", device, "--no-lpips")
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and says in lines[0] and f"--device {device}" in lines[0], proc.stderr


def test_cuda_index_beyond_the_devices_is_a_usage_error(monkeypatch):
    from collapsecheck.errors import UsageError
    from collapsecheck.run import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(UsageError, match=r"--device cuda:2: this machine has 2 CUDA devices \(cuda:0 to cuda:1\)"):
        resolve_device("cuda:2")
