"""The report's plots (matplotlib): diversity by guidance scale, condition strength and posterior variance
by timestep, and a checkpoint trend. Pure: results in, ``matplotlib.figure.Figure`` out (see figure.py
for the PNG). Every plot has a title, axes labelled with their units, a legend, and a caption that
states each number's direction and, when the result records it, the number that decided the verdict.
"""
from __future__ import annotations

from dataclasses import asdict, is_dataclass
from typing import Optional, Sequence

from .evidence import decided_by, evidence_text
from .figure import (
    finite,
    has_data,
    new_figure,
    no_data,
    relation,
    threshold_band,
    verdict_legend_handles,
    verdict_points,
)
from .style import INK, LEVEL_COLOURS, MUTED, verdict_hex, w_meaning

RMS_UNIT = "RMS pixel distance (images in [-1, 1])"
T_AXIS = "timestep t (high noise → low noise)"


def _thresholds(result) -> dict:
    return dict((getattr(result, "config", None) or {}).get("thresholds") or {})


def _word(verdict: Optional[str]) -> str:
    return "n/a" if verdict is None else verdict.replace("_", " ")


def _decided_lines(result) -> list[str]:
    """'<which verdict> decided by: <evidence>' for the scan, its guidance and null branch; [] without evidence."""
    g = result.guidance
    parts = [(f"collapse verdict ({_word(result.verdict)})", result), (f"guidance verdict ({_word(g.verdict)})", g),
             (f"null-branch verdict ({_word(g.null_branch.verdict)})", g.null_branch)]
    return [f"{name} decided by: {evidence_text(item)}." for name, item in parts if decided_by(item)]


def _mark_verdict_scale(axes, w: float) -> None:
    for ax in axes:
        ax.axvline(w, color=MUTED, linestyle=":", linewidth=1.2, label=f"verdict read at w = {w:g}")


def _sweep_panel(ax, ws, values, verdicts, spec: dict, th: dict) -> bool:
    """One measure of the sweep on its own axis, with its thresholds; False when it has no data."""
    low, high = th.get(spec["low"]), th.get(spec["high"])
    ax.set_ylabel(spec["unit"])
    if not has_data(values):
        ax.set_title(f"{spec['name']}: not measured", fontsize=10, loc="left")
        no_data(ax, spec["missing"])
        return False
    verdict_points(ax, ws, values, verdicts, spec["line"])
    threshold_band(ax, low, high, spec["low"], spec["high"])
    top = max([v for v in finite(values) if v == v] + [high or 0.0, low or 0.0])
    ax.set_ylim(0.0, top * 1.15 or 1.0)
    if spec["key"] == "shift_from_w1":  # the guidance rule reads the largest shift; w = 1 is 0 by definition
        largest = max(v for v in finite(values) if v == v)
        where = relation([largest], low, high, spec["low"], spec["high"])
        where = where.replace("every point", f"the largest shift ({largest:.3g})")
    else:
        where = relation(values, low, high, spec["low"], spec["high"])
    ax.set_title(f"{spec['name']} ({spec['direction']})\n{where}", fontsize=10, loc="left")
    return True


def _sweep_specs(result) -> list[dict]:
    lp = result.lpips
    why_no_lpips = f"LPIPS not measured: {lp.reason or 'no reason recorded'}"
    return [
        dict(key="pixel_rms", name="pixel RMS between seeds", line="pixel RMS, mean over conditions", unit=RMS_UNIT,
             direction="higher = more diverse", low="collapsed_rms", high="at_risk_rms", missing="no data"),
        dict(key="seed_share", name="seed share", line="seed share, mean over conditions",
             unit="share of the grid's variance", direction="higher = more diverse", low="collapsed_seed_share",
             high="at_risk_seed_share", missing="seed share needs at least two conditions"),
        dict(key="lpips", name="LPIPS between seeds", line="LPIPS, mean over conditions",
             unit=f"LPIPS distance ({lp.net or 'no net'})", direction="higher = more diverse", low="collapsed_lpips",
             high="at_risk_lpips", missing=why_no_lpips),
        dict(key="shift_from_w1", name="shift from w = 1", line="shift from w = 1, mean over conditions",
             unit=RMS_UNIT, direction="higher = guidance moves samples more", low="steer_min_shift",
             high="steer_weak_shift", missing="no data"),
    ]


