"""The model's implicit classifier (measure/implicit.py): closed forms for its errors, its adherence and the
null ratio, and the null-branch test on text embeddings (non-zero empty-prompt null) and concatenated hints
(null = zeros) whose null is known to be learned (the exact marginal) or not (an arbitrary condition)."""
from types import SimpleNamespace

import pytest
import torch

from collapsecheck.config import make_config
from collapsecheck.load.conditions import ConditionSet
from collapsecheck.measure.implicit import (
    ImplicitSettings, adherence, break_ratio, candidates, denoising_errors, noise_levels, null_ratio,
)
from collapsecheck.model.denoiser import Denoiser
from collapsecheck.model.schedule import schedule_from_config
from collapsecheck.run import evaluate
from helpers_analytic import SCHEDULER, GaussianClasses

INFO = {"source": "analytic", "model_class": "toy", "scheduler_source": "test"}


def test_candidates_are_own_first_then_the_next_ones_cyclically():
    assert candidates(4, 2).tolist() == [[0, 1, 2], [1, 2, 3], [2, 3, 0], [3, 0, 1]]
    assert candidates(2, 5).tolist() == [[0, 1], [1, 0]]  # capped at the other conditions


def test_adherence_shares_ties_so_a_model_that_ignores_its_condition_scores_chance():
    errors = torch.tensor([[1.0, 2, 3], [2, 1, 3], [1, 1, 1], [1, 1, 2]], dtype=torch.float64)
    share = adherence(errors)
    p = (1 + 0 + 1 / 3 + 1 / 2) / 4
    assert share.value == pytest.approx(p) and share.stderr == pytest.approx((p * (1 - p) / 4) ** 0.5)
    assert adherence(torch.ones(50, 4)).value == pytest.approx(0.25)


def test_null_ratio_closed_form_and_no_contrast():
    own, wrong, null = 1.0, 3.0, 1.5  # r = (1.5 - 1) / (3 - 1)
    errors = torch.tensor([own, wrong, wrong]).repeat(10, 1).view(2, 5, 3)
    r = null_ratio(errors, torch.full((2, 5), null))
    assert r.ratio == pytest.approx(0.25) and r.low == pytest.approx(0.25) and r.high == pytest.approx(0.25)
    assert r.samples == 10 and r.contrast == pytest.approx(2.0)
    assert null_ratio(torch.ones(2, 5, 3), torch.full((2, 5), 2.0)).ratio is None  # wrong = own: no contrast
    assert break_ratio(torch.full((3,), 4.0), torch.full((3,), 2.0)) == pytest.approx(2.0)



def test_an_interval_with_resamples_without_contrast_is_written_unbounded():
    """Half the samples' wrong conditions explain them better than their own (gap -1), half worse (gap +1.02):
    the mean gap is barely positive, so many resamples have no ratio and the interval reaches the clamp, which the
    reasons and the report write as inf, never as the clamp's 1e+12."""
    from collapsecheck.measures import RATIO_CLAMP, interval_text
    from collapsecheck.thresholds import Thresholds
    from collapsecheck.verdict.rules import NullTest, null_branch

    own = torch.ones(2, 5)
    wrong = own + torch.tensor([-1.0, 1.02]).repeat(5).view(2, 5)  # mean gap 0.01 over 10 samples
    errors = torch.stack([own, wrong], -1)
    r = null_ratio(errors, own + 0.005)
    assert r.ratio == pytest.approx(0.5) and r.high == RATIO_CLAMP and r.low < r.ratio
    text = interval_text(r.low, r.high)
    assert text.startswith(f"[{r.low:.3g}, inf]") and "unbounded" in text
    found = null_branch(NullTest(r.ratio, r.low, r.high, r.samples, 2), Thresholds())
    assert found.verdict == "unclear" and "inf]" in found.reasons[0] and "e+12" not in found.reasons[0]
    assert interval_text(0.25, 0.5) == "[0.25, 0.5]" and interval_text(-RATIO_CLAMP, 2.0).startswith("[-inf, 2]")

