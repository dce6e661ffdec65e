"""The model's own implicit classifier (Li et al. 2023, "Your diffusion model is secretly a zero-shot
classifier"): adherence without an external classifier, a break ratio, and the null-branch ratio.

Each final sample x0 (latents for latent models: no decoding) is noised at a few fixed noise levels with
a few seeded noises, ``x_t = sqrt(a) x0 + sqrt(1 - a) n``, and the model's denoising error
``mean((eps(x_t, c) - n)^2)`` is computed for every candidate condition ``c``: the sample's own and up to
``others`` more (the next ones in the set's order, cyclically). The same x_t serves every candidate, so the
comparison is paired. From these errors:

* **implicit adherence** at a guidance scale: the share of samples whose own condition has the lowest mean
  error (ties shared), with its binomial standard error; chance is ``1 / candidates``. Higher = the samples
  follow their condition as the model itself reads them. It does not depend on the w = 1 samples.
* **break ratio** at w: the mean own-condition error of the w-samples / that of the w = 1 samples. Guidance
  that pushes samples off what the model considers data raises it (1: as typical as the w = 1 samples).
* **null ratio** ``r = (err_null - err_own) / (err_wrong - err_own)`` on the w = 1 samples (means over
  samples; ``err_wrong`` the mean over the wrong candidates): a learned null (the marginal) explains the
  samples better than a wrong condition (r < 1); an untrained one worse (r > 1). A seeded bootstrap over the
  samples gives its 95% interval.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from ..measures import RATIO_CLAMP
from ..model.schedule import Schedule, to_eps


@dataclass(frozen=True)
class ImplicitSettings:
    """How many noise levels, noises per level and wrong candidates per sample the classifier uses."""

    levels: int
    noises: int
    others: int
    seed: int = 0


#: full mode and fast mode (fast: one noise, two levels, two wrong candidates: 3x fewer evaluations per sample)
FULL = ImplicitSettings(levels=4, noises=1, others=3)
FAST = ImplicitSettings(levels=2, noises=1, others=2)
#: the noise levels are these alpha-bars' evenly spaced quantiles (mid-range noise discriminates best)
ALPHA_BAR_RANGE = (0.95, 0.1)
#: bootstrap resamples and the seed of the null ratio's interval
BOOTSTRAP = 1000
BOOTSTRAP_SEED = 1234


@dataclass
class ImplicitErrors:
    """Denoising errors, means over noise levels and noises."""

    errors: torch.Tensor  # (W, C, S, 1 + k) float64: own condition first, then the k wrong candidates
    null_errors: Optional[torch.Tensor]  # (C, S) float64 of the null on the reference (w = 1) samples, or None
    levels: list[int]  # the timesteps (schedule indices) the samples were noised at
    nfe: int


def candidates(conditions: int, others: int) -> torch.Tensor:
    """(C, 1 + k): each condition's candidates, itself first, then the next k (cyclically), k = min(others, C - 1)."""
    k = max(0, min(others, conditions - 1))
    return (torch.arange(conditions).view(-1, 1) + torch.arange(k + 1).view(1, -1)) % conditions


def noise_levels(schedule: Schedule, levels: int) -> list[int]:
    """The schedule indices whose alpha-bar is nearest to ``levels`` evenly spaced quantiles of ALPHA_BAR_RANGE."""
    hi, lo = ALPHA_BAR_RANGE
    targets = [hi - (i + 0.5) / levels * (hi - lo) for i in range(levels)]
    abar = schedule.alphas_cumprod
    return [int((abar - a).abs().argmin()) for a in targets]


def sample_noise(conditions: int, seeds: int, noises: int, shape: Sequence[int], seed: int) -> torch.Tensor:
    """(C, S, J, *shape) noise, one CPU generator per (condition, seed, noise): shared by every guidance scale."""
    def one(c: int, s: int, j: int) -> torch.Tensor:
        g = torch.Generator().manual_seed((seed * 1_000_003 + c * 7919 + s * 104_729 + j * 15_485_863 + 29) % 2**63)
        return torch.randn(tuple(shape), generator=g)

    cells = [one(c, s, j) for c in range(conditions) for s in range(seeds) for j in range(noises)]
    return torch.stack(cells).view((conditions, seeds, noises) + tuple(shape))


def implicit_nfe(scales: int, conditions: int, seeds: int, settings: ImplicitSettings, test_null: bool) -> int:
    """The network evaluations :func:`implicit_stats` makes (none with fewer than two conditions)."""
    if conditions < 2:
        return 0
    per_sample = settings.levels * settings.noises
    k = candidates(conditions, settings.others).shape[1]
    return (scales * conditions * seeds * k + (conditions * seeds if test_null else 0)) * per_sample


