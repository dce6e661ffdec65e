"""The terminal renderer: the verdict first, then the numbers behind it, then what to do.

Fits an 80-column terminal: numeric headers are two lines ("pixel" over "RMS"), long text (reasons,
evidence, notes) goes on lines of its own under the tables, with a hanging indent. The number that
decided each verdict (``decided_by``) is marked with * in the tables and spelled out under them.
"""
from __future__ import annotations

from typing import Iterable, Optional

from rich import box
from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ..measures import interval_text
from ..result import ScanResult
from .evidence import deciding_measures, decided_by, evidence_text
from .style import WORKS_LEVELS, LEVEL_COLOURS, verdict_rich, w_meaning
from .witnesses import print_sections

#: at most this many conditions are listed; the rest are summarised
MAX_ROWS = 24
SPARK = "▁▂▃▄▅▆▇█"
#: the widest a line's lead (a condition label, a probe name) may be before it wraps
LEAD_WIDTH = 24
#: marks a number that decided its row's verdict
DECIDING = "*"


def _v(verdict: Optional[str]) -> Text:
    return Text("n/a" if verdict is None else verdict.replace("_", " "), style=verdict_rich(verdict))


def _num(value: Optional[float], digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _cell(text: str, deciding: bool) -> Text:
    """A number, marked with * and emphasised when it decided the verdict of its row."""
    return Text(text + DECIDING, style="bold underline") if deciding else Text(text + " ")


def sparkline(values: list[float]) -> str:
    if not values:
        return ""
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    return "".join(SPARK[min(len(SPARK) - 1, int((v - lo) / span * (len(SPARK) - 1) + 0.5))] for v in values)


def _table(title: str, columns: Iterable[tuple[str, str]]) -> Table:
    """A compact table: (header, justify) columns; numeric columns never wrap or fold."""
    table = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left", caption_justify="left", padding=(0, 1),
                  pad_edge=False)
    for header, justify in columns:
        table.add_column(header, justify=justify, no_wrap=justify == "right" or header == "verdict", overflow="fold")
    return table


def hanging(items: Iterable[tuple[str, str]], style: str = "") -> Table:
    """(lead, text) lines with a hanging indent: wrapped text lines up under its first word."""
    grid = Table.grid(padding=(0, 1))
    grid.add_column(max_width=LEAD_WIDTH, overflow="fold")
    grid.add_column(overflow="fold")
    for lead, text in items:
        grid.add_row(Text(lead, style=style), Text(text, style=style))
    return grid


def _headline(result: ScanResult) -> Panel:
    g, ck = result.guidance, result.checkpoint
    head = Text.assemble(("collapse: ", "bold"), _v(result.verdict), ("   guidance: ", "bold"), _v(g.verdict),
                         ("   null branch: ", "bold"), _v(g.null_branch.verdict))
    sub = Text(f"{ck['source']}  ·  {ck['model_class']}, {ck['condition_kind']} conditions, {ck['prediction_type']}  ·  "
               f"{len(result.conditions)} conditions x {len(result.seeds)} seeds, verdict at w = "
               f"{result.verdict_guidance_scale:g}", style="dim")
    evidence = [(f"{name}:", evidence_text(item)) for name, item in
                (("collapse", result), ("guidance", g), ("null branch", g.null_branch)) if decided_by(item)]
    parts = [head, sub] + ([Text("decided by", style="bold"), hanging(evidence)] if evidence else [])
    return Panel(Group(*parts), title="collapsecheck", box=box.ROUNDED, expand=True)


#: per-condition columns: (header, ConditionResult field)
CONDITION_COLUMNS = (("pixel\nRMS", "pixel_rms"), ("pixel\nstd", "pixel_std"), ("near-\ndup", "near_duplicates"),
                     ("seed\nshare", "seed_share"), ("LPIPS", "lpips"), ("eps\nratio", "eps_ratio"))


def _condition_value(cond, key: str) -> str:
    value = getattr(cond, key, None)
    if key == "near_duplicates":
        stderr = getattr(cond, "near_duplicates_stderr", None)
        if value is None:
            return "n/a"
        return f"{value:.0%}" if stderr is None else f"{100 * value:.0f}±{100 * stderr:.0f}%"
    return _num(value)


