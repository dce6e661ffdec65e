"""Terminal tables for a baseline comparison, a checkpoint trend and a scan's time profile (rich renderables;
printing is the CLI's job)."""
from __future__ import annotations

from rich import box
from rich.table import Table
from rich.text import Text

from .markdown import MAX_ROWS, baseline_rows, fmt, word
from .style import verdict_rich


def _v(verdict) -> Text:
    return Text(word(verdict), style=verdict_rich(verdict))


def comparison_table(comparison: dict, max_rows: int = MAX_ROWS) -> Table:
    """Before / after / change, regressions first. ``comparison``: ``Comparison.to_dict()``."""
    passed = comparison.get("passed")
    title = (f"Compared with the baseline {comparison.get('path') or comparison.get('checkpoint') or ''}: "
             f"{'no regression' if passed else 'REGRESSION'} (--max-drop {comparison.get('max_drop', 0):.0%}; "
             "diversity: higher = more diverse)")
    table = Table(title=title, box=box.SIMPLE_HEAD, title_style="bold green" if passed else "bold red")
    for col, justify in (("condition", "left"), ("measure", "left"), ("before", "right"), ("after", "right"),
                         ("change", "right"), ("", "left")):
        table.add_column(col, justify=justify)
    rows = baseline_rows(comparison, max_rows)
    for row in rows:
        style = "red" if row[-1] == "REGRESSION" else ""
        table.add_row(*row[:-1], Text(row[-1], style="bold red" if style else "green"))
    total = len(comparison.get("changes") or [])
    if total > len(rows):
        table.caption = f"{total - len(rows)} more rows (smallest changes); all are in --json"
    return table


def trend_table(trend) -> Table:
    """A row per checkpoint. ``trend``: a TrendResult."""
    unit = trend.unit
    table = Table(title=f"Checkpoint trend of {trend.folder}", box=box.SIMPLE_HEAD, padding=(0, 0), pad_edge=False,
                  caption="pixel RMS, seed share, LPIPS: means over conditions, higher = more diverse; "
                          "eps ratio: higher = the condition pulls harder", caption_justify="left")
    for col, right in ((unit, True), ("verdict", False), ("pixel RMS", True), ("seed share", True), ("LPIPS", True),
                       ("eps ratio", True), ("null branch", False), ("guidance", False), ("", False)):
        table.add_column(col, justify="right" if right else "left", no_wrap=not right or col == unit)
    for r in trend.steps:
        mark = []
        if r["step"] == trend.onset:
            mark.append("onset")
        if trend.largest_drop and r["step"] == trend.largest_drop["step"]:
            mark.append("drop")
        if r["cached"]:
            mark.append("cached")
        table.add_row(str(r["step"]), _v(r["verdict"]), fmt(r["pixel_rms"]), fmt(r["seed_share"]), fmt(r["lpips"]),
                      fmt(r["eps_ratio"]), _v(r["null_branch"]), _v(r["guidance"]), ", ".join(mark))
    return table


def profile_table(profile, reports_seconds=None) -> Table:
    """Seconds and network evaluations per stage of a scan (``--profile``). ``profile``: a TimeProfile;
    ``reports_seconds``: the time the command line took to write and print the reports, after the scan."""
    total = profile.total_seconds + (reports_seconds or 0.0)
    nfe = sum(s.nfe for s in profile.stages)
    sync = "device synchronised before each reading" if profile.synchronized else "wall clock (time.perf_counter)"
    table = Table(title="Where the scan's time went (--profile)", box=box.SIMPLE_HEAD,
                  caption=f"each stage's own seconds ({sync}); stages inside another are counted apart; "
                          "ms/NFE: the stage's seconds per network evaluation", caption_justify="left")
    for col in ("stage", "seconds", "share", "NFE", "ms/NFE"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    rows = [(s.name, s.seconds, s.nfe) for s in profile.stages]
    rows.append(("other (in no stage)", profile.other_seconds, 0))
    if reports_seconds is not None:
        rows.append(("reports (written and printed)", reports_seconds, 0))
    for name, seconds, n in rows:
        table.add_row(name, f"{seconds:.3f}", f"{seconds / total:.1%}" if total > 0 else "-", str(n) if n else "",
                      f"{1e3 * seconds / n:.3f}" if n else "")
    table.add_row("total", f"{total:.3f}", "100.0%" if total > 0 else "-", str(nfe),
                  f"{1e3 * total / nfe:.3f}" if nfe else "", style="bold")
    return table
