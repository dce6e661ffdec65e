"""Round 17's pilot (docs/calibration.md): per-condition null ratios from full scans of calibration models.

The scan's null test pools every condition's w = 1 samples into one ratio
r = mean(err_null - err_own) / mean(err_wrong - err_own) (``collapsecheck.measure.implicit.null_ratio``). This
script runs full scans of the named calibration models through ``examples/calibrate.py``'s targets, keeps the
errors that function receives, and prints each condition's ratio two ways: over its own wrong-condition gap, and
over the pooled one. The library is not changed; the wrapper only records its arguments.

    python examples/experiments/null_per_condition.py --out /tmp/pilot latent/digits/nodrop latent/kmnist/nodrop
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import calibrate  # noqa: E402
import collapsecheck.measure.implicit as implicit  # noqa: E402

CALLS: list = []
_null_ratio = implicit.null_ratio


def _recording(errors: torch.Tensor, null_errors: torch.Tensor):
    CALLS.append((errors.detach().clone(), null_errors.detach().clone()))
    return _null_ratio(errors, null_errors)


def per_condition(errors: torch.Tensor, null_errors: torch.Tensor):
    """(pooled ratio, per-condition ratios over their own gap, per-condition ratios over the pooled gap)."""
    own = errors[..., 0].double()
    gap_null, gap_wrong = null_errors.double() - own, errors[..., 1:].double().mean(-1) - own
    return (float(gap_null.mean() / gap_wrong.mean()), gap_null.mean(1) / gap_wrong.mean(1),
            gap_null.mean(1) / gap_wrong.mean())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("names", nargs="+", help="calibration model names, as calibrate.py prints them")
    p.add_argument("--out", type=Path, required=True, help="folder for the recorded errors (.pt, plain tensors)")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    implicit.null_ratio = _recording
    a.out.mkdir(parents=True, exist_ok=True)
    items = calibrate.targets("calibration", calibrate.ROOT / "zoo" / "out", calibrate.ROOT / "latent_zoo")
    for item in (i for i in items if i["name"] in a.names):
        CALLS.clear()
        result = calibrate.scan(calibrate.make_config(checkpoint=item["path"], mode="full", **item["options"]))
        n = result.guidance.null_branch
        # a fine-tune's scan also tests its --reference: keep the call whose pooled ratio is the model's own
        errors, null_errors = next(c for c in CALLS if abs(per_condition(*c)[0] - n.null_ratio) < 1e-9)
        torch.save({"errors": errors, "null_errors": null_errors}, a.out / f"{item['name'].replace('/', '__')}.pt")
        pooled, own_gap, pooled_gap = per_condition(errors, null_errors)
        print(f"{item['name']:32s} truth {item['truth'].get('null_branch')!s:12s} r {pooled:.2f}  largest per "
              f"condition {float(own_gap.max()):.2f} (own gap), {float(pooled_gap.max()):.2f} (pooled gap)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