class PointMass(torch.nn.Module):
    """The exact eps of point-mass classes x0 = mu_c: eps = (x_t - sqrt(a) mu_c) / sqrt(1 - a), as eps or v."""

    def __init__(self, means, abar, prediction):
        super().__init__()
        self.register_buffer("means", means)
        self.register_buffer("abar", abar.float())
        self.prediction = prediction
        self.anchor = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x, t, class_labels):
        a = self.abar[t.long()].view(-1, 1, 1, 1)
        mu = self.means[class_labels.long()]
        eps = (x - a.sqrt() * mu) / (1 - a).sqrt()
        if self.prediction == "v_prediction":
            eps = a.sqrt() * eps - (1 - a).sqrt() * mu  # v = sqrt(a) eps - sqrt(1 - a) x0, x0 = mu
        return SimpleNamespace(sample=eps + 0 * self.anchor)


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
def test_errors_are_the_closed_form_whatever_the_parametrization_and_batch(prediction):
    """For a point mass, eps(x_t, c) - n = sqrt(a / (1 - a)) (x0 - mu_c): the error is a / (1 - a) times
    the mean squared distance to the candidate's point, whatever the noise, the chunking or the output type."""
    schedule = schedule_from_config({**SCHEDULER, "prediction_type": prediction})
    means = torch.randn(4, 1, 4, 4, generator=torch.Generator().manual_seed(3))  # the last row is the null
    den = Denoiser(model=PointMass(means, schedule.alphas_cumprod, prediction), kind="class", sample_shape=(1, 4, 4))
    conds = ConditionSet(kind="class", values=torch.arange(3), null=torch.tensor([3]), labels=("a", "b", "c"),
                         source="t", null_source="t")
    samples = torch.randn(2, 3, 5, 1, 4, 4, generator=torch.Generator().manual_seed(4))
    settings = ImplicitSettings(levels=3, noises=2, others=1)
    out = denoising_errors(den, schedule, samples, conds, settings, batch_size=7, reference=1)
    a = schedule.alphas_cumprod[noise_levels(schedule, 3)]
    weight = float((a / (1 - a)).mean())
    d2 = (samples.double().unsqueeze(3) - means.double()[candidates(3, 1)].view(1, 3, 1, 2, 1, 4, 4)).pow(2)
    assert torch.allclose(out.errors, weight * d2.flatten(4).mean(-1), rtol=1e-4)
    null_d2 = (samples[1].double() - means[3].double()).pow(2).flatten(2).mean(-1)
    assert torch.allclose(out.null_errors, weight * null_d2, rtol=1e-4)
    assert out.nfe == (2 * 3 * 5 * 2 + 3 * 5) * 3 * 2
    again = denoising_errors(den, schedule, samples, conds, settings, batch_size=1000, reference=1)
    assert torch.allclose(again.errors, out.errors, rtol=1e-6)


class Embedded(torch.nn.Module):
    """Gaussian classes read through a condition tensor: each condition row is a class's embedding (or hint
    image), the nearest one picks the class, and the null row (an empty prompt's embedding, or zeros) picks
    the null, the exact marginal ("mixture") or a condition never seen ("arbitrary")."""

    def __init__(self, table, sigma, abar, null, concat):
        super().__init__()
        self.register_buffer("table", table)  # (K + 1, ...): the conditions, then the null
        K = table.shape[0] - 1
        means = torch.rand(K, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 1.2 - 0.6
        self.gauss = GaussianClasses(means, sigma, abar, null=null)
        self.concat = concat

    def forward(self, x, t, encoder_hidden_states=None):
        if self.concat:
            x, cond = x[:, :1], x[:, 1:]
        else:
            cond = encoder_hidden_states
        d = (cond.unsqueeze(1) - self.table.unsqueeze(0)).flatten(2).pow(2).sum(-1)
        return self.gauss(x, t, d.argmin(1))


def embedded_setup(kind, null):
    schedule = schedule_from_config(SCHEDULER)
    g = torch.Generator().manual_seed(5)
    if kind == "cross_attn":
        table = torch.randn(5, 1, 16, generator=g)  # 4 prompts and a non-zero empty-prompt embedding
    else:
        table = torch.cat([torch.rand(4, 1, 8, 8, generator=g), torch.zeros(1, 1, 8, 8)])  # hints, null = zeros
    model = Embedded(table, 0.4, schedule.alphas_cumprod, null, concat=kind == "concat")
    den = Denoiser(model=model, kind=kind, sample_shape=(1, 8, 8))
    conds = ConditionSet(kind=kind, values=table[:4], null=table[4:], labels=tuple("abcd"), source="t",
                         null_source="t")
    return den, schedule, conds


@pytest.mark.parametrize("kind", ["cross_attn", "concat"])
def test_the_null_test_holds_for_text_embeddings_and_concatenated_hints(kind):
    verdicts = {}
    for null in ("mixture", "arbitrary"):
        r = evaluate(*embedded_setup(kind, null), make_config(checkpoint="t", mode="fast", lpips=False), INFO)
        nb = r.guidance.null_branch
        verdicts[null] = (nb.verdict, nb.null_ratio, r.guidance.verdict)
        assert nb.null_samples == 32 and nb.null_ratio_low <= nb.null_ratio <= nb.null_ratio_high
    assert verdicts["mixture"][0] == "learned" and verdicts["mixture"][1] < 0.5
    assert verdicts["arbitrary"][0] == "not_learned" and verdicts["arbitrary"][1] > 1.2
    assert verdicts["mixture"][2] == "steerable"


def test_the_dry_run_counts_what_the_scan_spends():
    from collapsecheck.dryrun import stage_nfe
    from helpers_analytic import gaussian_setup

    for mode in ("full", "fast"):
        den, schedule, conds = gaussian_setup(0.4, classes=4)
        config = make_config(checkpoint="a", mode=mode, lpips=False, recovery=False, posterior=False)
        r = evaluate(den, schedule, conds, config, INFO)
        assert sum(stage_nfe(config, conds, schedule).values()) == r.nfe
