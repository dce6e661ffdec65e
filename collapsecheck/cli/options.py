"""The options of scan, compare and trend, each tagged with the --help section that lists it."""
from __future__ import annotations

from typing import Optional

import click

from ..config import DTYPES, MODES, PREDICTION_TYPES, SAMPLERS, WEIGHTS
from ..errors import UsageError
from .help import Choice, OneLineError, option

#: the values the loader and the denoiser accept (tests/test_cli.py checks them against load/ and model/)
CONCAT_ORDERS = ("after", "before")
LPIPS_NETS = ("alex", "vgg")

#: the options that decide what a scan computes, shared by ``scan`` and ``trend`` (same names, same meaning)
SCAN_SETTINGS = [
    option("input", "--config", "model_config", type=click.Path(), help="Model config.json for a bare weights file."),
    option("input", "--scheduler", type=click.Path(), help="Scheduler config (file or folder); default: the checkpoint's scheduler/."),
    option("input", "--weights", type=Choice(WEIGHTS), default="auto", show_default=True, help="Which weights of a pipeline folder (auto: unet/ when present, else unet_ema/)."),
    option("input", "--prediction-type", type=Choice(PREDICTION_TYPES), help="Override the scheduler's prediction type."),
    option("input", "--classes", help="Class ids to scan, e.g. 0-9,12, or all (default: every class but the null; above 32 classes an evenly spaced 32 of them)."),
    option("input", "--null-class", type=int, help="Null class index (default: the last embedding index)."),
    option("input", "--cond", type=click.Path(), help="Conditions: .npy/.npz/.safetensors/.pt tensor (key 'cond', optional 'null') or a folder of images."),
    option("input", "--concat-order", type=Choice(CONCAT_ORDERS), default="after", show_default=True, help="Where a concatenated condition sits: after or before x_t."),
    option("input", "--prompts", type=click.Path(), help="Pipelines: a text file, one prompt per line, encoded by the pipeline's text encoder. ControlNets: one prompt, or one per --cond hint ((prompt, hint) pairs in sorted order)."),
    option("input", "--negative-prompt", help="Pipelines: the null condition's text (default: the empty prompt)."),
    option("input", "--base", type=click.Path(), help="A pipeline or UNet folder supplying what CHECKPOINT lacks: config, scheduler, VAE, text encoder; the weights a LoRA applies to."),
    option("input", "--lora", type=click.Path(), help="LoRA weights (diffusers/peft or kohya .safetensors) applied to the UNet or the SD3, Flux or PixArt transformer."),
    option("input", "--lora-scale", default=1.0, show_default=True, help="Strength of the LoRA (0 = the base model)."),
    option("input", "--controlnet-scale", default=1.0, show_default=True, help="ControlNets: the conditioning scale (recovery probes also try 0.8x and 0.5x)."),
    option("input", "--model", metavar="MODULE:FUNCTION", help="Your own architecture: module:function or file.py:function returning a CustomModel (see docs/usage.md)."),
    option("sampling", "--seeds", default=16, show_default=True, help="Initial noises per condition."),
    option("sampling", "--seed", default=0, show_default=True, help="First seed; seeds are SEED, SEED+1, ..."),
    option("sampling", "--steps", default=25, show_default=True, help="DDIM steps."),
    option("sampling", "--sampler", type=Choice(SAMPLERS), default="ddim", show_default=True, help="ddim (deterministic), ddim-eta1 or ddpm (ancestral, the scheduler config's variance_type): each seed fixes every noise draw."),
    option("sampling", "--guidance", default="0,1,3,7.5", show_default=True, help="Guidance scales of the sweep (1 is always added)."),
    option("sampling", "--guidance-scale", default=1.0, show_default=True, help="Scale at which the collapse verdict is read."),
    option("sampling", "--guidance-distilled", is_flag=True, help="The model is guidance-distilled (LCM, turbo): it has no null branch by design."),
    option("sampling", "--mode", type=Choice(MODES), default="full", show_default=True, help="full, or fast: <= 8 seeds, <= 7 steps, w in {0, 1, 3}, no recovery or posterior probes, conditions near a threshold and an undecided null-branch test redone at full settings (1/17 to 1/3 of a full scan's network evaluations on the zoo)."),
    option("sampling", "--batch-size", default=256, show_default=True, help="Network inputs per forward pass (conditional and null halves both count)."),
    option("sampling", "--device", default="auto", show_default=True, metavar="[auto|cpu|cuda|cuda:N|mps]", help="Where the network runs: auto (cuda when available, else cpu), cpu, cuda, cuda:N or mps."),
    option("sampling", "--dtype", type=Choice(DTYPES), default="float32", show_default=True, help="The network's dtype."),
    option("measures", "--lpips/--no-lpips", default=True, show_default=True, help="Measure LPIPS when backbone weights are available offline."),
    option("measures", "--lpips-net", type=Choice(LPIPS_NETS), default="alex", show_default=True, help="LPIPS backbone."),
    option("measures", "--lpips-weights", type=click.Path(), help="LPIPS backbone weights (torchvision state dict, .safetensors or .pth)."),
    option("measures", "--recovery/--no-recovery", default=True, show_default=True, help="When the verdict is not healthy, try sampling-time fixes (lower w, interval guidance, CADS) in a second pass."),
    option("measures", "--posterior/--no-posterior", default=True, show_default=True, help="Measure the posterior variance by timestep (Tweedie; full mode)."),
    option("measures", "--adherence", metavar="MODULE:FUNCTION", help="Your adherence metric: module:function or file.py:function (see docs/usage.md)."),
    option("measures", "--reference", metavar="BASE", help="A base model (path or cached hub id, loaded like CHECKPOINT): scanned at the same conditions and seeds; seed diversity relative to it, per condition (see docs/measures.md)."),
    option("measures", "--data-images", type=click.Path(), metavar="DIR", help="Images of the training data whose classes are the conditions (PNG/JPG/WebP): a healthy model whose seeds keep less than data_relative_diversity of the data's within-class variance reads at_risk; a condition read collapsed whose seeds keep cell_collapsed_share of its own cell of the data reads at_risk, and a pixel-aligned one (a hint) is judged by its cell both ways (hint_cell_collapsed_share); a null branch whose w = 0 samples keep less than null_data_unclear of the data's variance reads unclear."),
    option("measures", "--train-images", type=click.Path(), metavar="DIR", help="Training images (PNG/JPG/WebP, resized to the sample size): which samples reproduce one, per condition."),
    option("measures", "--features", type=click.Path(), metavar="PATH", help="A local DINOv2 or CLIP model folder (transformers, safetensors; never downloaded): the Vendi score of each condition's seeds over its embeddings."),
    option("gate", "--threshold", "threshold_items", multiple=True, metavar="NAME=VALUE", help="Override a verdict threshold (repeatable)."),
    option("gate", "--thresholds", "thresholds_file", type=click.Path(), help="Threshold overrides from a .json or .toml file."),
]