def condition_table(result: ScanResult) -> tuple[Table, Optional[Table]]:
    """The per-condition table (least diverse first) and the evidence lines under it (None without evidence)."""
    table = _table("Seed diversity per condition, least diverse first",
                   [("condition", "left"), ("verdict", "left")] + [(h, "right") for h, _ in CONDITION_COLUMNS])
    order = sorted(result.conditions, key=lambda c: c.pixel_rms)
    evidence = []
    for c in order[:MAX_ROWS]:
        deciding = deciding_measures(c)
        table.add_row(c.label, _v(c.verdict), *(_cell(_condition_value(c, k), k in deciding) for _, k in CONDITION_COLUMNS))
        if decided_by(c):
            evidence.append((f"{c.label}:", evidence_text(c)))
    caption = ["higher = more diverse, but near-dup (share of seed pairs closer than near_duplicate_rms, ± its "
               "jackknife standard error over the seeds): higher = less diverse; eps ratio: higher = the condition pulls harder."]
    if evidence:
        caption.append(f"{DECIDING} the number that decided the verdict:")
    if len(order) > MAX_ROWS:
        caption.insert(0, f"{len(order) - MAX_ROWS} more conditions (least diverse shown first); all are in --json.")
    table.caption = " ".join(caption)
    return table, (hanging(evidence) if evidence else None)


def sweep_table(result: ScanResult) -> Table:
    """The sweep's means per w; near duplicates and the built-in nearest-centroid adherence (relative to w = 1 by
    construction) only in --json, the --adherence plug-in's column when one was given."""
    g = result.guidance
    plugin = g.adherence_metric is not None and not g.adherence_metric.endswith("(built-in)")
    columns = [("w", "right"), ("verdict", "left"), ("pixel\nRMS", "right"), ("seed\nshare", "right"),
               ("LPIPS", "right")] + ([("adher-\nence", "right")] if plugin else []) + \
              [("shift\nfrom w=1", "right"), ("model's\nadherence", "right"), ("break\nratio", "right")]
    table = _table("Guidance sweep, means over conditions", columns)
    for p in g.sweep:
        cells = [f"{p.w:g}", _v(p.verdict), _num(p.pixel_rms), _num(p.seed_share), _num(p.lpips)] + ([_num(p.adherence, 2)] if plugin else []) + \
                [_num(p.shift_from_w1), _num(p.implicit_adherence, 2), _num(p.break_ratio, 2)]
        table.add_row(*cells)
    chance = f" (chance {g.adherence_chance:.2f})" if g.adherence_chance is not None else ""
    table.caption = (w_meaning(getattr(g, "kind", "cfg")) + " verdict: the collapse "
                     f"verdict the samples at that w would get. model's adherence: its implicit classifier{chance}, "
                     "higher = more adherent; break ratio: its denoising error vs w = 1, higher = off the data.")
    return table


def recovery_table(result: ScanResult) -> Optional[Group]:
    """Short columns, then each probe's reason on a line of its own; None when no probe ran."""
    g = result.guidance
    if not g.recovery:
        return None
    table = _table("Recovery probes: can sampling bring diversity back?",
                   [("probe", "left"), ("works", "left"), ("verdict", "left"), ("pixel\nRMS", "right"),
                    ("seed\nshare", "right"), ("adher-\nence", "right")])
    for p in g.recovery:
        colour = LEVEL_COLOURS.get(WORKS_LEVELS.get(p.works, ""), "")
        table.add_row(p.name, Text(p.works.replace("_", " "), style=f"bold {colour}" if colour else "dim"), _v(p.verdict),
                      _num(p.pixel_rms), _num(p.seed_share), _num(p.adherence, 2))
    table.caption = f"adherence: {g.adherence_metric or 'n/a'}. Why each probe works or not:"
    return Group(table, hanging([(f"{p.name}:", p.reason) for p in g.recovery]))


def lpips_lines(result: ScanResult) -> list[tuple[str, str]]:
    """Which LPIPS weights were used, or why there are none; and LPIPS's note."""
    lp = result.lpips
    if not lp.available:
        return [("LPIPS:", f"not measured: {lp.reason or 'no reason recorded'}; judged from the pixel measures")]
    lines = [("LPIPS:", f"{lp.net or '?'} net; weights: {lp.source or 'source not recorded'}")]
    return lines + ([("note:", f"LPIPS: {lp.note}")] if lp.note else [])


def with_error(value: float, stderr: Optional[float]) -> str:
    """``0.12 +- 0.03``: a stochastic estimate with its standard error (the value alone when none is recorded)."""
    return f"{value:.3g}" if stderr is None else f"{value:.3g} +- {stderr:.2g}"


