"""The command line: parse, build one config, call the library, render, map errors to exit codes.

Heavy imports (torch, diffusers) happen inside the commands so that ``--help`` is instant.
"""
from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Iterator, Optional

import click

from .errors import EXIT_GATE_FAILED, EXIT_LOAD, EXIT_PASS, EXIT_USAGE, CollapsecheckError
from .verdict.gate import FAIL_ON, gate_result


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


#: the options that decide what a scan computes, shared by ``scan`` and ``trend`` (same names, same meaning)
SCAN_SETTINGS = [
    click.option("--config", "model_config", type=click.Path(), help="Model config.json for a bare weights file."),
    click.option("--scheduler", type=click.Path(), help="Scheduler config (file or folder); default: the checkpoint's scheduler/."),
    click.option("--weights", default="auto", show_default=True, help="Which weights of a pipeline folder: auto, unet or unet_ema."),
    click.option("--prediction-type", help="Override the scheduler's prediction type: epsilon, v_prediction or sample."),
    click.option("--classes", help="Class ids to scan, e.g. 0-9,12 (default: every class but the null)."),
    click.option("--null-class", type=int, help="Null class index (default: the last embedding index)."),
    click.option("--cond", type=click.Path(), help="Conditions: .npy/.npz/.safetensors/.pt tensor (key 'cond', optional 'null') or a folder of images."),
    click.option("--prompts", type=click.Path(), help="Pipelines: a text file, one prompt per line, encoded by the pipeline's text encoder."),
    click.option("--negative-prompt", help="Pipelines: the null condition's text (default: the empty prompt)."),
    click.option("--base", type=click.Path(), help="A pipeline or UNet folder supplying what CHECKPOINT lacks: config, scheduler, VAE, text encoder; the weights a LoRA applies to."),
    click.option("--lora", type=click.Path(), help="LoRA weights (diffusers/peft or kohya .safetensors) applied to the UNet."),
    click.option("--lora-scale", default=1.0, show_default=True, help="Strength of the LoRA (0 = the base model)."),
    click.option("--controlnet-scale", default=1.0, show_default=True, help="ControlNets: the conditioning scale (recovery probes also try 0.8x and 0.5x)."),
    click.option("--model", metavar="MODULE:FUNCTION", help="Your own architecture: module:function or file.py:function returning a CustomModel (see README)."),
    click.option("--concat-order", default="after", show_default=True, help="Where a concatenated condition sits: after or before x_t."),
    click.option("--seeds", default=16, show_default=True, help="Initial noises per condition."),
    click.option("--seed", default=0, show_default=True, help="First seed; seeds are SEED, SEED+1, ..."),
    click.option("--steps", default=25, show_default=True, help="DDIM steps."),
    click.option("--guidance", default="0,1,3,7.5", show_default=True, help="Guidance scales of the sweep (1 is always added)."),
    click.option("--guidance-scale", default=1.0, show_default=True, help="Scale at which the collapse verdict is read."),
    click.option("--guidance-distilled", is_flag=True, help="The model is guidance-distilled (LCM, turbo): it has no null branch by design."),
    click.option("--batch-size", default=256, show_default=True, help="Network inputs per forward pass (conditional and null halves both count)."),
    click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda."),
    click.option("--dtype", default="float32", show_default=True, help="float32, float16 or bfloat16 for the network."),
    click.option("--lpips/--no-lpips", default=True, show_default=True, help="Measure LPIPS when backbone weights are available offline."),
    click.option("--lpips-net", default="alex", show_default=True, help="LPIPS backbone: alex or vgg."),
    click.option("--lpips-weights", type=click.Path(), help="LPIPS backbone weights (torchvision state dict, .safetensors or .pth)."),
    click.option("--mode", default="full", show_default=True, help="full, or fast: <= 8 seeds, <= 7 steps, w in {0, 1, 3}, no recovery or posterior probes (about 1/10 of the network evaluations)."),
    click.option("--recovery/--no-recovery", default=True, show_default=True, help="Try sampling-time fixes (lower w, interval guidance, CADS) when collapsed."),
    click.option("--posterior/--no-posterior", default=True, show_default=True, help="Measure the posterior variance by timestep (Tweedie; full mode)."),
    click.option("--adherence", metavar="MODULE:FUNCTION", help="Your adherence metric: module:function or file.py:function (see README)."),
    click.option("--threshold", "threshold_items", multiple=True, metavar="NAME=VALUE", help="Override a verdict threshold (repeatable)."),
    click.option("--thresholds", "thresholds_file", type=click.Path(), help="Threshold overrides from a .json or .toml file."),
]