FAIL_ON_HELP = ("Exit 1 when any of these axes fails (comma-separated): collapsed, at_risk (the collapse verdict is "
                "at least this bad), weak, not_steerable (the guidance verdict), null_not_learned (the null branch is "
                "not learned), relative_collapsed, relative_at_risk (the verdict relative to --reference); or never.")
#: --max-regression's default, in percent
DEFAULT_MAX_REGRESSION = 20.0


class FailOnAxes(click.ParamType):
    """``--fail-on``: one or more axes, comma-separated; an unknown one is a one-line "did you mean" (exit 2)."""

    name = "axes"

    def convert(self, value, param, ctx):
        from ..verdict.gate import parse_fail_on

        try:
            return ",".join(parse_fail_on(value))
        except UsageError as exc:
            raise OneLineError(str(exc)) from None


def scan_settings(command):
    """Decorate a command with every scan-setting option, in the order --help lists them."""
    for decorator in reversed(SCAN_SETTINGS):
        command = decorator(command)
    return command


#: scan only (trend scans the checkpoints of a local folder): which snapshot of a hub id
REVISION_OPTION = option("input", "--revision", metavar="REV", help="A hub id's branch, tag or commit (CHECKPOINT org/name, read from the local Hugging Face cache, never downloaded)  [default: main]")


def hub_options(command):
    """--revision, for a CHECKPOINT that is a Hugging Face hub id."""
    return REVISION_OPTION(command)


def gate_options(command):
    """--fail-on and --quiet, shared by scan, compare and trend."""
    command = option("outputs", "--quiet", "-q", is_flag=True, help="No terminal report (errors still go to stderr).")(command)
    return option("gate", "--fail-on", type=FailOnAxes(), default="collapsed", show_default=True,
                  metavar="AXIS[,AXIS...]", help=FAIL_ON_HELP)(command)


def regression_options(command):
    """--max-regression and its alias --max-drop, shared by scan (with --baseline) and compare."""
    command = option("gate", "--max-drop", type=float, metavar="FRACTION",
                     help="The same limit as a fraction (0.2 = --max-regression 20); kept for older scripts.")(command)
    return option("gate", "--max-regression", type=float, metavar="PCT",
                  help=f"Fail when seed diversity fell by more than PCT percent of the baseline, per condition or "
                       f"on the mean (or a verdict got worse)  [default: {DEFAULT_MAX_REGRESSION:g}]")(command)


def max_regression_percent(max_regression: Optional[float], max_drop: Optional[float]) -> float:
    """The --max-regression limit in percent, from it or from its alias --max-drop (a fraction); one of them."""
    if max_regression is not None and max_drop is not None:
        raise UsageError(f"give --max-regression {max_regression:g} or --max-drop {max_drop:g}, not both "
                         "(--max-drop 0.2 is --max-regression 20)")
    if max_drop is not None:
        if not 0 <= max_drop < 1:
            raise UsageError(f"--max-drop must be a fraction in [0, 1), e.g. 0.2 for 20%, but got {max_drop:g}")
        return max_drop * 100
    pct = DEFAULT_MAX_REGRESSION if max_regression is None else max_regression
    if not 0 <= pct < 100:
        raise UsageError(f"--max-regression must be a percentage in [0, 100), e.g. 20, but got {pct:g}")
    return pct