def guidance_chart(result):
    """Seed diversity, seed share, LPIPS and movement by guidance scale, each on its own axis with its thresholds."""
    sweep = sorted(result.guidance.sweep, key=lambda p: p.w)
    ws, verdicts, th = [p.w for p in sweep], [p.verdict for p in sweep], _thresholds(result)
    reasons = [] if decided_by(result.guidance) else [f"guidance {_word(result.guidance.verdict)}: "
                                                       + "; ".join(result.guidance.reasons) + "."]
    caption = _decided_lines(result) + reasons[: bool(result.guidance.reasons)] + [
        f"Each point is a mean over the {len(result.conditions)} conditions; its colour is the collapse verdict the "
        "samples at that w would get. Thresholds (dashed) apply to each condition, so a mean above a line can still "
        "hide conditions below it.",
        w_meaning(getattr(result.guidance, "kind", "cfg")) + " Shaded: below the collapsed (red) "
        "and at-risk (amber) thresholds; for the shift, below steer_min_shift / steer_weak_shift.",
    ]
    fig, axes = new_figure(11.0, 7.4, caption, rows=2, cols=2)
    drawn = []
    for ax, spec in zip(axes, _sweep_specs(result)):
        if _sweep_panel(ax, ws, [getattr(p, spec["key"]) for p in sweep], verdicts, spec, th):
            drawn.append(ax)
        ax.set_xlabel("guidance scale w")
        ax.set_xticks(ws, labels=[f"{w:g}" for w in ws])
        ax.grid(alpha=0.3)
    _mark_verdict_scale(drawn, result.verdict_guidance_scale)
    for i, ax in enumerate(drawn):
        handles, _ = ax.get_legend_handles_labels()
        ax.legend(handles=handles + (verdict_legend_handles(verdicts) if i == 0 else []), fontsize=8, loc="best")
    fig.suptitle(f"Seed diversity by guidance scale: guidance {_word(result.guidance.verdict)}, "
                 f"collapse at w = {result.verdict_guidance_scale:g}: {_word(result.verdict)}", fontsize=13)
    return fig


def eps_profile_chart(result):
    """The eps ratio ||eps_c - eps_null|| / ||eps_null|| and the cosine of eps_c - eps_null with eps_null by timestep."""
    prof = list(result.eps_profile)
    ts = [p.timestep for p in prof]
    ratios, cosines = [p.eps_ratio for p in prof], [p.eps_cos for p in prof]
    th, g = _thresholds(result), result.guidance
    mean = sum(ratios) / len(ratios) if ratios else None
    caption = ([f"guidance verdict ({_word(g.verdict)}) decided by: {evidence_text(g)}."] if decided_by(g) else []) + [
        "eps ratio: higher = the condition pulls harder on the prediction (Wen et al., ICLR 2024); guidance is weak "
        "when its mean over the steps reaches weak_eps_ratio. Cosine: +1 = the condition pushes along eps_null, "
        "0 = across it. Sampling runs left (pure noise) to right (image).",
    ]
    fig, (top, bottom) = new_figure(9.0, 6.4, caption, rows=2)
    top.plot(ts, finite(ratios), color=LEVEL_COLOURS["info"], marker="o", linewidth=1.8, label="eps ratio")
    if mean is not None:
        top.axhline(mean, color=INK, linestyle=":", linewidth=1.2, label=f"mean over steps {mean:.3g}")
    if "weak_eps_ratio" in th:
        top.axhline(th["weak_eps_ratio"], color=LEVEL_COLOURS["warn"], linestyle="--", linewidth=1.2,
                    label=f"weak_eps_ratio {th['weak_eps_ratio']:g}")
    top.set_ylabel("||eps_c − eps_null|| / ||eps_null||")
    top.set_title("condition strength (eps ratio)", fontsize=10, loc="left")
    bottom.plot(ts, finite(cosines), color=LEVEL_COLOURS["good"], marker="s", linewidth=1.8,
                label="cos(eps_c − eps_null, eps_null)")
    bottom.axhline(0.0, color=MUTED, linewidth=0.8)
    bottom.set_ylim(-1.05, 1.05)
    bottom.set_ylabel("cosine (unitless, −1 … 1)")
    bottom.set_title("direction of the condition's pull", fontsize=10, loc="left")
    for ax in (top, bottom):
        ax.set_xlabel(T_AXIS)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    if ts:
        top.set_xlim(max(ts) + 0.02 * (max(ts) - min(ts) or 1), min(ts) - 0.02 * (max(ts) - min(ts) or 1))
    fig.suptitle(f"Condition strength along the sampling trajectory (w = {result.verdict_guidance_scale:g}, "
                 "mean over conditions and seeds)", fontsize=13)
    return fig


def _as_dict(item) -> dict:
    if is_dataclass(item):
        return asdict(item)
    return dict(item) if isinstance(item, dict) else dict(vars(item))


#: keys of a posterior-profile point that are coordinates, not series
_AXIS_KEYS = ("timestep", "step", "alpha_bar", "t")


def _posterior_series(points: list[dict]) -> tuple[list[str], list[str]]:
    """(variance keys, share keys): variances share one axis; shares and ratios are unitless and get another."""
    numeric = [k for k, v in points[0].items()
               if k not in _AXIS_KEYS and isinstance(v, (int, float)) and not isinstance(v, bool)]
    shares = [k for k in numeric if "share" in k or "ratio" in k]
    return [k for k in numeric if k not in shares], shares


