"""The command line: parse, build one config, call the library, render, map errors to exit codes.

Heavy imports (torch, diffusers, rich) happen inside the commands so that ``--help`` is instant.
Options and their help sections live in :mod:`.options` and :mod:`.help`; output paths in :mod:`.outputs`.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Optional

import click

from ..config import FAIL_ON
from ..errors import EXIT_GATE_FAILED, EXIT_INTERNAL, EXIT_LOAD, EXIT_OUT_OF_MEMORY, EXIT_PASS, EXIT_USAGE
from .exits import exit_codes
from .examples import EXAMPLES
from .help import SectionedCommand, option
from .options import gate_options, hub_options, max_regression_percent, regression_options, scan_settings
from .outputs import check_output_file, check_output_folder, parent_folders, write_file, write_folder


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


def _with_progress(quiet: bool, run):
    """``run(progress_factory)`` under a progress bar on stderr (none when quiet or not a terminal)."""
    progress, factory = _progress_factory(not quiet)
    if progress is None:
        return run(None)
    with progress:
        return run(factory)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="collapsecheck")
def cli() -> None:
    """Catch conditional diffusion models that have collapsed into deterministic decoders."""


def _make_config(checkpoint: str, guidance: str, threshold_items: tuple, thresholds_file: Optional[str], options: dict):
    from ..config import build_thresholds, options_config as make_config, parse_floats

    return make_config(
        checkpoint=checkpoint,
        guidance=parse_floats(guidance, "--guidance"),
        thresholds=build_thresholds(thresholds_file, threshold_items),
        **options,
    )


def _check_outputs(files: dict, folders: dict) -> None:
    """Every output path (flag -> path, None when not asked for) can be written; before any heavy work."""
    for flag, path in files.items():
        if path:
            check_output_file(path, flag)
    for flag, path in folders.items():
        if path:
            check_output_folder(path, flag)


@cli.command(cls=SectionedCommand, examples=EXAMPLES["scan"])
@click.argument("checkpoint", type=click.Path())
@scan_settings
@hub_options
@option("outputs", "--json", "json_path", type=click.Path(), help="Write the full result as JSON here.")
@option("outputs", "--report-dir", type=click.Path(), help="Write a report folder here: index.html, summary.md, scan.json, contact sheet and plots (PNG).")
@option("outputs", "--junit", "junit_path", type=click.Path(), help="Write JUnit XML here: a testcase per condition and per check, failing as --fail-on says.")
@option("outputs", "--resume", type=click.Path(), metavar="DIR", help="Save each unit of work in DIR as it finishes; a scan killed and run again with the same DIR picks up where it stopped (see docs/scale.md).")
@option("outputs", "--profile", is_flag=True, help="Time every stage of the scan (load, sampling, eps statistics, null-branch probe, posterior, decoding, measures, LPIPS, verdicts, reports): a table after the report, and the result's profile field.")
@option("sampling", "--dry-run", is_flag=True, help="Print the network evaluations (NFE) the scan will spend, the memory one batch needs and a time estimate from one timed batch, then exit 0 without sampling or a verdict.")
@option("gate", "--baseline", type=click.Path(), help="A scan JSON to compare with: the gate also fails on a diversity drop (--max-regression) or a worse verdict.")
@regression_options
@gate_options
def scan(checkpoint: str, threshold_items: tuple, thresholds_file: Optional[str], json_path: Optional[str],
         report_dir: Optional[str], junit_path: Optional[str], baseline: Optional[str], max_regression: Optional[float],
         max_drop: Optional[float], fail_on: str, quiet: bool, guidance: str, dry_run: bool, **options) -> None:
    """Scan a checkpoint: sample seeds per condition, measure diversity and guidance, give a verdict.

    CHECKPOINT is a diffusers model folder, a folder holding unet/ (and scheduler/), or a .safetensors file;
    or a Hugging Face hub id (org/name) already in the local HF cache, at --revision (never downloaded).

    Output paths may lie in folders that do not exist yet (e.g. --junit DIR/junit.xml with --report-dir DIR):
    they are made when the files are written.

    Under GitHub Actions (GITHUB_ACTIONS=true) it also appends a summary to $GITHUB_STEP_SUMMARY,
    prints one annotation per kind of finding and writes verdict, guidance and passed to $GITHUB_OUTPUT.

    Exit codes: 0 gate passes, 1 gate fails (--fail-on, --max-regression), 2 usage or input error, 3 checkpoint
    cannot be loaded or evaluated (its own forward or decoder raising included), 4 out of memory (try a smaller
    --batch-size), 5 internal error of collapsecheck (with a traceback to report). --dry-run exits 0 after its
    estimate (or with the code of what stopped it: 2, 3, 4).
    """
    with exit_codes(options.get("batch_size")):
        from .ranks import finish, ranks, world_from_env

        world, resume = world_from_env(), options.pop("resume")
        config = _make_config(checkpoint, guidance, threshold_items, thresholds_file, options)
        if dry_run:
            _print_dry_run(config)
            sys.exit(EXIT_PASS)
        if world.root:
            _check_outputs({"--json": json_path, "--junit": junit_path}, {"--report-dir": report_dir})
        pct = max_regression_percent(max_regression, max_drop)
        base = _load_baseline(baseline) if world.root else None

        from ..run import scan as run_scan

        # the library's defaults (one process, no saved state) are left unnamed: scan(config, progress)
        extra = {**({"world": world} if world.distributed else {}), **({"resume": resume} if resume else {})}
        with ranks(world, config.device):
            result = _with_progress(quiet or not world.root, lambda progress: run_scan(config, progress, **extra))

            def write_and_gate() -> int:
                started = time.perf_counter()
                passed = _apply_gate(result, fail_on, base, baseline, pct)
                _write_outputs(result, fail_on, passed, json_path, report_dir, junit_path)
                if not quiet:
                    _print_scan(result, report_dir)
                if result.profile is not None:  # after the report; the JSON holds the scan's own stages
                    _print_profile(result.profile, time.perf_counter() - started)
                return EXIT_PASS if passed else EXIT_GATE_FAILED

            finish(world, write_and_gate)


def _print_dry_run(config) -> None:
    """--dry-run: the scan's cost, one line each, on stdout."""
    from ..dryrun import dry_run

    plan = dry_run(config)
    mb = plan.memory_bytes / 2 ** 20
    how = ("measured: torch.cuda.max_memory_allocated over one batch" if plan.memory_method == "measured"
           else "estimated: weights + every layer's output for one batch, an upper bound")
    lines = [f"dry run on {plan.device}: nothing sampled, no verdict",
             f"conditions: {plan.conditions} ({plan.condition_source}), seeds: {config.seeds}, steps: {config.steps}",
             *(f"NFE {stage}: {n:,}" for stage, n in plan.nfe.items()),
             f"NFE in all (recovery probes included): {plan.total_nfe:,}",
             f"memory for a batch of {plan.batch_size}: {mb:,.1f} MiB ({how})",
             f"time: {plan.seconds_per_batch:.3f} s per batch of {plan.batch_size} -> about {plan.seconds:,.0f} s "
             "for the network (decoding, LPIPS and the measures come on top)"]
    click.echo("\n".join(lines))


