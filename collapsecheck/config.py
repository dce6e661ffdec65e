"""The scan configuration: one frozen dataclass the CLI builds and the library reads.

Unknown threshold names are rejected with a "did you mean"; the resolved configuration is
written into every report.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Literal, Mapping, Optional, Sequence, Union

from .errors import UsageError, check_choice, did_you_mean, first_line
from .thresholds import Thresholds, thresholds_with

FailOn = Literal["collapsed", "at_risk", "weak", "not_steerable", "null_not_learned", "relative_collapsed",
                 "relative_at_risk", "never"]
#: the --fail-on axes (several may be given, comma-separated; see collapsecheck.verdict.gate)
FAIL_ON = ("collapsed", "at_risk", "weak", "not_steerable", "null_not_learned", "relative_collapsed", "relative_at_risk",
           "never")
DTYPES = ("float32", "float16", "bfloat16")
#: --device: these, or cuda:N for the N-th CUDA device (``check_device``)
DEVICES = ("auto", "cpu", "cuda", "mps")
WEIGHTS = ("auto", "unet", "unet_ema")
#: the prediction types a scheduler config (or --prediction-type) may name
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
DEFAULT_GUIDANCE = (0.0, 1.0, 3.0, 7.5)
MODES = ("full", "fast")
#: --sampler: deterministic DDIM (eta = 0, the default), DDIM with eta = 1, DDPM ancestral (the scheduler
#: config's variance_type); the stochastic two draw every step's noise from each seed's own generator
SAMPLERS = ("ddim", "ddim-eta1", "ddpm")
#: fast mode: at most this many seeds and DDIM steps (7 steps keep every zoo verdict at < 1/10 of the full NFE), the guidance scales below (and the verdict
#: scale), no recovery probes and no posterior profile; about a tenth of a full scan's network
#: evaluations, with the same measures and thresholds (benchmark: examples/zoo/benchmark.py mode=fast)
FAST_SEEDS = 8
FAST_STEPS = 7
FAST_GUIDANCE = (0.0, 1.0, 3.0)
#: a full scan's seeds and DDIM steps (ScanConfig's defaults): what fast mode re-samples a borderline condition at
FULL_SEEDS = 16
FULL_STEPS = 25
#: fast mode's escalation (collapsecheck.escalate): a condition whose fast seed share lies in
#: [collapsed_seed_share / ESCALATION_BAND, at_risk_seed_share x ESCALATION_BAND_ABOVE] (or whose deciding absolute
#: measure is within ESCALATION_BAND of its threshold) is re-sampled at FULL_SEEDS x FULL_STEPS. Measured on the zoo
#: models' fast and full scans before escalation (rounds 2 and 3): fast/full per-condition seed share 0.37-1.69 for
#: full shares in [0.03, 0.2) and 0.73-1.29 for [0.15, 0.3). Below collapsed_seed_share a fast estimate may be low by
#: 1 / 0.37 = 2.7 (covered by 3.0); near at_risk_seed_share it may be high by 1.29, and just under
#: collapsed_seed_share by 1.69: since round 8's defaults put collapsed_seed_share at 0.184, a full share there may
#: read 0.311, so the band reaches 0.2 x 1.7 = 0.34 (1.5, the factor until then, stopped at 0.3). 2.0 above
#: re-sampled conditions at fast shares 0.3-0.4 whose full shares were all >= 0.28, at 0.15-0.22 of a full scan's
#: time on the healthy models
ESCALATION_BAND = 3.0
ESCALATION_BAND_ABOVE = 1.7
#: fast mode with --reference (collapsecheck.witnesses): a condition whose fast relative diversity lies within this
#: factor of collapsed_relative_diversity or at_risk_relative_diversity is re-sampled at full settings in both
#: scans. Measured on the latent zoo's 20 fine-tunes against their bases (calibration round 11): fast/full
#: relative diversity 0.73-1.56 over 192 conditions
RELATIVE_ESCALATION_BAND = 1.6
#: fast mode with --reference: the w = 0 comparison is drawn again at full settings when the fast w = 0 ratio lies
#: within RELATIVE_ESCALATION_BAND of collapsed_relative_diversity or within this factor of
#: at_risk_relative_diversity (the null branch's two limits against the base, round 18). The w = 0 ratio is a mean
#: over conditions: fast/full 0.86-1.16 on the 22 calibration fine-tunes it was not escalated for, 0.79 on round
#: 13's coil/dreambooth_long; 1.6 here would draw w = 0 again on 13 of 30 fine-tunes, gtsrb/dreambooth_short's
#: fast scan then costing more than its full one
W0_AT_RISK_BAND = 1.3
#: fast mode's null-spread escalation (collapsecheck.escalate.spread): the w = 0 and w = 1 grids are drawn again at
#: full settings when the fast null spread lies within this factor of collapsed_seed_share (up to at_risk_seed_share
#: x the factor where the null ratio has no contrast) and the ratio has not already read not_learned. Measured on the
#: 140 calibration models' scans (round 19): fast/full null spread 0.61-1.25 where the full spread is at least
#: 0.05 (0.53-2.94 below, far under every threshold)
NULL_SPREAD_BAND = 2.0
#: fast mode's guidance escalation (collapsecheck.escalate.escalate_steering): the guidance verdict is measured again
#: at full settings when the fast implicit adherence change lies within STEERING_ESCALATION_Z standard errors of
#: steer_adherence_gain or steer_weak_gain (or the adherence of the ceiling rule of adherence_ceiling), or the break
#: ratio within a factor STEERING_BREAK_BAND of guidance_break_ratio. Measured on the 100 calibration models
#: (round 11): oracle/tied_half's fast change +0.125 (standard error 0.051) was +0.044 at full settings, 1.5
#: standard errors off; fast/full break ratios at w = 3 were 0.83-1.99
STEERING_ESCALATION_Z = 2.0
STEERING_BREAK_BAND = 2.0
#: ... or its relative shift within this factor of steer_still_shift (then every condition's w = 0 samples are drawn
#: at full settings too). Fast/full relative shifts on the calibration split (round 16): see docs/calibration.md
STEERING_SHIFT_BAND = 2.0


PathLike = Union[str, "os.PathLike[str]"]


@dataclass(frozen=True, kw_only=True)
class LoadSettings:
    """What to load and how: the settings the load stage reads (:class:`~collapsecheck.load.options.LoadOptions`
    adds their checks; ``load_checkpoint``'s docstring says what each does)."""

    model_config: Optional[PathLike] = None
    scheduler: Optional[PathLike] = None
    weights: str = "auto"
    prediction_type: Optional[str] = None
    prompts: Optional[PathLike] = None
    negative_prompt: Optional[str] = None
    base: Optional[PathLike] = None
    lora: Optional[PathLike] = None
    lora_scale: float = 1.0
    controlnet_scale: float = 1.0
    model: Optional[str] = None
    revision: Optional[str] = None


@dataclass(frozen=True, kw_only=True)
class ScanConfig(LoadSettings):
    """Everything a scan needs; build it with :func:`make_config` to get validation."""

    checkpoint: str
    classes: Optional[str] = None
    null_class: Optional[int] = None
    cond: Optional[str] = None
    concat_order: str = "after"
    seeds: int = FULL_SEEDS
    seed: int = 0
    steps: int = FULL_STEPS
    sampler: str = "ddim"
    guidance: tuple[float, ...] = DEFAULT_GUIDANCE
    guidance_scale: float = 1.0
    guidance_distilled: bool = False
    batch_size: int = 256
    device: str = "auto"
    dtype: str = "float32"
    lpips: bool = True
    lpips_net: str = "alex"
    lpips_weights: Optional[str] = None
    recovery: bool = True
    adherence: Optional[str] = None
    mode: str = "full"
    posterior: bool = True
    #: --reference BASE: scan this base model too, at the same conditions and seeds (collapsecheck.witnesses)
    reference: Optional[str] = None
    #: --train-images DIR: find samples that reproduce these training images
    train_images: Optional[str] = None
    #: --data-images DIR: images of the training data, whose classes are the conditions: the seeds' diversity is
    #: also judged against the data's within-class variance (collapsecheck.measure.datadiv)
    data_images: Optional[str] = None
    #: --features PATH: a local DINOv2 or CLIP folder whose embeddings give the Vendi score
    features: Optional[str] = None
    profile: bool = False
    thresholds: Thresholds = field(default_factory=Thresholds)
    #: fast mode: conditions re-sampled at full settings whatever their fast numbers; set by the --reference
    #: comparison (collapsecheck.witnesses), not an option
    escalate_also: tuple[int, ...] = ()
    #: fast mode: False for the first of --reference's two passes, whose fast numbers only choose escalate_also
    #: (collapsecheck.witnesses), not an option
    escalation: bool = True
    #: fast mode: every condition's w = 0 samples drawn again at full settings; set by the --reference comparison
    #: when the fast w = 0 diversity relative to the base's lies near collapsed_relative_diversity, not an option
    escalate_w0: bool = False

    @property
    def seed_list(self) -> list[int]:
        return [self.seed + i for i in range(self.seeds)]

    def as_dict(self) -> dict:
        return asdict(self)


def make_config(**kwargs) -> ScanConfig:
    """Validate and build a :class:`ScanConfig` from Python. Raises :class:`UsageError` on an unknown keyword
    (with a "did you mean") or a bad value; the message names the keyword (``make_config(seeds=...)``)."""
    check_keywords("make_config", kwargs, FIELDS)
    return with_python_names("make_config", options_config, **kwargs)


#: the keyword arguments of :func:`make_config`: the fields of :class:`ScanConfig`
#: ScanConfig fields set by the scan itself, not by the caller
INTERNAL_FIELDS = ("escalate_also", "escalation", "escalate_w0")
FIELDS = tuple(f.name for f in fields(ScanConfig) if f.name not in INTERNAL_FIELDS)
#: command-line flags whose Python keyword is not the flag's name with dashes as underscores
FLAG_KEYWORDS = {"config": "model_config", "threshold": "thresholds", "no-lpips": "lpips", "no-recovery": "recovery",
                 "no-posterior": "posterior"}

#: names other tools give to settings, and the keyword they mean here (for the "did you mean")
KEYWORD_ALIASES = {"seed_count": "seeds", "num_seeds": "seeds", "n_seeds": "seeds", "num_steps": "steps",
                   "num_inference_steps": "steps", "guidance_scales": "guidance", "cfg_scale": "guidance_scale",
                   "precision": "dtype", "torch_dtype": "dtype", "class_ids": "classes", "class_labels": "classes",
                   "prompt": "prompts"}


def check_keywords(func: str, kwargs: Mapping[str, object], known: Sequence[str]) -> None:
    """A UsageError naming the first keyword of ``kwargs`` that ``func`` does not take, with a "did you mean"."""
    for key in kwargs:
        if key not in known:
            alias = KEYWORD_ALIASES.get(key)
            hint = f" Did you mean '{alias}'?" if alias in known else did_you_mean(key, known)
            raise UsageError(f"{func}({key}=...): unknown argument." + hint + f" Known: {', '.join(known)}")


def python_message(message: str, func: str) -> str:
    """A message written for the command line, with its flags as ``func``'s keyword arguments: a leading
    ``--seeds ...`` becomes ``func(seeds=...): ...``, any other ``--flag`` becomes ``flag=...``."""
    def keyword(flag: str) -> str:
        return FLAG_KEYWORDS.get(flag, flag.replace("-", "_"))

    lead = re.match(r"--([a-z][a-z0-9-]*):?\s+", message)
    if lead:
        message = f"{func}({keyword(lead.group(1))}=...): " + message[lead.end():]
    return re.sub(r"(?<![\w-])--([a-z][a-z0-9-]*)", lambda m: f"{keyword(m.group(1))}=...", message)


def with_python_names(func: str, build, *args, **kwargs):
    """``build(*args, **kwargs)``, its UsageErrors reworded by :func:`python_message` for a Python caller."""
    try:
        return build(*args, **kwargs)
    except UsageError as exc:
        raise UsageError(python_message(str(exc), func)) from None


def options_config(**kwargs) -> ScanConfig:
    """Validate and build a :class:`ScanConfig` from command-line options: messages name the flags."""
    if "guidance" in kwargs and not kwargs["guidance"]:
        raise UsageError("--guidance needs at least one scale, e.g. 0,1,3,7.5")
    check_choice("--mode", kwargs.get("mode", "full"), MODES)
    if kwargs.get("mode") == "fast":
        kwargs["seeds"] = min(int(kwargs.get("seeds", FAST_SEEDS)), FAST_SEEDS)
        kwargs["steps"] = min(int(kwargs.get("steps", FAST_STEPS)), FAST_STEPS)
        kwargs["guidance"] = FAST_GUIDANCE
        kwargs["recovery"] = False
        kwargs["posterior"] = False
    # the sweep always holds w = 1 (the conditional branch alone, which shifts are measured from)
    # and the scale the collapse verdict is read at
    guidance = set(kwargs.get("guidance", DEFAULT_GUIDANCE)) | {1.0, float(kwargs.get("guidance_scale", 1.0))}
    kwargs["guidance"] = tuple(sorted(float(g) for g in guidance))
    cfg = ScanConfig(**kwargs)
    check_choice("--weights", cfg.weights, WEIGHTS)
    check_device(cfg.device)
    check_choice("--dtype", cfg.dtype, DTYPES)
    check_choice("--sampler", cfg.sampler, SAMPLERS)
    check_choice("--lpips-net", cfg.lpips_net, ("alex", "vgg"))
    if cfg.seeds < 2:
        raise UsageError(f"--seeds must be at least 2 to measure diversity across seeds, but got {cfg.seeds}")
    if cfg.steps < 1:
        raise UsageError(f"--steps must be at least 1, but got {cfg.steps}")
    _check_model_sources(cfg)
    _check_witness_paths(cfg)
    if cfg.batch_size < 2:
        raise UsageError(f"--batch-size must be at least 2 (a conditional and a null input), but got {cfg.batch_size}")
    return cfg


def _check_model_sources(cfg: ScanConfig) -> None:
    """Options that only make sense together, or not together: one line each, before any loading."""
    if cfg.prompts is not None and cfg.classes is not None:
        raise UsageError("--prompts gives the conditions of a pipeline; leave out --classes")
    if cfg.negative_prompt is not None and cfg.prompts is None:
        raise UsageError("--negative-prompt is the null condition of --prompts; pass --prompts FILE too")
    if cfg.lora_scale != 1.0 and cfg.lora is None and cfg.base is None:
        raise UsageError("--lora-scale applies to a LoRA: pass --lora FILE (or a LoRA file with --base BASE)")
    if cfg.model is not None:
        clash = [flag for flag, value in (("--cond", cfg.cond), ("--classes", cfg.classes), ("--prompts", cfg.prompts),
                                           ("--controlnet-scale", None if cfg.controlnet_scale == 1.0 else 1),
                                           ("--base", cfg.base), ("--lora", cfg.lora), ("--config", cfg.model_config))
                 if value is not None]
        if clash:
            raise UsageError(f"--model builds the network and its conditions itself; leave out {', '.join(clash)}")


def _check_witness_paths(cfg: ScanConfig) -> None:
    """--train-images, --data-images and --features name local folders, --reference a path or a hub id (org/name): one line
    each when they do not exist, before any scanning."""
    ref = cfg.reference
    if ref is not None and not Path(ref).exists() and not re.fullmatch(r"[\w.-]+/[\w.-]+", str(ref)):
        raise UsageError(f"--reference {ref}: no such file or folder (nor a hub id org/name)")
    for flag, path in (("--train-images", cfg.train_images), ("--data-images", cfg.data_images),
                       ("--features", cfg.features)):
        if path is not None and not Path(path).is_dir():
            raise UsageError(f"{flag} {path}: no such folder (nothing is downloaded)")


def parse_floats(text: str, what: str) -> tuple[float, ...]:
    """Parse ``"0,1,3,7.5"``."""
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise UsageError(f"{what}: cannot read '{text}'; write numbers separated by commas, like 0,1,3,7.5") from None
    if not values:
        raise UsageError(f"{what}: no value given; write numbers separated by commas, like 0,1,3,7.5")
    return values


def check_threshold_names(values: Mapping[str, object], where: str) -> dict[str, float]:
    """Check names against :class:`Thresholds` and values for being numbers."""
    names = Thresholds.names()
    out: dict[str, float] = {}
    for key, value in values.items():
        if key not in names:
            raise UsageError(f"{where}: unknown threshold '{key}'." + did_you_mean(key, names) +
                             f" Known: {', '.join(names)}")
        try:
            out[key] = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise UsageError(f"{where}: threshold '{key}' must be a number, but got {value!r}") from None
    return out


def parse_threshold_overrides(items: Sequence[str]) -> dict[str, float]:
    """Parse repeated ``--threshold NAME=VALUE`` options."""
    pairs = {}
    for item in items:
        if "=" not in item:
            raise UsageError(f"--threshold {item}: write NAME=VALUE, e.g. collapsed_rms=0.04")
        name, value = item.split("=", 1)
        pairs[name.strip()] = value.strip()
    return check_threshold_names(pairs, "--threshold")


def load_thresholds_file(path: str | Path) -> dict[str, float]:
    """Read threshold overrides from a .json or .toml file (top level, or a [thresholds] table)."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"--thresholds {path} does not exist")
    try:
        if path.suffix.lower() == ".toml":
            try:
                import tomllib
            except ImportError:  # Python < 3.11
                raise UsageError(f"--thresholds {path}: TOML needs Python 3.11 or later; use a .json file") from None
            data = tomllib.loads(path.read_text())
        else:
            data = json.loads(path.read_text())
    except UsageError:
        raise
    except Exception as exc:
        raise UsageError(f"--thresholds {path} cannot be parsed: {first_line(exc)}") from None
    if not isinstance(data, dict):
        raise UsageError(f"--thresholds {path}: expected a table of NAME = VALUE")
    if "thresholds" in data and isinstance(data["thresholds"], dict):
        data = data["thresholds"]
    return check_threshold_names(data, f"--thresholds {path}")


def build_thresholds(file: Optional[str], overrides: Sequence[str]) -> Thresholds:
    """Defaults, then a file, then ``--threshold`` options, each later one winning."""
    values: dict[str, float] = {}
    if file:
        values.update(load_thresholds_file(file))
    values.update(parse_threshold_overrides(overrides))
    return thresholds_with(Thresholds(), values)


def check_device(name: str) -> str:
    """``name`` if it is a device ``--device`` takes: auto, cpu, cuda, cuda:N or mps (usage error otherwise).
    Whether that device exists is checked when the scan starts (``run.resolve_device``)."""
    if isinstance(name, str) and re.fullmatch(r"cuda:[0-9]+", name):
        return name
    return check_choice("--device", name, DEVICES + ("cuda:N",))
