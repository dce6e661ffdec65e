"""Denoisers with closed-form answers: the exact eps of Gaussian class-conditional data.

For x0 | c ~ N(mu_c, s^2 I) and x_t = sqrt(a) x0 + sqrt(1 - a) n,

    eps_c(x_t) = sqrt(1 - a) (x_t - sqrt(a) mu_c) / (a s^2 + 1 - a),

and the Bayes-optimal unconditional eps is the posterior mixture sum_c p(c | x_t) eps_c(x_t).
DDIM with these exact predictions samples N(mu_c, s^2 I): seed diversity is known (per-pixel
std s, mean pairwise RMS sqrt(2) s), and so is the null branch (``null="mixture"`` is learned,
``null="arbitrary"`` is a condition it never saw).
"""
from __future__ import annotations

from types import SimpleNamespace

import torch

from collapsecheck.load.conditions import ConditionSet
from collapsecheck.model.denoiser import Denoiser
from collapsecheck.model.schedule import schedule_from_config

SCHEDULER = {"num_train_timesteps": 1000, "beta_schedule": "squaredcos_cap_v2", "clip_sample": False,
             "set_alpha_to_one": False, "prediction_type": "epsilon"}


class GaussianClasses(torch.nn.Module):
    """Exact eps for Gaussian classes; the last class index is the null condition."""

    def __init__(self, means: torch.Tensor, sigma: float, alphas_cumprod: torch.Tensor, null: str = "mixture",
                 prediction_type: str = "epsilon"):
        super().__init__()
        self.register_buffer("means", means.float())  # (K, C, H, W)
        self.sigma = float(sigma)
        self.register_buffer("abar", alphas_cumprod.float())
        self.null = null
        self.prediction_type = prediction_type
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # gives the module a device and dtype
        # one-hot class "embeddings": the class mean is read through them, so noise on the embedding
        # (CADS) blurs the condition as it would in a network
        K = means.shape[0]
        self.class_embedding = torch.nn.Embedding(K + 1, K + 1)
        with torch.no_grad():
            self.class_embedding.weight.copy_(torch.eye(K + 1))
        g = torch.Generator().manual_seed(123)
        self.register_buffer("arbitrary_mean", torch.randn(means.shape[1:], generator=g) * means.std() * 1.5)

    def _eps(self, x: torch.Tensor, a: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
        return (1 - a).sqrt() * (x - a.sqrt() * mu) / (a * self.sigma ** 2 + 1 - a)

    def forward(self, x, t, class_labels):
        K = self.means.shape[0]
        a = self.abar[t.long()].view(-1, 1, 1, 1).to(x.dtype)
        labels = class_labels.long()
        weights = self.class_embedding(labels)[:, :K].to(x.dtype)  # (B, K), one-hot unless perturbed
        mu = (weights @ self.means.flatten(1)).view((-1,) + tuple(self.means.shape[1:]))
        eps = self._eps(x, a, mu)
        is_null = labels == K
        if bool(is_null.any()):
            xs, an = x[is_null], a[is_null]
            if self.null == "mixture":
                var = an * self.sigma ** 2 + 1 - an
                d2 = ((xs.unsqueeze(1) - an.sqrt().unsqueeze(1) * self.means.unsqueeze(0)) ** 2).flatten(2).sum(-1)
                post = torch.softmax(-d2 / (2 * var.view(-1, 1)), dim=1)  # (B, K)
                all_eps = self._eps(xs.unsqueeze(1), an.unsqueeze(1), self.means.unsqueeze(0))
                eps_null = (post.view(post.shape + (1, 1, 1)) * all_eps).sum(1)
            else:
                eps_null = self._eps(xs, an, self.arbitrary_mean)
            eps = eps.clone()
            eps[is_null] = eps_null
        out = eps
        if self.prediction_type == "v_prediction":
            # v = sqrt(a) eps - sqrt(1-a) x0, with x0 = (x - sqrt(1-a) eps)/sqrt(a)
            x0 = (x - (1 - a).sqrt() * eps) / a.sqrt()
            out = a.sqrt() * eps - (1 - a).sqrt() * x0
        return SimpleNamespace(sample=out + 0 * self.anchor)


def gaussian_setup(sigma: float, classes: int = 4, null: str = "mixture", size: int = 8, prediction_type="epsilon",
                   seed: int = 0):
    """(denoiser, schedule, conditions) for ``classes`` Gaussian classes of per-pixel std ``sigma``."""
    schedule = schedule_from_config({**SCHEDULER, "prediction_type": prediction_type})
    g = torch.Generator().manual_seed(seed)
    means = torch.rand(classes, 1, size, size, generator=g) * 1.2 - 0.6
    model = GaussianClasses(means, sigma, schedule.alphas_cumprod, null=null, prediction_type=prediction_type)
    denoiser = Denoiser(model=model, kind="class", sample_shape=(1, size, size))
    conds = ConditionSet(
        kind="class",
        values=torch.arange(classes),
        null=torch.tensor([classes]),
        labels=tuple(f"class {c}" for c in range(classes)),
        source="analytic",
        null_source=f"class {classes}",
    )
    return denoiser, schedule, conds


class DecoderModel(torch.nn.Module):
    """A deterministic decoder: predicts x0 = the class's image whatever x_t is (sample prediction)."""

    def __init__(self, classes: int = 3, size: int = 8):
        super().__init__()
        self.register_buffer("images", torch.rand(classes + 1, 1, size, size, generator=torch.Generator().manual_seed(1)))
        self.anchor = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x, t, class_labels):
        return SimpleNamespace(sample=self.images[class_labels.long()] + 0 * x + 0 * self.anchor)


def decoder_setup(classes: int = 3):
    """(denoiser, schedule, conditions) for a :class:`DecoderModel`: every seed gives the same x0."""
    schedule = schedule_from_config({**SCHEDULER, "prediction_type": "sample"})
    denoiser = Denoiser(model=DecoderModel(classes), kind="class", sample_shape=(1, 8, 8))
    conds = ConditionSet(kind="class", values=torch.arange(classes), null=torch.tensor([classes]),
                         labels=tuple(str(c) for c in range(classes)), source="test", null_source="test")
    return denoiser, schedule, conds