def _load_baseline(baseline: Optional[str]) -> Optional[dict]:
    """The --baseline scan JSON, read before the scan so that a bad file fails fast."""
    if not baseline:
        return None
    from ..verdict.compare import load_result

    return load_result(baseline)


def _apply_gate(result, fail_on: str, base: Optional[dict], baseline: Optional[str], pct: float) -> bool:
    """Whether the scan passes --fail-on (and the --baseline comparison); recorded in ``result.gate``."""
    from ..verdict.gate import gate_result

    if base is None:
        result.gate = gate_result(result, fail_on)
        return result.gate.passed
    from ..verdict.compare import compare as compare_results

    comparison = compare_results(base, result, pct / 100, base_path=baseline, base_name=baseline, new_name="this scan")
    result.baseline = comparison.to_dict()
    result.gate = gate_result(result, fail_on, comparison.passed, pct)
    return result.gate.passed


def _print_scan(result, report_dir: Optional[str]) -> None:
    from rich.console import Console

    from ..report.terminal import render

    console = Console()
    render(result, console)
    if result.baseline is not None:
        from ..report.tables import comparison_table

        console.print(comparison_table(result.baseline))
    if report_dir:
        console.print(f"report: {os.path.join(report_dir, 'index.html')}", style="dim")


def _print_profile(profile, reports_seconds: float) -> None:
    from rich.console import Console

    from ..report.tables import profile_table

    Console().print(profile_table(profile, reports_seconds))