def posterior_chart(profile: Sequence, thresholds: Optional[dict] = None):
    """Posterior variance by timestep from a list of points (dataclasses or dicts); None when there is nothing.

    The x axis is ``timestep`` (or ``step``, or the index); variances go on one axis, a variance share
    (which estimates the seed share) on a second one with the seed-share thresholds.
    """
    points = [_as_dict(p) for p in profile or []]
    if not points:
        return None
    x_key = next((k for k in ("timestep", "step", "t") if all(k in p for p in points)), None)
    xs = [float(p[x_key]) if x_key else float(i) for i, p in enumerate(points)]
    variances, shares = _posterior_series(points)
    if not variances and not shares:
        return None
    th = dict(thresholds or {})
    caption = ["Posterior variance Var[x0 | x_t] per pixel (Tweedie), mean over conditions: higher = the model still "
               "leaves the image open at that step (more diverse); a collapsed model's variance falls to ~0 early.",
               "variance share: its share of the grid's variance, an estimate of the seed share (higher = more diverse)."]
    fig, axes = new_figure(9.0, 6.4 if variances and shares else 3.8, caption, rows=int(bool(variances)) + int(bool(shares)))
    x_label = T_AXIS if x_key in ("timestep", "t") else (x_key or "point")
    ax_iter = iter(axes)
    if variances:
        ax = next(ax_iter)
        for k, colour in zip(variances, (LEVEL_COLOURS["info"], INK, LEVEL_COLOURS["good"])):
            ax.plot(xs, finite([p.get(k) for p in points]), marker="o", color=colour, label=k.replace("_", " "))
        ax.set_ylabel("variance per pixel (images in [-1, 1])")
        ax.set_title("posterior variance", fontsize=10, loc="left")
    if shares:
        ax = next(ax_iter)
        for k in shares:
            ax.plot(xs, finite([p.get(k) for p in points]), marker="s", color=INK, label=k.replace("_", " "))
        threshold_band(ax, th.get("collapsed_seed_share"), th.get("at_risk_seed_share"), "collapsed_seed_share",
                       "at_risk_seed_share")
        ax.set_ylabel("share of the grid's variance")
        ax.set_title("variance share (estimates the seed share)", fontsize=10, loc="left")
    for ax in axes:
        ax.set_xlabel(x_label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    if x_key in ("timestep", "t"):
        axes[0].invert_xaxis()
    fig.suptitle("Posterior variance along the sampling trajectory", fontsize=13)
    return fig


def trend_chart(steps: Sequence[dict], onset: Optional[int] = None, drop_step: Optional[int] = None,
                unit: str = "step"):
    """Diversity measures and the eps ratio by checkpoint, each on its own axis, with the collapse onset marked."""
    xs = [s["step"] for s in steps]
    verdicts = [s.get("verdict") for s in steps]
    series = [("pixel_rms", "pixel RMS between seeds", RMS_UNIT), ("seed_share", "seed share", "share of the grid's variance"),
              ("lpips", "LPIPS between seeds", "LPIPS distance"), ("eps_ratio", "eps ratio", "||eps_c − eps_null|| / ||eps_null||")]
    series = [s for s in series if s[0] in ("pixel_rms", "eps_ratio") or has_data([st.get(s[0]) for st in steps])]
    caption = ["Means over conditions at the verdict scale; marker colour: the checkpoint's collapse verdict. "
               "pixel RMS, seed share, LPIPS: higher = more diverse; eps ratio: higher = the condition pulls harder "
               "(a rise with falling diversity points at collapse)."]
    fig, axes = new_figure(8.2, 2.3 * len(series) + 0.6, caption, rows=len(series))
    for ax, (key, name, y_unit) in zip(axes, series):
        verdict_points(ax, xs, [s.get(key) for s in steps], verdicts, name)
        ax.set_ylabel(y_unit)
        ax.set_xlabel(unit)
        if 1 < len(xs) <= 12:
            ax.set_xticks(xs, labels=[str(x) for x in xs])
        ax.set_title(name, fontsize=10, loc="left")
        ax.grid(alpha=0.3)
        if onset is not None:
            ax.axvline(onset, color=verdict_hex("collapsed"), linestyle="--", label=f"collapse onset ({unit} {onset})")
        if drop_step is not None and drop_step != onset:
            ax.axvline(drop_step, color=verdict_hex("at_risk"), linestyle="--", label=f"largest drop ({unit} {drop_step})")
    for i, ax in enumerate(axes):
        handles, _ = ax.get_legend_handles_labels()
        ax.legend(handles=handles + (verdict_legend_handles(verdicts) if i == 0 else []), fontsize=8, loc="best")
    fig.suptitle("Collapse by checkpoint", fontsize=13)
    return fig
