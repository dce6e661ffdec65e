"""The options of scan, compare and trend, each tagged with the --help section that lists it."""
from __future__ import annotations

import click

from ..config import DEVICES, DTYPES, FAIL_ON, MODES, WEIGHTS
from .help import Choice, option

#: the values the loader and the denoiser accept (tests/test_cli.py checks them against load/ and model/)
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
CONCAT_ORDERS = ("after", "before")
LPIPS_NETS = ("alex", "vgg")

#: the options that decide what a scan computes, shared by ``scan`` and ``trend`` (same names, same meaning)
SCAN_SETTINGS = [
    option("input", "--config", "model_config", type=click.Path(), help="Model config.json for a bare weights file."),
    option("input", "--scheduler", type=click.Path(), help="Scheduler config (file or folder); default: the checkpoint's scheduler/."),
    option("input", "--weights", type=Choice(WEIGHTS), default="auto", show_default=True, help="Which weights of a pipeline folder (auto: unet/ when present, else unet_ema/)."),
    option("input", "--prediction-type", type=Choice(PREDICTION_TYPES), help="Override the scheduler's prediction type."),
    option("input", "--classes", help="Class ids to scan, e.g. 0-9,12 (default: every class but the null)."),
    option("input", "--null-class", type=int, help="Null class index (default: the last embedding index)."),
    option("input", "--cond", type=click.Path(), help="Conditions: .npy/.npz/.safetensors/.pt tensor (key 'cond', optional 'null') or a folder of images."),
    option("input", "--concat-order", type=Choice(CONCAT_ORDERS), default="after", show_default=True, help="Where a concatenated condition sits: after or before x_t."),
    option("input", "--prompts", type=click.Path(), help="Pipelines: a text file, one prompt per line, encoded by the pipeline's text encoder."),
    option("input", "--negative-prompt", help="Pipelines: the null condition's text (default: the empty prompt)."),
    option("input", "--base", type=click.Path(), help="A pipeline or UNet folder supplying what CHECKPOINT lacks: config, scheduler, VAE, text encoder; the weights a LoRA applies to."),
    option("input", "--lora", type=click.Path(), help="LoRA weights (diffusers/peft or kohya .safetensors) applied to the UNet."),
    option("input", "--lora-scale", default=1.0, show_default=True, help="Strength of the LoRA (0 = the base model)."),
    option("input", "--controlnet-scale", default=1.0, show_default=True, help="ControlNets: the conditioning scale (recovery probes also try 0.8x and 0.5x)."),
    option("input", "--model", metavar="MODULE:FUNCTION", help="Your own architecture: module:function or file.py:function returning a CustomModel (see docs/usage.md)."),
    option("sampling", "--seeds", default=16, show_default=True, help="Initial noises per condition."),
    option("sampling", "--seed", default=0, show_default=True, help="First seed; seeds are SEED, SEED+1, ..."),
    option("sampling", "--steps", default=25, show_default=True, help="DDIM steps."),
    option("sampling", "--guidance", default="0,1,3,7.5", show_default=True, help="Guidance scales of the sweep (1 is always added)."),
    option("sampling", "--guidance-scale", default=1.0, show_default=True, help="Scale at which the collapse verdict is read."),
    option("sampling", "--guidance-distilled", is_flag=True, help="The model is guidance-distilled (LCM, turbo): it has no null branch by design."),
    option("sampling", "--mode", type=Choice(MODES), default="full", show_default=True, help="full, or fast: <= 8 seeds, <= 7 steps, w in {0, 1, 3}, no recovery or posterior probes (about 1/10 of the network evaluations)."),
    option("sampling", "--batch-size", default=256, show_default=True, help="Network inputs per forward pass (conditional and null halves both count)."),
    option("sampling", "--device", type=Choice(DEVICES), default="auto", show_default=True, help="Where the network runs (auto: cuda when available)."),
    option("sampling", "--dtype", type=Choice(DTYPES), default="float32", show_default=True, help="The network's dtype."),
    option("measures", "--lpips/--no-lpips", default=True, show_default=True, help="Measure LPIPS when backbone weights are available offline."),
    option("measures", "--lpips-net", type=Choice(LPIPS_NETS), default="alex", show_default=True, help="LPIPS backbone."),
    option("measures", "--lpips-weights", type=click.Path(), help="LPIPS backbone weights (torchvision state dict, .safetensors or .pth)."),
    option("measures", "--recovery/--no-recovery", default=True, show_default=True, help="When the verdict is not healthy, try sampling-time fixes (lower w, interval guidance, CADS) in a second pass."),
    option("measures", "--posterior/--no-posterior", default=True, show_default=True, help="Measure the posterior variance by timestep (Tweedie; full mode)."),
    option("measures", "--adherence", metavar="MODULE:FUNCTION", help="Your adherence metric: module:function or file.py:function (see docs/usage.md)."),
    option("gate", "--threshold", "threshold_items", multiple=True, metavar="NAME=VALUE", help="Override a verdict threshold (repeatable)."),
    option("gate", "--thresholds", "thresholds_file", type=click.Path(), help="Threshold overrides from a .json or .toml file."),
]

FAIL_ON_HELP = "Exit 1 when the scan is at least this bad."


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
    return option("gate", "--fail-on", type=Choice(FAIL_ON), default="collapsed", show_default=True, help=FAIL_ON_HELP)(command)