def _profiles(result: ScanResult, console: Console) -> None:
    ratios = [p.eps_ratio for p in result.eps_profile]
    if ratios:
        console.print(Text("eps ratio ||eps_c - eps_null|| / ||eps_null|| by step (t high -> low):", style="bold"))
        console.print(f"  {sparkline(ratios)}  {ratios[0]:.3g} -> {ratios[-1]:.3g}")
    if result.posterior_profile:
        console.print(Text("posterior variance Var[x0 | x_t] per pixel (Tweedie; ~0 = x0 already decided):", style="bold"))
        console.print(hanging([(f"t={p.timestep}", f"alpha_bar {p.alpha_bar:.2f}: variance {with_error(p.posterior_var, p.posterior_var_stderr)}, "
                                f"share {p.variance_share:.2f}" + (f"; {p.posterior_note}" if p.posterior_note else ""))
                               for p in result.posterior_profile]))
        console.print("  share: its share of the grid's variance (estimates the seed share)", style="dim")
    null = result.guidance.null_branch
    if null.null_ratio is not None:
        console.print(Text("null ratio (err_null - err_own) / (err_wrong - err_own) on the w = 1 samples "
                           "(< 1: a learned null branch):", style="bold"))
        console.print(f"  {null.null_ratio:.3g}, 95% interval {interval_text(null.null_ratio_low, null.null_ratio_high)}"
                      f" over {null.null_samples} samples")
    if null.null_spread is not None:
        console.print(Text("null spread: the w = 0 samples' seed variance over the w = 1 grid's (higher = more "
                           "varied; about 1: the marginal):", style="bold"))
        console.print(f"  {null.null_spread:.3g}")
    if null.null_coverage is not None:
        console.print(Text("null coverage: how evenly the implicit classifier assigns the null's own w = 0 samples "
                           "to the conditions (normalized entropy; 1: even, 0: one condition):", style="bold"))
        console.print(f"  {null.null_coverage:.3g}, 95% interval [{null.null_coverage_low:.3g}, "
                      f"{null.null_coverage_high:.3g}] over {null.null_coverage_samples} samples, largest share "
                      f"{null.null_coverage_largest:.0%}")
    if null.null_data_share is not None:
        console.print(Text("null against the data (--data-images): the w = 0 samples' seed variance over the data "
                           "images' variance (higher = more varied; about 1: as varied as the data):", style="bold"))
        console.print(f"  {null.null_data_share:.3g}")
    probes = null.probes
    if probes:
        console.print(Text("null-branch probes (centroid gap, hull residual: lower = a learned null branch):", style="bold"))
        console.print(hanging([(f"t={p.timestep}", f"alpha_bar {p.alpha_bar:.3f}: gap {p.centroid_gap:.3f}, "
                                f"residual {p.hull_residual:.3f}") for p in probes], style="dim"))


def _closing(result: ScanResult, console: Console) -> None:
    g, ck = result.guidance, result.checkpoint
    console.print(Text("Why", style="bold underline"))
    console.print(hanging([("  •", r) for r in result.reasons + g.reasons]))
    console.print(Text("What to do", style="bold underline"))
    console.print(hanging([("  →", a) for a in result.recommendations]))
    notes = lpips_lines(result) + [("note:", n) for n in ck.get("notes", [])]
    notes.append(("note:", f"schedule: {ck['scheduler_source']}; sampler: {(result.config or {}).get('sampler', 'ddim')}"))
    console.print(hanging(notes, style="dim"))
    gate = result.gate
    gate_text = "" if not gate else f"  ·  gate (--fail-on {gate.fail_on}): " + (
        "pass" if gate.passed else f"FAIL on {', '.join(gate.failed)}")
    console.print(f"{result.nfe:,} network evaluations in {result.seconds:.1f} s on {result.device}{gate_text}", style="dim")


def range_warning(result: ScanResult) -> Optional[str]:
    """The visible warning when the verdicts rest on samples outside the data range; None otherwise."""
    r = result.sample_range
    if r is None or r.reliable:
        return None
    return (f"WARNING: the verdicts are unreliable: the {r.sampler} samples leave the data range [-1, 1] "
            f"({r.outside_share:.1%} of values far outside, variance {r.variance:.3g}, largest |x| {r.max_abs:.3g})")


def render(result: ScanResult, console: Console) -> None:
    """Print the whole report to ``console``."""
    console.print(_headline(result))
    warning = range_warning(result)
    if warning:
        console.print(Text(warning, style="bold red"))
    table, evidence = condition_table(result)
    console.print(table)
    if evidence is not None:
        console.print(evidence)
    console.print()
    console.print(sweep_table(result))
    recovery = recovery_table(result)
    if recovery is not None:
        console.print()
        console.print(recovery)
    print_sections(result, console)  # --reference, --train-images, --features
    console.print()
    _profiles(result, console)
    _closing(result, console)