FAIL_ON_HELP = "Gate: exit 1 when the scan is at least this bad: collapsed, at_risk, not_steerable or never."


def scan_settings(command):
    """Decorate a command with every scan-setting option, in the order --help lists them."""
    for option in reversed(SCAN_SETTINGS):
        command = option(command)
    return command


def gate_options(command):
    """--fail-on and --quiet, shared by scan, compare and trend."""
    command = click.option("--quiet", "-q", is_flag=True, help="No terminal report (errors still go to stderr).")(command)
    return click.option("--fail-on", default="collapsed", show_default=True, help=FAIL_ON_HELP)(command)


def _make_config(checkpoint: str, guidance: str, threshold_items: tuple, thresholds_file: Optional[str], options: dict):
    from .config import build_thresholds, make_config, parse_floats

    return make_config(
        checkpoint=checkpoint,
        guidance=parse_floats(guidance, "--guidance"),
        thresholds=build_thresholds(thresholds_file, threshold_items),
        **options,
    )


def _check_max_drop(max_drop: float) -> None:
    from .errors import UsageError

    if not 0 <= max_drop < 1:
        raise UsageError(f"--max-drop must be a fraction in [0, 1), e.g. 0.2 for 20%, but got {max_drop:g}")


@cli.command()
@click.argument("checkpoint", type=click.Path())
@scan_settings
@click.option("--json", "json_path", type=click.Path(), help="Write the full result as JSON here.")
@click.option("--report-dir", type=click.Path(), help="Write a report folder here: index.html, summary.md, scan.json, contact sheet and plots (PNG).")
@click.option("--junit", "junit_path", type=click.Path(), help="Write JUnit XML here: a testcase per condition and per check, failing as --fail-on says.")
@click.option("--baseline", type=click.Path(), help="A scan JSON to compare with: the gate also fails on a diversity drop or a worse verdict.")
@click.option("--max-drop", default=0.2, show_default=True, help="With --baseline: the largest allowed fall in diversity, as a fraction.")
@gate_options
def scan(checkpoint: str, threshold_items: tuple, thresholds_file: Optional[str], json_path: Optional[str],
         report_dir: Optional[str], junit_path: Optional[str], baseline: Optional[str], max_drop: float, fail_on: str,
         quiet: bool, guidance: str, **options) -> None:
    """Scan a checkpoint: sample seeds per condition, measure diversity and guidance, give a verdict.

    CHECKPOINT is a diffusers model folder, a folder holding unet/ (and scheduler/), or a .safetensors file.

    Under GitHub Actions (GITHUB_ACTIONS=true) it also appends a summary to $GITHUB_STEP_SUMMARY,
    prints one annotation per kind of finding and writes verdict, guidance and passed to $GITHUB_OUTPUT.

    Exit codes: 0 gate passes, 1 gate fails (--fail-on), 2 usage or config error, 3 checkpoint cannot be loaded or evaluated.
    """
    with _errors_to_exit_codes():
        from .errors import check_choice
        from .report.jsonfile import check_writable

        check_choice("--fail-on", fail_on, FAIL_ON)
        config = _make_config(checkpoint, guidance, threshold_items, thresholds_file, options)
        for path in (json_path, junit_path):
            if path:
                check_writable(path)
        if report_dir:
            from .report.folder import check_report_dir

            check_report_dir(report_dir)
        base = None
        if baseline:
            from .verdict.compare import load_result

            _check_max_drop(max_drop)
            base = load_result(baseline)

        from rich.console import Console

        from .report.terminal import render
        from .run import scan as run_scan

        progress, factory = _progress_factory(not quiet)
        if progress is not None:
            with progress:
                result = run_scan(config, factory)
        else:
            result = run_scan(config, None)
        result.gate = gate_result(result, fail_on)
        if base is not None:
            from .verdict.compare import compare as compare_results

            comparison = compare_results(base, result, max_drop, base_path=baseline, base_name=baseline,
                                         new_name="this scan")
            result.baseline = comparison.to_dict()
            result.gate = gate_result(result, fail_on, comparison.passed)
        passed = result.gate.passed
        _write_outputs(result, fail_on, passed, json_path, report_dir, junit_path)
        if not quiet:
            console = Console()
            render(result, console)
            if result.baseline is not None:
                from .report.tables import comparison_table

                console.print(comparison_table(result.baseline))
            if report_dir:
                console.print(f"report: {report_dir}/index.html", style="dim")
        sys.exit(EXIT_PASS if passed else EXIT_GATE_FAILED)