def denoising_errors(denoiser, schedule: Schedule, samples: torch.Tensor, conds, settings: ImplicitSettings,
                     batch_size: int, reference: Optional[int] = None, advance=None) -> ImplicitErrors:
    """The errors of every (scale, condition, seed) sample ``samples`` (W, C, S, ...) under its candidates,
    and of the null on the samples of scale index ``reference`` (None: no null errors); network evaluations
    in chunks of ``batch_size``, each counted in ``nfe`` (and passed to ``advance(n)`` when given)."""
    W, C, S = samples.shape[:3]
    cand = candidates(C, settings.others)
    levels = noise_levels(schedule, settings.levels)
    noise = sample_noise(C, S, settings.noises, samples.shape[3:], settings.seed)
    jobs = _jobs(W, C, S, cand, reference, conds.paired_null)
    table = torch.cat([conds.values, conds.null]).to(denoiser.device)
    total = torch.zeros(jobs.shape[0], dtype=torch.float64)
    with torch.inference_mode():
        for t in levels:
            for j in range(settings.noises):
                for n0 in range(0, jobs.shape[0], batch_size):
                    part = jobs[n0:n0 + batch_size]
                    total[n0:n0 + batch_size] += _chunk_errors(denoiser, schedule, samples, noise[:, :, j], table,
                                                               part, t)
                    if advance is not None:
                        advance(int(part.shape[0]))
    total /= len(levels) * settings.noises
    errors, null = _unpack(total, jobs, W, C, S, cand.shape[1], reference)
    return ImplicitErrors(errors, null, levels, int(jobs.shape[0]) * len(levels) * settings.noises)


def _jobs(W: int, C: int, S: int, cand: torch.Tensor, reference: Optional[int], paired_null: bool) -> torch.Tensor:
    """(N, 4) long rows (scale, condition, seed, row of the condition table): every candidate of every sample,
    then the null of every reference sample (row C, or C + c with one null per condition)."""
    w, c, s, m = torch.meshgrid(torch.arange(W), torch.arange(C), torch.arange(S), torch.arange(cand.shape[1]),
                                indexing="ij")
    rows = [torch.stack([w, c, s, cand[c, m]], -1).reshape(-1, 4)]
    if reference is not None:
        c, s = torch.meshgrid(torch.arange(C), torch.arange(S), indexing="ij")
        null_row = C + c if paired_null else torch.full_like(c, C)
        rows.append(torch.stack([torch.full_like(c, reference), c, s, null_row], -1).reshape(-1, 4))
    return torch.cat(rows)


def _chunk_errors(denoiser, schedule: Schedule, samples: torch.Tensor, noise: torch.Tensor, table: torch.Tensor,
                  part: torch.Tensor, t: int) -> torch.Tensor:
    """Mean squared eps error (float64, CPU) of each job row in ``part`` at timestep ``t``."""
    device = denoiser.device
    x0 = samples[part[:, 0], part[:, 1], part[:, 2]].to(device).float()
    n = noise[part[:, 1], part[:, 2]].to(device)
    a = schedule.alpha_bar(torch.tensor([t])).float().to(device).view((1,) * x0.dim())
    x_t = a.sqrt() * x0 + (1 - a).sqrt() * n
    tt = torch.full((x0.shape[0],), t, device=device, dtype=torch.long)
    out = denoiser(x_t, tt, table[part[:, 3].to(device)])
    eps = to_eps(out, x_t, a, schedule.prediction_type)
    return (eps - n).float().pow(2).flatten(1).mean(1).cpu().double()  # float32 on the device: MPS has no float64


def _unpack(total: torch.Tensor, jobs: torch.Tensor, W: int, C: int, S: int, M: int,
            reference: Optional[int]) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    main = W * C * S * M
    errors = total[:main].view(W, C, S, M)
    return errors, (total[main:].view(C, S) if reference is not None else None)


# ------------------------------------------------------------------------------------ what the errors say


@dataclass(frozen=True)
class Share:
    """A share of samples with its binomial standard error."""

    value: float
    stderr: float
    n: int


