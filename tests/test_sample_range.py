"""Samples that leave the data range [-1, 1] make the verdicts unreliable, and the result says so."""
import dataclasses
from types import SimpleNamespace

import pytest
import torch

from collapsecheck.config import make_config
from collapsecheck.load.conditions import ConditionSet
from collapsecheck.measure.datarange import range_numbers
from collapsecheck.measure.diversity import measure_grid
from collapsecheck.model.denoiser import Denoiser
from collapsecheck.model.schedule import schedule_from_config
from collapsecheck.run import sample_range
from collapsecheck.sample.grid import sample_grid
from collapsecheck.thresholds import Thresholds
from helpers_analytic import SCHEDULER


class BlowsUp(torch.nn.Module):
    """Predicts x0 = 6 x its class image, whatever x_t is (``sample`` prediction): far outside [-1, 1]."""

    def __init__(self, classes: int = 3):
        super().__init__()
        g = torch.Generator().manual_seed(1)
        self.register_buffer("images", 6 * (2 * torch.rand(classes + 1, 1, 8, 8, generator=g) - 1))
        self.anchor = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x, t, class_labels):
        return SimpleNamespace(sample=self.images[class_labels.long()] + 0.3 * x + 0 * self.anchor)


def _scan_range(clip: bool, sampler: str = "ddim"):
    schedule = schedule_from_config({**SCHEDULER, "prediction_type": "sample", "clip_sample": clip}, sampler=sampler)
    denoiser = Denoiser(model=BlowsUp(), kind="class", sample_shape=(1, 8, 8))
    conds = ConditionSet(kind="class", values=torch.arange(3), null=torch.tensor([3]), labels=("0", "1", "2"),
                         source="test", null_source="test")
    grid = sample_grid(denoiser, schedule, conds, [0, 1, 2, 3], [1.0], steps=5, batch_size=64)
    config = make_config(checkpoint="x", sampler=sampler, guidance=(1.0,))
    stats = measure_grid(grid.samples, grid.samples[0].clamp(-1, 1), config.thresholds, conds)
    return sample_range(config, stats, 0)


def test_a_model_that_blows_up_is_flagged_unreliable():
    r = _scan_range(clip=False)
    assert not r.reliable and r.outside_share > 0.5 and r.variance > 1.0 and r.max_abs > 3.0
    assert r.reason.startswith("UNRELIABLE") and "ddim" in r.reason and "clip_sample" in r.reason


def test_clip_sample_from_the_scheduler_config_is_honoured():
    """DDPM lands on the clipped x0 (alpha-bar 1 after the last step): in range exactly. DDIM clips x0 but keeps
    the unclipped eps (as diffusers' DDIMScheduler does), so an inconsistent model can stay out of range even
    with clip_sample; the check then says so, on less extreme samples than without clipping."""
    r = _scan_range(clip=True, sampler="ddpm")
    assert r.reliable and r.reason is None and r.max_abs <= 1.0 + 1e-6 and r.outside_share == 0.0
    clipped, raw = _scan_range(clip=True), _scan_range(clip=False)
    assert clipped.max_abs < raw.max_abs and clipped.variance < raw.variance


def test_range_numbers_closed_form():
    images = torch.tensor([[0.5, -1.2, 1.3, 2.0], [0.0, 0.0, 0.0, 0.0]]).view(2, 1, 1, 4)
    outside, variance, max_abs = range_numbers(images, 0.25)
    assert outside.tolist() == [0.5, 0.0]
    assert torch.allclose(variance, torch.tensor([images[0].var(unbiased=False).item(), 0.0], dtype=torch.float64))
    assert max_abs.tolist() == [2.0, 0.0]
    th = dataclasses.replace(Thresholds(), out_of_range_share=0.6)
    from collapsecheck.verdict.datarange import out_of_range_reason
    assert out_of_range_reason(0.5, 0.9, 2.0, "ddim", th) is None
    assert "out_of_range_variance" in out_of_range_reason(0.5, 1.5, 2.0, "ddpm", th)


def test_near_duplicate_stderr_is_the_jackknife_over_seeds():
    """Closed form against leaving each seed out by hand; 0 when every pair (or none) is a near duplicate."""
    from collapsecheck.measure.pixel import near_duplicate_fraction, near_duplicate_stderr

    g = torch.Generator().manual_seed(0)
    points = torch.randn(7, 2, generator=g)
    dist = torch.cdist(points, points)
    se = float(near_duplicate_stderr(dist, 1.0))
    S = 7
    theta = torch.stack([near_duplicate_fraction(dist[keep][:, keep], 1.0)
                         for keep in ([j for j in range(S) if j != i] for i in range(S))])
    expected = float(((S - 1) / S * (theta - theta.mean()).pow(2).sum()).sqrt())
    assert se == pytest.approx(expected, rel=1e-9) and se > 0
    assert float(near_duplicate_stderr(torch.zeros(5, 5), 0.1)) == 0.0
    assert torch.isnan(near_duplicate_stderr(torch.zeros(2, 2), 0.1))