def _write_outputs(result, fail_on: str, passed: bool, json_path: Optional[str], report_dir: Optional[str],
                   junit_path: Optional[str]) -> None:
    """Every file the scan was asked for, and the GitHub Actions outputs when running there."""
    from .report.jsonfile import write_atomic, write_json

    if json_path:
        write_json(result, json_path)
    if report_dir:
        from .report.folder import write_report_dir

        write_report_dir(result, report_dir)
    if junit_path:
        from .report.junit import to_junit

        write_atomic(junit_path, to_junit(result, fail_on))
    from .report.github import github_actions, is_github_actions

    if is_github_actions():
        for line in github_actions(result, fail_on, passed):
            click.echo(line)


@cli.command("compare")
@click.argument("base_json", type=click.Path())
@click.argument("new_json", type=click.Path())
@click.option("--max-drop", default=0.2, show_default=True, help="The largest allowed fall in diversity, as a fraction of BASE.")
@click.option("--json", "json_path", type=click.Path(), help="Write the comparison as JSON here.")
@gate_options
def compare_command(base_json: str, new_json: str, max_drop: float, json_path: Optional[str], fail_on: str,
                    quiet: bool) -> None:
    """Compare two scan JSONs: fail when diversity fell or a verdict got worse (a regression gate).

    BASE_JSON and NEW_JSON are files written by scan --json (or scan.json of a --report-dir), of the
    same conditions. NEW must also pass --fail-on itself, as scan --baseline would.

    Exit codes: 0 passes, 1 regression (or NEW fails --fail-on), 2 unreadable JSON, wrong schema_version or different conditions.
    """
    with _errors_to_exit_codes():
        import json

        from .verdict.compare import compare as compare_results, load_result
        from .errors import check_choice
        from .report.jsonfile import _clean, check_writable, write_atomic

        check_choice("--fail-on", fail_on, FAIL_ON)
        _check_max_drop(max_drop)
        if json_path:
            check_writable(json_path)
        base, new = load_result(base_json), load_result(new_json)
        comparison = compare_results(base, new, max_drop, base_path=base_json, base_name=base_json, new_name=new_json)
        gate = gate_result(new, fail_on, comparison.passed)
        passed, verdict_passed = gate.passed, gate.verdict_passed
        record = {**comparison.to_dict(), "new": new_json, "gate": gate.to_dict()}
        if json_path:
            write_atomic(json_path, json.dumps(_clean(record), indent=2, allow_nan=False) + "\n")
        if not quiet:
            from rich.console import Console

            from .report.tables import comparison_table

            console = Console()
            console.print(comparison_table(comparison.to_dict()))
            for reason in comparison.regressions:
                console.print(f"  regression: {reason}", style="red")
            for note in comparison.notes:
                console.print(f"  note: {note}", style="dim")
            console.print(
                f"{new_json}: collapse {new['verdict']}, guidance {new['guidance']['verdict']} "
                f"(--fail-on {fail_on}: {'passes' if verdict_passed else 'fails'}); "
                f"gate: {'pass' if passed else 'FAIL'}",
                style="bold green" if passed else "bold red",
            )
        sys.exit(EXIT_PASS if passed else EXIT_GATE_FAILED)