def _write_outputs(result, fail_on: str, passed: bool, json_path: Optional[str], report_dir: Optional[str],
                   junit_path: Optional[str]) -> None:
    """Every file the scan was asked for, and the GitHub Actions outputs when running there."""
    if json_path:
        from ..report.jsonfile import to_json

        write_file(json_path, to_json(result))
    if report_dir:
        from ..report.folder import write_report_dir

        with parent_folders(report_dir):
            write_report_dir(result, report_dir)
    if junit_path:
        from ..report.junit import to_junit

        write_file(junit_path, to_junit(result, fail_on))
    from ..report.github import github_actions, is_github_actions

    if is_github_actions():
        for line in github_actions(result, fail_on, passed):
            click.echo(line)


@cli.command("compare", cls=SectionedCommand, examples=EXAMPLES["compare"])
@click.argument("base_json", type=click.Path())
@click.argument("new_json", type=click.Path())
@regression_options
@option("outputs", "--json", "json_path", type=click.Path(), help="Write the comparison as JSON here.")
@gate_options
def compare_command(base_json: str, new_json: str, max_regression: Optional[float], max_drop: Optional[float],
                    json_path: Optional[str], fail_on: str, quiet: bool) -> None:
    """Compare two scan JSONs: fail when diversity fell or a verdict got worse (a regression gate).

    BASE_JSON and NEW_JSON are files written by scan --json (or scan.json of a --report-dir), of the
    same conditions. NEW must also pass --fail-on itself, as scan --baseline would.

    Exit codes: 0 passes, 1 regression (or NEW fails --fail-on), 2 unreadable JSON, wrong schema_version or
    different conditions, 5 internal error of collapsecheck.
    """
    with exit_codes():
        from ..report.jsonfile import dumps
        from ..verdict.compare import compare as compare_results, load_result
        from ..verdict.gate import gate_result

        pct = max_regression_percent(max_regression, max_drop)
        _check_outputs({"--json": json_path}, {})
        base, new = load_result(base_json), load_result(new_json)
        comparison = compare_results(base, new, pct / 100, base_path=base_json, base_name=base_json, new_name=new_json)
        gate = gate_result(new, fail_on, comparison.passed, pct)
        record = {**comparison.to_dict(), "new": new_json, "gate": gate.to_dict()}
        if json_path:
            write_file(json_path, dumps(record))
        if not quiet:
            _print_comparison(comparison, new, new_json, gate)
        sys.exit(EXIT_PASS if gate.passed else EXIT_GATE_FAILED)


def _print_comparison(comparison, new: dict, new_json: str, gate) -> None:
    from rich.console import Console

    from ..report.tables import comparison_table

    console = Console()
    console.print(comparison_table(comparison.to_dict()))
    for reason in comparison.regressions:
        console.print(f"  regression: {reason}", style="red")
    for note in comparison.notes:
        console.print(f"  note: {note}", style="dim")
    from ..verdict.gate import failure_lines

    console.print(
        f"{new_json}: collapse {new['verdict']}, guidance {new['guidance']['verdict']} "
        f"(--fail-on {gate.fail_on}: {'passes' if gate.verdict_passed else 'fails'}); "
        f"gate: {'pass' if gate.passed else 'FAIL'}",
        style="bold green" if gate.passed else "bold red",
    )
    for line in failure_lines(gate):
        console.print(f"  failed: {line}", style="red")


