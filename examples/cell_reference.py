"""Round 32 (issue 12): each condition's cell share (schema 2.14, :mod:`collapsecheck.measure.cells`) for calibration
scans written before it, computed as the scan computes it, so that ``calibrate.py score`` re-judges them with the
relief of :func:`collapsecheck.verdict.data.narrow_by_nature`.

The cell share needs the verdict scale's samples, which a scan's JSON does not keep. For each scan, this runs the
scan again at that scale alone (``guidance=[1.0]``: the same seeds, steps and sampler, so the same samples; no sweep,
no recovery probes, no posterior profile, no base model) with ``--data-images`` (the zoo's training split, as
``calibrate.py scan`` passes it), checks that every condition's seed share equals the stored one, and writes the
stored JSON with ``cell_share``, ``cell_images`` and ``cell_resampled`` added to ``--write``. Only scans with a
condition read collapsed (re-judged from the stored numbers) are scanned (the relief acts on no other); the rest are copied as they
are. A fine-tune's base model does not enter the cell share; fast mode's re-draw near the threshold follows the
conditions' own verdicts, as in a scan.

    python examples/cell_reference.py --scans scans/ --write scans32/ [--modes full fast]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import calibrate as cal  # noqa: E402
from collapsecheck import make_config  # noqa: E402
from collapsecheck.escalate.data import CLASS_LIKE  # noqa: E402
from collapsecheck.run import scan  # noqa: E402
from collapsecheck.thresholds import Thresholds  # noqa: E402

FIELDS = ("cell_share", "cell_images", "cell_resampled")


def needs_cells(data: dict) -> bool:
    """Does the relief have anything to act on: class or prompt conditions, one of them read collapsed?"""
    return (data["condition_set"]["kind"] in CLASS_LIKE
            and "collapsed" in cal.rejudge(data, Thresholds())["per_condition"]
            and not any(c.get("cell_share") is not None for c in data["conditions"]))


def with_cells(item: dict, data: dict, mode: str) -> tuple[dict, float]:
    """``data`` with every condition's cell fields from a scan at the verdict scale alone, and the largest relative
    difference between its seed shares and the stored ones (0: the same samples)."""
    options = {k: v for k, v in item["options"].items() if k != "reference"}
    config = make_config(checkpoint=item["path"], mode=mode, guidance=[1.0], recovery=False, posterior=False,
                         lpips=bool(os.environ.get("COLLAPSECHECK_LPIPS_WEIGHTS")),
                         data_images=str(cal.data_images_dir(item["data"])), **options)
    result = scan(config)
    stored = [c["seed_share"] for c in data["conditions"]]
    drift = max(abs(c.seed_share - s) / max(abs(s), 1e-12) for c, s in zip(result.conditions, stored))
    for c, fresh in zip(data["conditions"], result.conditions):
        c.update({f: getattr(fresh, f) for f in FIELDS})
    return data, drift


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--scans", type=Path, required=True)
    p.add_argument("--write", type=Path, required=True)
    p.add_argument("--split", default="calibration", choices=("calibration", "holdout"))
    p.add_argument("--modes", nargs="+", default=["full", "fast"])
    p.add_argument("--only", nargs="*", help="these model names only")
    args = p.parse_args(argv)
    args.write.mkdir(parents=True, exist_ok=True)
    for item in cal.targets(args.split, cal.ROOT / "zoo" / "out", cal.ROOT / "latent_zoo"):
        for mode in args.modes:
            name = f"{item['name'].replace('/', '__')}.{mode}.json"
            source, target = args.scans / name, args.write / name
            if not source.exists() or target.exists() or (args.only and item["name"] not in args.only):
                continue
            data = json.loads(source.read_text())
            if needs_cells(data) and item.get("data"):
                data, drift = with_cells(item, data, mode)
                shares = " ".join("-" if c["cell_share"] is None else f"{c['cell_share']:.3f}"
                                  for c in data["conditions"])
                print(f"{item['name']:36s} {mode:4s} seed-share drift {drift:.1e}  cells {shares}", flush=True)
            target.write_text(json.dumps(data))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