@cli.command()
@click.argument("folder", type=click.Path())
@scan_settings
@click.option("--json", "json_path", type=click.Path(), help="Write every checkpoint's summary, the onset and the last full result as JSON here.")
@click.option("--plot", "plot_path", type=click.Path(), help="Draw diversity and eps ratio by step into this PNG.")
@click.option("--report-dir", type=click.Path(), help="Write trend.png, trend.json and trend.md into this folder.")
@click.option("--cache-dir", type=click.Path(), help="Where scan results are cached  [default: FOLDER/.collapsecheck-cache/]")
@click.option("--no-cache", is_flag=True, help="Neither read nor write cached scan results.")
@gate_options
def trend(folder: str, threshold_items: tuple, thresholds_file: Optional[str], json_path: Optional[str],
          plot_path: Optional[str], report_dir: Optional[str], cache_dir: Optional[str], no_cache: bool, fail_on: str,
          quiet: bool, guidance: str, **options) -> None:
    """Scan a run's checkpoints in step order with the same seeds and settings; say when collapse began.

    FOLDER holds checkpoint-N/ folders (diffusers training scripts) or weight files whose names carry a step
    or epoch number (model-step004000.safetensors, epoch_12.safetensors). Results are cached by checkpoint
    content and settings in --cache-dir.

    Exit codes: --fail-on applied to the last checkpoint: 0 passes, 1 fails; 2 usage error; 3 a checkpoint cannot be loaded.
    """
    with _errors_to_exit_codes():
        import json

        from .errors import check_choice
        from .report.jsonfile import _clean, check_writable, write_atomic
        from .trend import find_checkpoints, run_trend, trend_markdown

        check_choice("--fail-on", fail_on, FAIL_ON)
        config = _make_config(folder, guidance, threshold_items, thresholds_file, options)
        find_checkpoints(folder)  # a folder without checkpoints is a usage error before anything else
        for path in (json_path, plot_path):
            if path:
                check_writable(path)
        if report_dir:
            from .report.folder import check_report_dir

            check_report_dir(report_dir)

        from rich.console import Console

        err = Console(stderr=True)
        progress, factory = _progress_factory(not quiet)

        def on_checkpoint(i: int, total: int, ckpt, cached: bool) -> None:
            if not quiet and err.is_terminal:
                err.print(f"[{i + 1}/{total}] {ckpt.path.name}: {'cached' if cached else 'scanning'}", style="dim")

        cache = None if no_cache else (cache_dir or "default")
        if progress is not None:
            with progress:
                result = run_trend(folder, config, cache, progress=factory, on_checkpoint=on_checkpoint, fail_on=fail_on)
        else:
            result = run_trend(folder, config, cache, on_checkpoint=on_checkpoint, fail_on=fail_on)

        from .report.folder import png_bytes, write_bytes_atomic, write_files_atomically
        from .report.plots import trend_chart

        drop = result.largest_drop
        png = png_bytes(trend_chart(result.steps, result.onset, drop["step"] if drop else None, result.unit))
        text = json.dumps(_clean(result.to_dict()), indent=2, allow_nan=False) + "\n"
        if json_path:
            write_atomic(json_path, text)
        if plot_path:
            write_bytes_atomic(plot_path, png)
        if report_dir:
            write_files_atomically(report_dir, {"trend.png": png, "trend.json": text, "trend.md": trend_markdown(result)})
        if not quiet:
            from .report.tables import trend_table

            console = Console()
            console.print(trend_table(result))
            unit = result.unit
            if result.onset is not None:
                console.print(f"collapse began at {unit} {result.onset}: every checkpoint from there on is worse than healthy",
                              style="bold red")
            else:
                console.print("no collapse onset: the last checkpoint is healthy", style="bold green")
            if drop:
                rel = f" ({drop['relative']:.0%})" if drop.get("relative") is not None else ""
                console.print(f"largest diversity drop: mean pixel RMS {drop['before']:.3f} -> {drop['after']:.3f}{rel} "
                              f"between {unit} {drop['previous_step']} and {unit} {drop['step']}")
            cache_info = result.cache
            where = cache_info["folder"] or "off (--no-cache)"
            console.print(f"cache: {where}; {cache_info['hits']} of {len(result.steps)} results reused", style="dim")
            console.print(f"gate (--fail-on {fail_on}) on {result.gate['checkpoint']}: "
                          f"{'pass' if result.gate['passed'] else 'FAIL'}", style="dim")
        sys.exit(EXIT_PASS if result.gate["passed"] else EXIT_GATE_FAILED)


def main() -> None:
    cli()


__all__ = ["cli", "main", "EXIT_USAGE", "EXIT_LOAD"]
