"""The terminal renderer: the verdict first, then the numbers behind it, then what to do."""
from __future__ import annotations

from typing import Optional

from rich import box
from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ..result import ScanResult

STYLE = {
    "healthy": "bold green",
    "at_risk": "bold yellow",
    "collapsed": "bold red",
    "steerable": "bold green",
    "weak": "bold yellow",
    "not_steerable": "bold red",
    "learned": "green",
    "not_learned": "red",
    "unclear": "yellow",
    "absent_by_design": "cyan",
}
#: at most this many conditions are listed; the rest are summarised
MAX_ROWS = 24
SPARK = "▁▂▃▄▅▆▇█"


def _v(verdict: str) -> Text:
    return Text(verdict.replace("_", " "), style=STYLE.get(verdict, ""))


def _num(value: Optional[float], digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def sparkline(values: list[float]) -> str:
    if not values:
        return ""
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    return "".join(SPARK[min(len(SPARK) - 1, int((v - lo) / span * (len(SPARK) - 1) + 0.5))] for v in values)


def render(result: ScanResult, console: Console) -> None:
    """Print the whole report to ``console``."""
    g = result.guidance
    head = Text.assemble(
        ("collapse: ", "bold"), _v(result.verdict), ("    guidance: ", "bold"), _v(g.verdict),
        ("    null branch: ", "bold"), _v(g.null_branch.verdict),
    )
    ck = result.checkpoint
    sub = Text(
        f"{ck['source']}  ·  {ck['model_class']}, {ck['condition_kind']} conditions, {ck['prediction_type']}  ·  "
        f"{len(result.conditions)} conditions x {len(result.seeds)} seeds, verdict at w = {result.verdict_guidance_scale:g}",
        style="dim",
    )
    console.print(Panel(Group(head, sub), title="collapsecheck", box=box.ROUNDED, expand=True))

    table = Table(title="Seed diversity per condition (higher = more diverse; near-dup: share of seed pairs closer than near_duplicate_rms)", box=box.SIMPLE_HEAD)
    table.add_column("condition")
    table.add_column("verdict")
    table.add_column("pixel RMS", justify="right")
    table.add_column("pixel std", justify="right")
    table.add_column("near-dup", justify="right")
    table.add_column("LPIPS", justify="right")
    table.add_column("eps ratio", justify="right")
    order = sorted(result.conditions, key=lambda c: c.pixel_rms)
    for c in order[:MAX_ROWS]:
        table.add_row(
            c.label, _v(c.verdict), _num(c.pixel_rms), _num(c.pixel_std), f"{c.near_duplicates:.0%}", _num(c.lpips), _num(c.eps_ratio)
        )
    if len(order) > MAX_ROWS:
        table.caption = f"{len(order) - MAX_ROWS} more conditions (least diverse shown first); all are in --json"
    console.print(table)

    sweep = Table(title="Guidance sweep (w = 0: null branch alone; w = 1: conditional branch alone)", box=box.SIMPLE_HEAD)
    for col in ("w", "verdict", "pixel RMS", "seed share", "near-dup", "LPIPS", "adherence", "shift from w=1"):
        sweep.add_column(col, justify="right")
    for p in g.sweep:
        sweep.add_row(f"{p.w:g}", _v(p.verdict or ""), _num(p.pixel_rms), _num(p.seed_share), f"{p.near_duplicates:.0%}",
                      _num(p.lpips), _num(p.adherence, 2), _num(p.shift_from_w1))
    console.print(sweep)

    if g.recovery:
        rec = Table(title=f"Recovery probes: can sampling bring diversity back? (adherence: {g.adherence_metric or 'n/a'})",
                    box=box.SIMPLE_HEAD)
        for col in ("probe", "works", "verdict", "pixel RMS", "seed share", "adherence", "why"):
            rec.add_column(col, justify="left" if col in ("probe", "why", "works", "verdict") else "right")
        for p in g.recovery:
            style = {"yes": "bold green", "partly": "yellow", "no": "red"}.get(p.works, "dim")
            rec.add_row(p.name, Text(p.works, style=style), _v(p.verdict), _num(p.pixel_rms), _num(p.seed_share),
                        _num(p.adherence, 2), p.reason)
        console.print(rec)

    ratios = [p.eps_ratio for p in result.eps_profile]
    if ratios:
        console.print(
            Text.assemble(
                ("eps ratio ||eps_c - eps_null|| / ||eps_null|| by step (t high -> low): ", "bold"),
                sparkline(ratios), f"  {ratios[0]:.3g} -> {ratios[-1]:.3g}",
            )
        )
    if result.posterior_profile:
        parts = ", ".join(
            f"t={p.timestep} (alpha_bar {p.alpha_bar:.2f}): {p.posterior_var:.3g}" for p in result.posterior_profile
        )
        shares = ", ".join(f"{p.variance_share:.2f}" for p in result.posterior_profile)
        console.print(Text.assemble(("posterior variance Var[x0 | x_t] per pixel (Tweedie; ~0 = x0 already decided): ", "bold"), parts))
        console.print(f"  its share of the grid's variance (estimates the seed share): {shares}", style="dim")
    for probe in g.null_branch.probes:
        console.print(
            f"  null-branch probe t={probe.timestep:>4} (alpha_bar {probe.alpha_bar:.3f}): "
            f"centroid gap {probe.centroid_gap:.3f}, hull residual {probe.hull_residual:.3f}",
            style="dim",
        )

    console.print(Text("Why", style="bold underline"))
    for reason in result.reasons + g.reasons:
        console.print(f"  • {reason}")
    console.print(Text("What to do", style="bold underline"))
    for advice in result.recommendations:
        console.print(f"  → {advice}")

    notes = list(ck.get("notes", []))
    if not result.lpips.available:
        notes.append(f"LPIPS unavailable: {result.lpips.reason}; judged from the pixel measures")
    elif result.lpips.note:
        notes.append(f"LPIPS ({result.lpips.net}): {result.lpips.note}")
    notes.append(f"schedule: {ck['scheduler_source']}")
    for note in notes:
        console.print(f"  note: {note}", style="dim")
    gate = result.gate
    gate_text = "" if not gate else f"  ·  gate (--fail-on {gate.fail_on}): {'pass' if gate.passed else 'FAIL'}"
    console.print(
        f"{result.nfe:,} network evaluations in {result.seconds:.1f} s on {result.device}{gate_text}", style="dim"
    )