def adherence(errors: torch.Tensor) -> Share:
    """The share of samples (any leading shape, candidates last, own first) whose own condition has the lowest
    error; a tie among the lowest counts as 1 / (candidates tied) (a model that ignores its condition scores
    chance, not 1). Binomial standard error sqrt(p (1 - p) / n)."""
    flat = errors.reshape(-1, errors.shape[-1])
    lowest = flat.min(-1, keepdim=True).values
    tied = flat.eq(lowest)
    score = tied[:, 0].double() / tied.sum(-1).double()
    p, n = float(score.mean()), int(score.numel())
    return Share(p, (p * (1 - p) / n) ** 0.5, n)


def break_ratio(own: torch.Tensor, reference_own: torch.Tensor) -> float:
    """Mean own-condition error of some samples / that of the reference (w = 1) samples (1: as typical)."""
    return float(own.double().mean() / reference_own.double().mean().clamp_min(1e-30))


@dataclass(frozen=True)
class NullRatio:
    """r = (err_null - err_own) / (err_wrong - err_own) with its bootstrap interval; None when the wrong
    candidates explain the samples as well as their own (no contrast to measure the null against)."""

    ratio: Optional[float]
    low: Optional[float]
    high: Optional[float]
    samples: int
    contrast: float  # mean (err_wrong - err_own) / mean err_own: how much a wrong condition costs


def null_ratio(errors: torch.Tensor, null_errors: torch.Tensor) -> NullRatio:
    """The null ratio from the reference samples' errors (C, S, 1 + k) and the null's (C, S)."""
    own = errors[..., 0].reshape(-1).double()
    if errors.shape[-1] < 2:
        return NullRatio(None, None, None, int(own.numel()), 0.0)
    wrong = errors[..., 1:].mean(-1).reshape(-1).double()
    gap_null, gap_wrong = null_errors.reshape(-1).double() - own, wrong - own
    contrast = float(gap_wrong.mean() / own.mean().clamp_min(1e-30))
    if not float(gap_wrong.mean()) > 0:
        return NullRatio(None, None, None, int(own.numel()), contrast)
    boot = _bootstrap(gap_null, gap_wrong)
    low, high = torch.quantile(boot.clamp(-RATIO_CLAMP, RATIO_CLAMP),
                               torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
    return NullRatio(float(gap_null.mean() / gap_wrong.mean()), low, high, int(own.numel()), contrast)



def _bootstrap(gap_null: torch.Tensor, gap_wrong: torch.Tensor, chunk: int = 100) -> torch.Tensor:
    """BOOTSTRAP seeded resamples of mean(gap_null) / mean(gap_wrong) (inf where the denominator is not
    positive), drawn ``chunk`` at a time so memory stays at chunk x samples."""
    g = torch.Generator().manual_seed(BOOTSTRAP_SEED)
    out = []
    for start in range(0, BOOTSTRAP, chunk):
        pick = torch.randint(0, gap_null.numel(), (min(chunk, BOOTSTRAP - start), gap_null.numel()), generator=g)
        num, den = gap_null[pick].mean(1), gap_wrong[pick].mean(1)
        out.append(torch.where(den > 0, num / den.clamp_min(1e-300), torch.full_like(num, float("inf"))))
    return torch.cat(out)


@dataclass
class ImplicitStats:
    """What the implicit classifier says about a sweep, per scale in the sweep's order."""

    adherence: list[Share]
    break_ratio: list[float]  # own error at each scale / at the reference scale
    null: Optional[NullRatio]  # None when the null was not tested
    chance: float  # 1 / candidates per sample
    levels: list[int]
    nfe: int
    conditions: int


def implicit_stats(denoiser, schedule: Schedule, conds, samples: torch.Tensor, reference: int,
                   settings: ImplicitSettings, batch_size: int, test_null: bool,
                   advance=None) -> Optional[ImplicitStats]:
    """Implicit adherence and break ratio of every scale of ``samples`` (W, C, S, ...), and the null ratio on
    the samples of scale index ``reference`` (w = 1) when ``test_null``; None with fewer than two conditions."""
    if samples.shape[1] < 2:
        return None
    e = denoising_errors(denoiser, schedule, samples, conds, settings, batch_size, reference if test_null else None,
                         advance)
    own_ref = e.errors[reference, ..., 0]
    return ImplicitStats(
        adherence=[adherence(e.errors[i]) for i in range(e.errors.shape[0])],
        break_ratio=[break_ratio(e.errors[i, ..., 0], own_ref) for i in range(e.errors.shape[0])],
        null=None if e.null_errors is None else null_ratio(e.errors[reference], e.null_errors),
        chance=1.0 / e.errors.shape[-1], levels=e.levels, nfe=e.nfe, conditions=int(samples.shape[1]),
    )
