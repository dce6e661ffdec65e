"""The null branch's class coverage: how evenly its own w = 0 samples spread over the conditions, as the model's
implicit classifier (:mod:`collapsecheck.measure.implicit`) reads them.

A learned null draws the marginal: its samples fall to every condition about as often as the data does. A null
that was never trained can still draw varied, data-like samples that the null ratio and the null spread read as
learned, while they come from a few conditions only (docs/calibration.md, round 27). So:

* ``COVERAGE_SEEDS`` w = 0 trajectories of their own (seeds ``seed .. seed + COVERAGE_SEEDS - 1``, the null alone,
  one network evaluation per seed and step; at least ``FULL_STEPS`` steps in both modes, so that fast and full
  mode read the same samples);
* each sample noised at the classifier's ``COVERAGE_LEVELS`` noise levels (one seeded noise per level, shared by
  every candidate: a paired comparison) and assigned to the condition whose mean denoising error is lowest;
* the **coverage entropy**: the normalized entropy of those assignments, ``-sum p log p / log C`` in [0, 1] (1: every
  condition equally often; 0: every sample to one condition), with a seeded bootstrap's 95% interval over the
  samples, and the largest share.

Cost: ``COVERAGE_SEEDS x steps`` evaluations for the samples and ``COVERAGE_SEEDS x C x COVERAGE_LEVELS`` for the
classifier. Measured only with ``2 <= C <= COVERAGE_SEEDS / SAMPLES_PER_CONDITION`` conditions: with fewer samples
per condition the plug-in entropy says more about the sample size than about the null.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Optional

import torch

from ..model.schedule import Schedule
from ..sample.grid import probe_null_branch
from .implicit import _chunk_errors, noise_levels

COVERAGE_SEEDS = 96
COVERAGE_LEVELS = 4
#: the fewest samples per condition the entropy is measured with (96 seeds: up to 24 conditions)
SAMPLES_PER_CONDITION = 4
BOOTSTRAP = 1000
BOOTSTRAP_SEED = 4321
#: the noises of the classifier's levels come from this seed (one generator, one draw per level)
NOISE_SEED = 0


@dataclass(frozen=True)
class NullCoverage:
    """The coverage entropy of the null's w = 0 samples, its 95% bootstrap interval, the largest share of the
    samples one condition took, and how many samples over how many conditions."""

    entropy: float
    low: float
    high: float
    largest_share: float
    samples: int
    conditions: int
    nfe: int = 0


def measurable(conditions: int, seeds: int = COVERAGE_SEEDS) -> bool:
    """Are there enough samples per condition (and at least two conditions) for the entropy to mean anything?"""
    return 2 <= conditions <= seeds // SAMPLES_PER_CONDITION


def applies(distilled: bool, control: bool, embedded: bool = False) -> bool:
    """Is the null's coverage a question about this model? Not for a guidance-distilled model (no null branch), a
    ControlNet (its null is the base model, trained on its own) or guidance embedded as a network input."""
    return not (distilled or control or embedded)


def coverage_seeds(first: int, count: int = COVERAGE_SEEDS) -> list[int]:
    return list(range(first, first + count))


def coverage_nfe(conditions: int, steps: int, seeds: int = COVERAGE_SEEDS) -> int:
    """The network evaluations :func:`null_coverage` makes (none when it is not measurable)."""
    return seeds * (steps + conditions * COVERAGE_LEVELS) if measurable(conditions, seeds) else 0


def null_coverage(denoiser, schedule: Schedule, conds, first_seed: int, steps: int, batch_size: int,
                  advance=None, seeds: int = COVERAGE_SEEDS) -> Optional[NullCoverage]:
    """Draw the null's own w = 0 samples and measure their coverage; None when not :func:`measurable`."""
    if not measurable(len(conds), seeds):
        return None
    per_step = None if advance is None else (lambda k: advance(k * seeds))  # the bar counts network evaluations
    drawn = probe_null_branch(denoiser, schedule, conds, coverage_seeds(first_seed, seeds), steps, [], batch_size,
                              per_step, run_to_end=True)
    errors = assignment_errors(denoiser, schedule, conds.values, drawn.final, batch_size, advance)
    return dataclasses.replace(coverage_of(errors), nfe=coverage_nfe(len(conds), steps, seeds))


def assignment_errors(denoiser, schedule: Schedule, values: torch.Tensor, x: torch.Tensor, batch_size: int,
                      advance=None) -> torch.Tensor:
    """(N, C) float64: each sample's mean denoising error under each condition of ``values``, over the
    classifier's noise levels (one seeded noise per level, the same for every condition)."""
    n, count = x.shape[0], values.shape[0]
    sample, cond = torch.meshgrid(torch.arange(n), torch.arange(count), indexing="ij")
    zeros = torch.zeros_like(sample)
    jobs = torch.stack([zeros, zeros, sample, cond], -1).reshape(-1, 4)
    table = values.to(denoiser.device)
    errors = torch.zeros(jobs.shape[0], dtype=torch.float64)
    generator = torch.Generator().manual_seed(NOISE_SEED)
    levels = noise_levels(schedule, COVERAGE_LEVELS)
    with torch.inference_mode():
        for t in levels:
            noise = torch.randn(tuple(x.shape), generator=generator)
            for start in range(0, jobs.shape[0], batch_size):
                part = jobs[start:start + batch_size]
                errors[start:start + batch_size] += _chunk_errors(denoiser, schedule, x[None, None], noise[None],
                                                                  table, part, t)
                if advance is not None:
                    advance(int(part.shape[0]))
    return (errors / len(levels)).view(n, count)


def normalized_entropy(counts: torch.Tensor) -> torch.Tensor:
    """``-sum p log p / log C`` of the last dimension's counts (C conditions), in [0, 1]."""
    p = counts.double() / counts.double().sum(-1, keepdim=True)
    terms = torch.where(p > 0, p * p.clamp_min(1e-300).log(), torch.zeros_like(p))
    return (-terms.sum(-1) / math.log(counts.shape[-1])).clamp(0.0, 1.0)


def coverage_of(errors: torch.Tensor) -> NullCoverage:
    """The coverage of samples whose (N, C) errors are ``errors``: each assigned to its lowest-error condition
    (a tie goes to the first)."""
    n, count = errors.shape
    assigned = errors.argmin(1)
    counts = torch.bincount(assigned, minlength=count)
    g = torch.Generator().manual_seed(BOOTSTRAP_SEED)
    picks = assigned[torch.randint(0, n, (BOOTSTRAP, n), generator=g)]
    boot = normalized_entropy(torch.nn.functional.one_hot(picks, count).sum(1))
    low, high = torch.quantile(boot, torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
    entropy = float(normalized_entropy(counts))
    # a resample repeats some samples and drops others, which lowers a plug-in entropy: near even coverage the
    # percentile interval can fall below the estimate, so it is widened to hold it
    return NullCoverage(entropy, min(low, entropy), max(high, entropy), float(counts.max()) / n, n, count)

