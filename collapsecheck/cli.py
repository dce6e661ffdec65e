"""The command line: parse, build one config, call the library, render, map errors to exit codes.

Heavy imports (torch, diffusers) happen inside the commands so that ``--help`` is instant.
"""
from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Iterator, Optional

import click

from .errors import EXIT_GATE_FAILED, EXIT_LOAD, EXIT_PASS, EXIT_USAGE, CollapsecheckError

FAIL_ON = ("collapsed", "at_risk", "not_steerable", "never")


@contextmanager
def _errors_to_exit_codes() -> Iterator[None]:
    """One line on stderr and the documented exit code; no traceback for a user's mistake."""
    try:
        yield
    except CollapsecheckError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)


def _progress_factory(enabled: bool):
    """A rich progress bar on stderr, or None when stderr is not a terminal."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    console = Console(stderr=True)
    if not enabled or not console.is_terminal:
        return None, None
    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
        console=console, transient=True,
    )

    def factory(description: str, total: int):
        task = progress.add_task(description, total=total)
        return lambda n=1: progress.advance(task, n)

    return progress, factory


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="collapsecheck")
def cli() -> None:
    """Catch conditional diffusion models that have collapsed into deterministic decoders."""


@cli.command()
@click.argument("checkpoint", type=click.Path())
@click.option("--config", "model_config", type=click.Path(), help="Model config.json for a bare weights file.")
@click.option("--scheduler", type=click.Path(), help="Scheduler config (file or folder); default: the checkpoint's scheduler/.")
@click.option("--weights", default="auto", show_default=True, help="Which weights of a pipeline folder: auto, unet or unet_ema.")
@click.option("--prediction-type", help="Override the scheduler's prediction type: epsilon, v_prediction or sample.")
@click.option("--classes", help="Class ids to scan, e.g. 0-9,12 (default: every class but the null).")
@click.option("--null-class", type=int, help="Null class index (default: the last embedding index).")
@click.option("--cond", type=click.Path(), help="Conditions: .npy/.npz/.safetensors/.pt tensor (key 'cond', optional 'null') or a folder of images.")
@click.option("--concat-order", default="after", show_default=True, help="Where a concatenated condition sits: after or before x_t.")
@click.option("--seeds", default=16, show_default=True, help="Initial noises per condition.")
@click.option("--seed", default=0, show_default=True, help="First seed; seeds are SEED, SEED+1, ...")
@click.option("--steps", default=25, show_default=True, help="DDIM steps.")
@click.option("--guidance", default="0,1,3,7.5", show_default=True, help="Guidance scales of the sweep (1 is always added).")
@click.option("--guidance-scale", default=1.0, show_default=True, help="Scale at which the collapse verdict is read.")
@click.option("--guidance-distilled", is_flag=True, help="The model is guidance-distilled (LCM, turbo): it has no null branch by design.")
@click.option("--batch-size", default=256, show_default=True, help="Network inputs per forward pass (conditional and null halves both count).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.option("--dtype", default="float32", show_default=True, help="float32, float16 or bfloat16 for the network.")
@click.option("--lpips/--no-lpips", default=True, show_default=True, help="Measure LPIPS when backbone weights are available offline.")
@click.option("--lpips-net", default="alex", show_default=True, help="LPIPS backbone: alex or vgg.")
@click.option("--lpips-weights", type=click.Path(), help="LPIPS backbone weights (torchvision state dict, .safetensors or .pth).")
@click.option("--threshold", "threshold_items", multiple=True, metavar="NAME=VALUE", help="Override a verdict threshold (repeatable).")
@click.option("--thresholds", "thresholds_file", type=click.Path(), help="Threshold overrides from a .json or .toml file.")
@click.option("--json", "json_path", type=click.Path(), help="Write the full result as JSON here.")
@click.option("--fail-on", default="collapsed", show_default=True, help="Gate: exit 1 when the scan is at least this bad: collapsed, at_risk, not_steerable or never.")
@click.option("--quiet", "-q", is_flag=True, help="No terminal report (errors still go to stderr).")
def scan(checkpoint: str, threshold_items: tuple, thresholds_file: Optional[str], json_path: Optional[str], fail_on: str,
         quiet: bool, guidance: str, **options) -> None:
    """Scan a checkpoint: sample seeds per condition, measure diversity and guidance, give a verdict.

    CHECKPOINT is a diffusers model folder, a folder holding unet/ (and scheduler/), or a .safetensors file.

    Exit codes: 0 gate passes, 1 gate fails (--fail-on), 2 usage or config error, 3 checkpoint cannot be loaded or evaluated.
    """
    with _errors_to_exit_codes():
        from .config import build_thresholds, make_config, parse_floats
        from .errors import check_choice

        check_choice("--fail-on", fail_on, FAIL_ON)
        config = make_config(
            checkpoint=checkpoint,
            guidance=parse_floats(guidance, "--guidance"),
            thresholds=build_thresholds(thresholds_file, threshold_items),
            **options,
        )
        if json_path:
            from .report_json import check_writable

            check_writable(json_path)

        from rich.console import Console

        from .report_json import write_json
        from .report_terminal import render
        from .scanner import gate, scan as run_scan

        progress, factory = _progress_factory(not quiet)
        if progress is not None:
            with progress:
                result = run_scan(config, factory)
        else:
            result = run_scan(config, None)
        passed = gate(result, fail_on)
        result.gate = {"fail_on": fail_on, "passed": passed}
        if json_path:
            write_json(result, json_path)
        if not quiet:
            render(result, Console())
        sys.exit(EXIT_PASS if passed else EXIT_GATE_FAILED)


def main() -> None:
    cli()


__all__ = ["cli", "main", "EXIT_USAGE", "EXIT_LOAD"]