@cli.command(cls=SectionedCommand, examples=EXAMPLES["trend"])
@click.argument("folder", type=click.Path())
@scan_settings
@option("outputs", "--json", "json_path", type=click.Path(), help="Write every checkpoint's summary, the onset and the last full result as JSON here.")
@option("outputs", "--plot", "plot_path", type=click.Path(), help="Draw diversity and eps ratio by step into this PNG.")
@option("outputs", "--report-dir", type=click.Path(), help="Write trend.png, trend.json and trend.md into this folder.")
@option("outputs", "--cache-dir", type=click.Path(), help="Where scan results are cached  [default: FOLDER/.collapsecheck-cache/]")
@option("outputs", "--no-cache", is_flag=True, help="Neither read nor write cached scan results.")
@option("outputs", "--resume", type=click.Path(), metavar="DIR", help="The scans' --resume folder: work saved there by earlier scans of these checkpoints is read back, and new work saved (see docs/scale.md).")
@gate_options
def trend(folder: str, threshold_items: tuple, thresholds_file: Optional[str], json_path: Optional[str],
          plot_path: Optional[str], report_dir: Optional[str], cache_dir: Optional[str], no_cache: bool,
          resume: Optional[str], fail_on: str, quiet: bool, guidance: str, **options) -> None:
    """Scan a run's checkpoints in step order with the same seeds and settings; say when collapse began.

    FOLDER holds checkpoint-N/ folders (diffusers training scripts) or weight files whose names carry a step
    or epoch number (model-step004000.safetensors, epoch_12.safetensors). Results are cached by checkpoint
    content and settings in --cache-dir.

    Exit codes: --fail-on applied to the last checkpoint: 0 passes, 1 fails; 2 usage error; 3 a checkpoint cannot be
    loaded or evaluated; 4 out of memory; 5 internal error of collapsecheck.
    """
    with exit_codes(options.get("batch_size")):
        from ..trend import find_checkpoints, run_trend
        from .ranks import finish, ranks, world_from_env

        world = world_from_env()
        config = _make_config(folder, guidance, threshold_items, thresholds_file, options)
        find_checkpoints(folder)  # a folder without checkpoints is a usage error before anything else
        _check_outputs({"--json": json_path, "--plot": plot_path},
                       {"--report-dir": report_dir, "--cache-dir": None if no_cache else cache_dir})
        on_checkpoint = _checkpoint_notice(quiet)
        cache = None if no_cache else (cache_dir or "default")
        with ranks(world, config.device):
            result = _with_progress(quiet or not world.root, lambda progress: run_trend(
                folder, config, cache, progress=progress, on_checkpoint=on_checkpoint, fail_on=fail_on, world=world,
                resume=resume))

            def write_and_gate() -> int:
                _write_trend(result, json_path, plot_path, report_dir)
                if not quiet:
                    _print_trend(result, fail_on)
                return EXIT_PASS if result.gate["passed"] else EXIT_GATE_FAILED

            finish(world, write_and_gate)


def _checkpoint_notice(quiet: bool):
    """``on_checkpoint(i, total, checkpoint, cached)``: one dim line per checkpoint on a terminal's stderr."""
    from rich.console import Console

    err = Console(stderr=True)

    def on_checkpoint(i: int, total: int, ckpt, cached: bool) -> None:
        if not quiet and err.is_terminal:
            err.print(f"[{i + 1}/{total}] {ckpt.path.name}: {'cached' if cached else 'scanning'}", style="dim")

    return on_checkpoint


def _write_trend(result, json_path: Optional[str], plot_path: Optional[str], report_dir: Optional[str]) -> None:
    """The trend's JSON, chart and report folder, each written atomically."""

    from ..report.folder import png_bytes
    from ..report.jsonfile import dumps
    from ..report.plots import trend_chart
    from ..trend import trend_markdown

    drop = result.largest_drop
    png = png_bytes(trend_chart(result.steps, result.onset, drop["step"] if drop else None, result.unit))
    text = dumps(result.to_dict())
    if json_path:
        write_file(json_path, text)
    if plot_path:
        write_file(plot_path, png)
    if report_dir:
        write_folder(report_dir, {"trend.png": png, "trend.json": text, "trend.md": trend_markdown(result)})


def _print_trend(result, fail_on: str) -> None:
    from rich.console import Console

    from ..report.tables import trend_table

    console = Console()
    console.print(trend_table(result))
    unit, drop = result.unit, result.largest_drop
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


def main() -> None:
    cli()


__all__ = ["cli", "main", "FAIL_ON", "EXIT_USAGE", "EXIT_LOAD", "EXIT_OUT_OF_MEMORY", "EXIT_INTERNAL"]
