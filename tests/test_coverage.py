"""The null branch's class coverage (collapsecheck.measure.coverage): closed forms for the entropy, the
assignment by lowest error, and exact Gaussian classes whose null is learned (the mixture) or not (a mean it
never saw)."""
import math

import pytest
import torch

from collapsecheck.measure import coverage as cov

from helpers_analytic import gaussian_setup


@pytest.mark.parametrize("counts, expected", [
    ([24, 24, 24, 24], 1.0),
    ([96, 0, 0, 0], 0.0),
    ([48, 48, 0, 0], 0.5),  # log 2 / log 4
    ([10, 30, 60], -(0.1 * math.log(0.1) + 0.3 * math.log(0.3) + 0.6 * math.log(0.6)) / math.log(3)),
])
def test_the_normalized_entropy_has_its_closed_form(counts, expected):
    assert float(cov.normalized_entropy(torch.tensor(counts))) == pytest.approx(expected, abs=1e-12)


def test_each_sample_goes_to_its_lowest_error_condition_and_the_interval_brackets_the_entropy():
    errors = torch.ones(40, 4, dtype=torch.float64)
    own = torch.tensor([0] * 20 + [1] * 10 + [2] * 10)  # nothing to condition 3
    errors[torch.arange(40), own] = 0.5
    c = cov.coverage_of(errors)
    assert c.entropy == pytest.approx(float(cov.normalized_entropy(torch.tensor([20, 10, 10, 0]))), abs=1e-12)
    assert c.largest_share == 0.5 and c.samples == 40 and c.conditions == 4
    assert 0.0 <= c.low < c.entropy < c.high <= 1.0
    one = cov.coverage_of(torch.ones(40, 4, dtype=torch.float64) - torch.nn.functional.one_hot(
        torch.full((40,), 2), 4))  # every sample to condition 2
    assert (one.entropy, one.low, one.high, one.largest_share) == (0.0, 0.0, 0.0, 1.0)


def test_coverage_is_measured_only_with_enough_samples_per_condition():
    assert not cov.measurable(1) and cov.measurable(2) and cov.measurable(24) and not cov.measurable(25)
    assert cov.coverage_nfe(25, 25) == 0
    assert cov.coverage_nfe(4, 25) == cov.COVERAGE_SEEDS * (25 + 4 * cov.COVERAGE_LEVELS)


def _coverage(null: str, batch: int = 64, seeds: int = 48):
    denoiser, schedule, conds = gaussian_setup(0.05, classes=4, null=null)
    return cov.null_coverage(denoiser, schedule, conds, 0, 25, batch, seeds=seeds)


def test_a_learned_null_covers_the_classes_and_an_untrained_one_does_not():
    """The exact mixture null draws each class with probability 1/4: 48 samples spread over all four. A null
    that is a mean the model never saw draws one image near it, which the classifier puts in one class."""
    learned, untrained = _coverage("mixture"), _coverage("arbitrary")
    assert learned.entropy > 0.9 and learned.largest_share < 0.45
    assert untrained.largest_share == 1.0 and untrained.entropy == 0.0
    assert learned.nfe == untrained.nfe == cov.coverage_nfe(4, 25, 48)


def test_coverage_does_not_depend_on_the_batch_size():
    assert _coverage("mixture", batch=5) == _coverage("mixture", batch=64)


def test_the_progress_bar_counts_every_network_evaluation():
    denoiser, schedule, conds = gaussian_setup(0.05, classes=4)
    seen = []
    c = cov.null_coverage(denoiser, schedule, conds, 0, 10, 32, advance=seen.append, seeds=16)
    assert sum(seen) == c.nfe == cov.coverage_nfe(4, 10, 16)




def test_the_coverage_interval_holds_its_estimate_even_where_resampling_biases_the_entropy_low():
    # 96 samples spread exactly evenly over 12 conditions: entropy 1, and every resample is less even
    errors = torch.ones(96, 12)
    errors[torch.arange(96), torch.arange(96) % 12] = 0.0
    c = cov.coverage_of(errors)
    assert c.entropy == pytest.approx(1.0) and c.low < 1.0
    assert c.low <= c.entropy <= c.high
