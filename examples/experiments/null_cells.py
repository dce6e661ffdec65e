"""Round 21's pilot (docs/calibration.md): each condition's seed spread against the model's own null samples near it.

The seed share divides a condition's seed variance by the whole grid's, so a class narrow by nature (EuroSAT's
forest tiles, round 20) reads collapsed on a model that draws it exactly as the data does. A model whose null
branch is learned draws its marginal at w = 0, and so draws that narrow class narrowly there too. This script
scans the named calibration models at w = 0 and 1 with SEEDS seeds (no probes, no LPIPS, no reference), assigns
each null sample to the condition whose w = 1 mean lies nearest (pixel RMS), and prints per condition the w = 1
seed variance over the variance of the null samples in its cell ("cell ratio"), beside the seed share and the
brute force's label. With ``--assign implicit`` a null sample's cell is instead the condition the model's own
implicit classifier picks (the lowest denoising error over every condition, on the scan's latents, at the full
scan's noise levels: ``collapsecheck.measure.implicit.denoising_errors``). The library is not changed; the scan's
implicit-classifier stage is wrapped only to keep its inputs.

    python examples/experiments/null_cells.py latent/eurosat/drop10 latent/eurosat/tied_half [--assign implicit]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import calibrate  # noqa: E402
import collapsecheck.sweep as sweep  # noqa: E402
from collapsecheck.measure.implicit import FULL, ImplicitSettings, denoising_errors  # noqa: E402
from collapsecheck.measure.pixel import seed_share  # noqa: E402

SEEDS = 160
MIN_CELL = 4  # fewer null samples than this in a cell: no ratio


KEPT: dict = {}
_measure_implicit = sweep.measure_implicit


def _keeping(s, sampled):
    KEPT.update(s=s, raw=sampled.raw)
    return _measure_implicit(s, sampled)


def nearest_cells(w1: torch.Tensor, null: torch.Tensor) -> torch.Tensor:
    """Each null sample's cell: the condition whose w = 1 mean (pixels) lies nearest."""
    return torch.cdist(null, w1.mean(1)).argmin(1)


def implicit_cells(s, raw: torch.Tensor, w0: int) -> torch.Tensor:
    """Each null sample's cell: the condition with the lowest denoising error (the model's implicit classifier).
    The N null latents are laid out as C rows of N / C seeds, each row's candidates every condition from its own
    on (cyclically), so errors[0, c, s, j] belongs to condition (c + j) mod C."""
    W, C, N = raw.shape[:3]
    null = raw[w0, 0]  # (N, ...): w = 0 does not depend on the condition
    per = N // C
    laid = null[:C * per].reshape((1, C, per) + tuple(null.shape[1:]))
    settings = ImplicitSettings(levels=FULL.levels, noises=FULL.noises, others=C - 1)
    errors = denoising_errors(s.denoiser, s.schedule, laid, s.conds, settings, s.batch_size).errors[0]  # (C, per, C)
    absolute = (torch.arange(C).view(C, 1, 1) + torch.arange(C).view(1, 1, C)) % C
    picked = absolute.expand(C, per, C).gather(2, errors.argmin(2, keepdim=True)).squeeze(2)  # (C, per)
    return picked.reshape(-1)


def cell_ratios(w1: torch.Tensor, null: torch.Tensor, cell: torch.Tensor) -> tuple[list, list]:
    """w1 (C, S, D), null (N, D), cell (N,): per condition (cell ratio or None, null samples in its cell)."""
    null = null[:len(cell)]
    ratios, counts = [], []
    for c in range(len(w1)):
        members = null[cell == c]
        counts.append(len(members))
        within = w1[c].var(0, unbiased=True).mean()
        ratios.append(float(within / members.var(0, unbiased=True).mean()) if len(members) >= MIN_CELL else None)
    return ratios, counts


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("names", nargs="+", help="calibration model names, as calibrate.py prints them")
    p.add_argument("--json", type=Path, help="write the numbers here")
    p.add_argument("--assign", choices=("nearest", "implicit"), default="nearest", help="how a null sample's cell is chosen")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    sweep.measure_implicit = _keeping
    items = {i["name"]: i for i in calibrate.targets("calibration", calibrate.ROOT / "zoo" / "out",
                                                     calibrate.ROOT / "latent_zoo")}
    out = {}
    for name in a.names:
        item = items[name]
        options = {k: v for k, v in item["options"].items() if k != "reference"}
        cfg = calibrate.make_config(checkpoint=item["path"], mode="full", seeds=SEEDS, guidance=(0.0, 1.0),
                                    recovery=False, posterior=False, lpips=False, **options)
        samples = calibrate.scan(cfg).samples  # (W, C, S, ch, H, W) in the order of cfg.guidance
        w1 = samples[1].flatten(2).double()
        null = samples[0, 0].flatten(1).double()  # w = 0 does not depend on the condition
        cell = (implicit_cells(KEPT["s"], KEPT["raw"], 0) if a.assign == "implicit"
                else nearest_cells(w1[:, :16], null))
        ratios, counts = cell_ratios(w1[:, :16], null, cell)
        shares = seed_share(w1[:, :16], seed_dim=1).tolist()
        truth = item["truth"].get("collapsed_conditions") or []
        out[name] = {"cell_ratio": ratios, "cell_count": counts, "seed_share": shares, "collapsed": truth}
        print(name, item["truth"].get("collapse"))
        for c, (r, n, s) in enumerate(zip(ratios, counts, shares)):
            print(f"   cond {c}: truth {'collapsed' if c in truth else 'not':9s} seed share {s:.3f} "
                  f"cell ratio {'-' if r is None else f'{r:.3f}'} ({n} null samples)", flush=True)
    if a.json:
        a.json.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
