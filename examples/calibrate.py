"""Blind calibration of collapsecheck's thresholds: scan the zoo models, fit on the calibration split only,
score the holdout split once.

    python examples/calibrate.py scan  --split calibration --out scans/   # full and fast scans, cached as JSON
    python examples/calibrate.py fit   --split calibration --out scans/   # thresholds fitted on those scans
    python examples/calibrate.py cv    --split calibration --out scans/   # does the fit generalise? (below)
    python examples/calibrate.py margins --split calibration --out scans/ # guidance against decided truth (below)
    python examples/calibrate.py score --split calibration --out scans/ [--thresholds FILE]
    python examples/calibrate.py scan  --split holdout --out scans/ && \
    python examples/calibrate.py score --split holdout --out scans/ --thresholds FILE   # once

Splits (a model belongs to exactly one):
- ``calibration``: the pixel zoo (``--pixel-zoo``, default ``examples/zoo/out``, trained by
  ``examples/zoo/train_zoo.py``; truth ``examples/zoo/ground_truth.json``) and the latent zoo's models of every
  dataset in ``CALIBRATION_DATASETS`` (``examples/latent_zoo/models/``; truth
  ``examples/latent_zoo/ground_truth.json``). ``mnist``, ``fashion``, ``cifar``, ``kmnist``, ``notmnist``,
  ``quickdraw``, ``kannada``, ``digmnist``, ``gtsrb``, ``oracle``, ``coil``, ``yaleb``, ``usps``, ``omniglot``,
  ``simpsons``, ``bloodcell``, ``eurosat``, ``mstar``, ``rsscn7``, ``plankton``, ``tifinagh``, ``fer``, ``hanzi``,
  ``signs``, ``steel``, ``scenes``, ``mednist``, ``arabic``, ``mdas``, ``tibetan``, ``shapes``, ``bangla``,
  ``hands``, ``persian``, ``pcb``, ``waste``, ``kazakh``, ``greek``, ``thai``, ``emoji`` and ``spoken`` were the first
  forty-one holdouts; each was scored once (2026-12-02 to 2026-12-08) and so is spent: they joined the calibration
  split;
- ``holdout``: the latent zoo's models of ``HOLDOUT_DATASET``, never scanned before its one scoring (none since
  round 45's ``spoken``: with ``HOLDOUT_DATASET`` None, ``--split holdout`` says that none is prepared).

A fine-tune (a zoo recipe with ``init_from``: the DreamBooth-style ones) is scanned with ``--reference`` set to
the model it was fine-tuned from, as its maker would (round 11): its collapse verdicts are then judged against the
base as well, and ``collapsed_relative_diversity`` and ``at_risk_relative_diversity`` are fitted with the rest.
From round 28 every model is scanned with ``--data-images``: its dataset's training split (the pixel zoo's: the 8x8
digits' training split) as PNG files, written once by :func:`data_images_dir` into ``.cache/data-images/``; a scan
written before has no ``data_reference``, and its collapse verdict is re-judged without the data rule
(``examples/data_reference.py`` computes the rule for those from the scan and the images).

Verdicts are re-judged from each scan's JSON with the library's own pure rules
(:mod:`collapsecheck.verdict.rules`) under candidate thresholds, so fitting needs no rescans. A threshold is
fitted by a grid search on the calibration split alone: the value in the middle (geometric) of the widest run of
candidates that gives the most agreement with the ground truth (verdicts on the three axes per model and
collapsed-or-not per condition), every other threshold at its fitted or default value; a threshold whose current
value already gives the most agreement stays. ``adherence_ceiling`` (0.95) and ``null_ratio_boundary`` (1) are
definitions, not fitted. The holdout is then scored once with the fitted file and reported as it fell.

``cv`` asks whether fitting generalises to a dataset it has not seen, on the calibration split alone: each
dataset (the pixel zoo, and each latent dataset) is held out in turn, the thresholds are fitted on the others,
and the held-out dataset is scored under that fit and under the current thresholds; the sums over the held-out
datasets are printed. From round 6 on (docs/calibration.md) a fit becomes the defaults only when its sum is the
larger: a move that one dataset alone asks for is not taken.

``margins`` splits the latent models' guidance agreement by whether the brute force's own label is decided: its
adherence move w = 1 -> w = 3 is a mean over ten prompts, and a 95% bootstrap interval over the prompts that
crosses a rule boundary (a move of +-0.03) leaves the label undecided by its own evidence. It does the same for
the collapse verdicts: a model's label is decided when it holds with every condition's diversity ratio moved by a
factor 1.25 either way, and a condition is near a boundary when that moves it across 0.15.

Ground truth: brute force, by rules that use none of collapsecheck's measures. The pixel zoo's guidance labels
were written for the old definition (not_steerable whenever the null branch was not learned); issue 12 defines
guidance by what guidance does, so they are re-labelled here from the stored brute-force numbers by the rule in
:func:`pixel_guidance_label`, written before any scan of this calibration was looked at.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import math
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from collapsecheck import make_config  # noqa: E402
from collapsecheck.measure.coverage import NullCoverage  # noqa: E402
from collapsecheck.report.jsonfile import to_json  # noqa: E402
from collapsecheck.run import scan  # noqa: E402
from collapsecheck.thresholds import Thresholds  # noqa: E402
from collapsecheck.verdict import rules as R  # noqa: E402
from collapsecheck.verdict.relative import (against_base, base_overrides_null, comparable_base_verdict,  # noqa: E402
                                           null_against_base, relative_verdict)
from collapsecheck.verdict.data import (hints_against_cells, narrower_than_data, null_against_data,  # noqa: E402
                                        relieved_by_cells)
from collapsecheck.verdict.steering import judged_scale, relative_shift  # noqa: E402

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "zoo"))
from benchmark import zoo_targets  # noqa: E402

#: the latent zoo's datasets of each split
CALIBRATION_DATASETS = ("digits", "mnist", "fashion", "cifar", "kmnist", "notmnist", "quickdraw", "kannada",
                        "digmnist", "gtsrb", "oracle", "coil", "yaleb", "usps", "omniglot", "simpsons", "bloodcell",
                        "eurosat", "mstar", "rsscn7", "plankton", "tifinagh", "fer", "hanzi", "signs", "steel",
                        "scenes", "mednist", "arabic", "mdas", "tibetan", "shapes", "bangla",
                        "hands", "persian", "pcb", "waste", "kazakh", "greek", "thai", "emoji",
                        "spoken")
HOLDOUT_DATASET = None
ORDERS = {
    "collapse": ("healthy", "at_risk", "collapsed"),
    "null_branch": ("learned", "unclear", "not_learned"),
    "guidance": ("steerable", "weak", "not_steerable"),
}
#: the thresholds fitted, in this order; pairs are kept ordered (collapsed < at_risk)
FITTED = ("collapsed_seed_share", "at_risk_seed_share", "overall_collapsed_fraction", "overall_at_risk_fraction", "guidance_break_ratio", "steer_still_shift",
          "steer_adherence_gain", "steer_weak_gain", "collapsed_relative_diversity", "at_risk_relative_diversity",
          "null_coverage_entropy", "data_relative_diversity", "null_data_unclear", "null_data_not_learned",
          "hint_cell_collapsed_share")


def pixel_guidance_label(entry: dict) -> str:
    """Issue 12's definition on the pixel zoo's brute-force numbers (an external classifier's adherence and the
    nearest-training-image distance relative to real held-out digits', ``nn_ratio``, at w = 1 and w = 3):
    not_steerable when w = 3 pushes the samples off the data (``nn_ratio`` up by 0.2 or more) or lowers adherence
    by more than 0.02; steerable when it raises adherence by at least 0.02 or holds it at its ceiling (0.9 or more
    at both: the classifier reads 96 % of real held-out digits, and a model that copies one image per class is
    capped by how the classifier reads those images); weak otherwise."""
    w1, w3 = entry["per_w"]["1"], entry["per_w"]["3"]
    if w3["nn_ratio"] - w1["nn_ratio"] >= 0.2 or w3["adherence"] < w1["adherence"] - 0.02:
        return "not_steerable"
    if w3["adherence"] >= w1["adherence"] + 0.02 or min(w1["adherence"], w3["adherence"]) >= 0.9:
        return "steerable"
    return "weak"


def pixel_targets(zoo: Path) -> list[dict]:
    truth = json.loads((ROOT / "zoo" / "ground_truth.json").read_text())
    out = []
    for name, path, recipe in zoo_targets(zoo):
        base, _, ck = name.partition("/")
        entry = (truth.get("series", {}).get(name) or truth.get("series", {}).get(ck)) if ck else truth["models"].get(name)
        if not entry:
            continue
        extra = {"concat_order": recipe.get("concat_order", "after")}
        if recipe.get("cond_file"):
            extra["cond"] = str((path if (path / recipe["cond_file"]).exists() else path.parent) / recipe["cond_file"])
        labels = {"collapse": entry["gt_collapse"], "null_branch": entry.get("gt_null_branch"),
                  "guidance": pixel_guidance_label(entry) if "per_w" in entry else None}
        per = entry.get("per_w", {}).get("1", {}).get("div_ratio_per_condition")
        if per:  # the pixel ground truth's collapse rule (div_ratio < 0.15) per condition
            labels["collapsed_conditions"] = [i for i, v in enumerate(per) if v < 0.15]
        out.append({"name": f"pixel/{name}", "path": str(path), "options": extra, "truth": labels, "data": "pixel"})
    return out


def latent_targets(dataset: str, zoo: Path = ROOT / "latent_zoo") -> list[dict]:
    truth_path = zoo / "ground_truth.json"
    truth = json.loads(truth_path.read_text())["models"] if truth_path.exists() else {}
    out = []
    for recipe_path in sorted((zoo / "models" / dataset).glob("*/recipe.json")):
        folder, recipe = recipe_path.parent, json.loads(recipe_path.read_text())
        entry = truth.get(f"{dataset}/{folder.name}") or {"labels": {}}
        if entry["labels"].get("collapse") == "broken":  # not data-like: no verdict to calibrate against
            continue
        scan_info = recipe.get("scan", {})
        options = {}
        if scan_info.get("prompts_file"):
            options["prompts"] = str(folder / scan_info["prompts_file"])
        if scan_info.get("cond_file"):
            options["cond"] = str(folder / scan_info["cond_file"])
        if recipe.get("init_from"):  # a fine-tune is scanned against the model it was fine-tuned from (round 11)
            options["reference"] = str(folder.parent / recipe["init_from"])
        out.append({"name": f"latent/{dataset}/{folder.name}", "path": str(folder), "options": options,
                    "truth": dict(entry["labels"]), "data": dataset})
    return out


#: where :func:`data_images_dir` writes each dataset's training split as PNG files (git-ignored)
DATA_IMAGES = ROOT.parent / ".cache" / "data-images"


def data_images_dir(dataset: str) -> Path:
    """A folder of the dataset's training split as PNG files (``dataset`` "pixel": the pixel zoo's 8x8 digits), for
    ``--data-images``; written once, from [-1, 1] to 0..255 rounded (exact for the latent zoo's 8-bit data)."""
    folder = DATA_IMAGES / dataset
    if folder.is_dir() and any(folder.iterdir()):
        return folder
    if dataset == "pixel":
        import digits

        x, _ = digits.load_digits_tensor()
        x = x[digits.split_indices()[0]]
    else:
        sys.path.insert(0, str(ROOT / "latent_zoo"))
        import latent_data

        x = latent_data.load_split(dataset, "train")[0]
    from PIL import Image

    import tempfile

    folder.parent.mkdir(parents=True, exist_ok=True)
    part = Path(tempfile.mkdtemp(prefix=f"{dataset}.", suffix=".part", dir=folder.parent))  # one per process
    pixels = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    for k, image in enumerate(pixels):
        Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(part / f"{k:05d}.png")
    publish(part, folder)
    return folder


def publish(part: Path, folder: Path) -> None:
    """``part`` renamed to ``folder``, whole; where another process wrote ``folder`` first, ``part`` is removed."""
    import shutil

    try:
        part.rename(folder)
    except OSError:
        shutil.rmtree(part)


def targets(split: str, pixel_zoo: Path, latent_zoo: Path) -> list[dict]:
    if split == "calibration":
        latent = [t for d in CALIBRATION_DATASETS for t in latent_targets(d, latent_zoo)]
        return pixel_targets(pixel_zoo) + latent
    return latent_targets(HOLDOUT_DATASET, latent_zoo) if HOLDOUT_DATASET else []


def scan_all(items: list[dict], out: Path, modes: list[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for item in items:
        for mode in modes:
            target = out / f"{item['name'].replace('/', '__')}.{mode}.json"
            if target.exists():
                continue
            data = {"data_images": str(data_images_dir(item["data"]))} if item.get("data") else {}
            config = make_config(checkpoint=item["path"], mode=mode, **item["options"], **data)
            result = scan(config)
            target.write_text(to_json(result))
            print(f"{item['name']:40s} {mode:5s} {result.verdict:10s} {result.guidance.verdict:14s} "
                  f"{result.guidance.null_branch.verdict:12s} {result.seconds:6.1f} s", flush=True)


def rejudge(data: dict, th: Thresholds) -> dict:
    """The three verdicts (and per-condition collapse) of one scan's JSON under ``th``."""
    per = [R.condition_collapse(c["pixel_rms"], c["near_duplicates"], c["seed_share"], c["lpips"], th).verdict
           for c in data["conditions"]]
    shares = [c.get("cell_share") for c in data["conditions"]]
    if data["condition_set"]["kind"] in R.PIXEL_ALIGNED:  # --data-images: a hint against its part of the data
        per = [f.verdict if f else v for f, v in zip(hints_against_cells(per, shares, th)[0], per)]  # (round 36)
    g = data["guidance"]
    nb = g["null_branch"]
    test = None if nb.get("null_ratio") is None and nb.get("null_samples") is None else R.NullTest(
        nb.get("null_ratio"), nb.get("null_ratio_low"), nb.get("null_ratio_high"), nb.get("null_samples") or 0,
        len(data["conditions"]))
    null = R.null_branch(test, th, distilled=nb["verdict"] == "absent_by_design", spread=nb.get("null_spread"),
                         coverage=coverage_of(nb))
    steer = steering_of(data)
    shifts = [p["shift_from_w1"] for p in g["sweep"] if p["w"] != 1.0 and p.get("shift_from_w1") is not None]
    ref = data.get("reference")
    if ref:  # judged against the base model as well (verdict.relative)
        per = against_reference(per, ref, th)
        against = null_against_base(ref.get("w0_ratio"), th)
        if base_overrides_null(null.verdict, against):
            null = against
    null = null_against_data(null.verdict, nb.get("null_data_share"), th, nb.get("null_ratio_low"),  # --data-images
                             len(data["conditions"])) or null  # (round 29; round 30's bound)
    lost = ([relative_verdict(c["ratio"], th) in ("at_risk", "collapsed") for c in ref["conditions"]] if ref
            else [False] * len(per))  # a condition that lost diversity against the base is not narrow by nature
    own = R.overall_collapse(per, th).verdict
    found, overall = relieved_by_cells(own, per, shares, lost, th)  # --data-images (round 32)
    per = [f.verdict if f else v for f, v in zip(found, per)]
    collapse = overall.verdict if overall else own
    data_found = narrower_than_data(collapse, (data.get("data_reference") or {}).get("mean"), th)  # --data-images
    collapse = data_found.verdict if data_found else collapse
    decoder = R.is_decoder(data["condition_set"]["kind"], collapse)
    guidance = R.guidance_verdict(null, steer, max(shifts) if shifts else None, th, decoder=decoder)
    return {"collapse": collapse, "per_condition": per,
            "null_branch": null.verdict, "guidance": guidance.verdict}


def coverage_of(nb: dict):
    """The null coverage a scan's null-branch section holds (schema 2.11), or None."""
    if nb.get("null_coverage") is None:
        return None
    return NullCoverage(nb["null_coverage"], nb["null_coverage_low"], nb["null_coverage_high"],
                        nb["null_coverage_largest"], nb["null_coverage_samples"], 0)


def against_reference(per: list, ref: dict, th: Thresholds) -> list:
    """Each condition's verdict judged against the base too (:func:`collapsecheck.verdict.relative.against_base`),
    the base's own verdicts as they were scanned (under the defaults); no relief where the ratio is undefined."""
    out = []
    for verdict, c in zip(per, ref["conditions"]):
        base_own = comparable_base_verdict(c.get("base_verdict"), c["ratio"])
        out.append(against_base(verdict, relative_verdict(c["ratio"], th), base_own, ref.get("base_verdict")))
    return out


def steering_of(data: dict):
    """What the guidance verdict read: the implicit adherence at w = 1 and the judged scale from the sweep, or, where
    fast mode measured them again at full settings (``escalation.steering``), those."""
    again = (data.get("escalation") or {}).get("steering") or {}
    if "adherence_w1" in again:
        return R.Steering(again["w_max"], again["adherence_w1"], again["adherence_max"], again["stderr"],
                          again["break_ratio"], relative_shift=again.get("relative_shift"))
    sweep = {p["w"]: p for p in data["guidance"]["sweep"]}
    top = judged_scale(list(sweep))
    if 1.0 not in sweep or top <= 1 or sweep[1.0].get("implicit_adherence") is None:
        return None
    a1, am = sweep[1.0], sweep[top]
    se = math.hypot(a1.get("implicit_adherence_stderr") or 0, am.get("implicit_adherence_stderr") or 0)
    shifts = {w: p.get("shift_from_w1") for w, p in sweep.items()}
    moved = relative_shift(list(shifts), list(shifts.values()), top) if None not in shifts.values() else None
    return R.Steering(top, a1["implicit_adherence"], am["implicit_adherence"], se, am.get("break_ratio"),
                      relative_shift=moved)


def load_scans(items: list[dict], out: Path, mode: str) -> list[tuple[dict, dict]]:
    pairs = []
    for item in items:
        path = out / f"{item['name'].replace('/', '__')}.{mode}.json"
        if path.exists():
            pairs.append((item, json.loads(path.read_text())))
    return pairs


def without_null_data(pairs):
    """``pairs`` with each scan's ``null_data_share`` taken out (round 29's null rule off)."""
    return [(item, with_null_branch(data, {k: v for k, v in data["guidance"]["null_branch"].items()
                                           if k != "null_data_share"})) for item, data in pairs]


def with_null_branch(data: dict, null_branch: dict) -> dict:
    """A shallow copy of the scan ``data`` with ``null_branch`` as its guidance section's null branch."""
    return dict(data, guidance=dict(data["guidance"], null_branch=null_branch))


def agreement(pairs, th: Thresholds) -> tuple[int, int]:
    """Agreeing verdicts over labelled ones: the three axes per model, and collapsed-or-not per condition."""
    hit = total = 0
    for item, data in pairs:
        got = rejudge(data, th)
        for axis in ORDERS:
            want = item["truth"].get(axis)
            if want in ORDERS[axis]:
                total += 1
                hit += got[axis] == want
        a, n = per_condition_agreement(item, got)
        hit, total = hit + a, total + n
    return hit, total


def conditions_agree(collapsed_conditions, per_condition: list) -> list[bool]:
    """Per condition: does the scan's collapsed-or-not (``per_condition`` verdicts) agree with the ground truth's
    list of collapsed conditions?"""
    return [(i in collapsed_conditions) == (v == "collapsed") for i, v in enumerate(per_condition)]


def per_condition_agreement(item: dict, got: dict) -> tuple[int, int]:
    """Conditions whose collapsed-or-not agrees with the ground truth's per-condition label (0, 0 without one)."""
    truth = item["truth"].get("collapsed_conditions")
    if truth is None:
        return 0, 0
    return sum(conditions_agree(truth, got["per_condition"])), len(got["per_condition"])


def fit(pairs, th: Thresholds, say=print, names=FITTED) -> Thresholds:
    """``th`` with the thresholds ``names`` fitted in turn (below)."""
    for name in names:
        current = getattr(th, name)
        grid = sorted({current * 2 ** (k / 8) for k in range(-24, 25)})
        scores = [agreement(pairs, dataclasses.replace(th, **{name: v}))[0] for v in grid]
        best = max(scores)
        runs, run = [], []
        for v, s in zip(grid, scores):
            if s == best:
                run.append(v)
            elif run:
                runs.append(run)
                run = []
        if run:
            runs.append(run)
        widest = max(runs, key=len)
        if any(run[0] <= current <= run[-1] for run in runs):
            value = current  # the calibration split does not ask for a change: the threshold stays
        else:
            value = float(f"{math.sqrt(widest[0] * widest[-1]):.3g}")
        th = dataclasses.replace(th, **{name: value})
        say(f"{name:24s} {current:8.4g} -> {getattr(th, name):8.4g}  (agreement {best}, "
            f"run {widest[0]:.3g}..{widest[-1]:.3g})")
    return th


def dataset_of(item: dict) -> str:
    """The cross-validation group of a zoo model: ``pixel`` for the pixel zoo, else its latent dataset."""
    parts = item["name"].split("/")
    return parts[1] if parts[0] == "latent" else parts[0]


def cross_validate(pairs, th: Thresholds, say=print, names=FITTED) -> tuple[int, int, int]:
    """Leave one dataset out: for each group, fit on the others (as :func:`fit` does) and score the group under
    those thresholds and under ``th``. Returns (agreement fitted, agreement under ``th``, labelled total), summed
    over the held-out groups: whether fitting generalises to a dataset it did not see, on the calibration split."""
    fitted = kept = total = 0
    for group in sorted({dataset_of(item) for item, _ in pairs}):
        inside = [(i, d) for i, d in pairs if dataset_of(i) != group]
        out = [(i, d) for i, d in pairs if dataset_of(i) == group]
        th_fit = fit(inside, th, say=lambda _: None, names=names)
        a_fit, n = agreement(out, th_fit)
        a_kept, _ = agreement(out, th)
        moved = ", ".join(f"{k} {getattr(th_fit, k):.3g}" for k in FITTED if getattr(th_fit, k) != getattr(th, k))
        say(f"held out {group:9s} fitted {a_fit:4d}  kept {a_kept:4d}  of {n:4d}   moved: {moved or 'none'}")
        fitted, kept, total = fitted + a_fit, kept + a_kept, total + n
    say(f"leave-one-dataset-out: fitted {fitted}, kept {kept} of {total}")
    return fitted, kept, total


def latent_ground_truth(latent_zoo: Path):
    """The latent zoo's ground-truth module and its labels (``models``)."""
    spec = importlib.util.spec_from_file_location("latent_ground_truth", latent_zoo / "ground_truth.py")
    gt = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gt)
    return gt, json.loads((latent_zoo / "ground_truth.json").read_text())["models"]


def guidance_margins(pairs, th: Thresholds, gt, truth: dict, say=print) -> tuple[int, int, int, int]:
    """The latent models' guidance verdicts against the brute force (``gt``, ``truth``: :func:`latent_ground_truth`),
    split by whether its label holds across the bootstrap interval of its adherence move over the conditions
    (``ground_truth.guidance_interval``, ``guidance_decided``). Returns (agreeing, decided labels, agreeing,
    undecided labels)."""
    counts = [0, 0, 0, 0]
    for item, data in pairs:
        entry = truth.get(item["name"].removeprefix("latent/"))
        if entry is None:
            continue
        move, low, high = gt.guidance_interval(entry["per_condition"])
        decided, got = gt.guidance_decided(entry, low, high), rejudge(data, th)["guidance"]
        agree = got == entry["labels"]["guidance"]
        k = 0 if decided else 2
        counts[k], counts[k + 1] = counts[k] + agree, counts[k + 1] + 1
        say(f"{item['name']:34s} truth {entry['labels']['guidance']:13s} move {move:+.3f} [{low:+.3f}, {high:+.3f}] "
            f"{'decided  ' if decided else 'undecided'}  scan {got:13s} {'' if agree else 'MISS'}")
    say(f"guidance: {counts[0]}/{counts[1]} agree where the brute force's label is decided, "
        f"{counts[2]}/{counts[3]} where it is not")
    return tuple(counts)


def collapse_margins(pairs, th: Thresholds, gt, truth: dict, say=print) -> tuple[int, ...]:
    """The latent models' collapse verdicts, and their per-condition collapsed-or-not, against the brute force
    (``gt``, ``truth``: :func:`latent_ground_truth`), split by whether its label holds when each condition's
    div_ratio moves by ``ground_truth.BOUNDARY_FACTOR`` either way (``collapse_decided``, ``condition_decided``).
    Returns (agreeing, decided models, agreeing, undecided models, agreeing, decided conditions, agreeing,
    near-boundary conditions)."""
    counts = [0] * 8
    for item, data in pairs:
        entry = truth.get(item["name"].removeprefix("latent/"))
        if entry is None:
            continue
        got = rejudge(data, th)
        decided, agree = gt.collapse_decided(entry), got["collapse"] == entry["labels"]["collapse"]
        k = 0 if decided else 2
        counts[k], counts[k + 1] = counts[k] + agree, counts[k + 1] + 1
        near = []
        agreeing = conditions_agree(entry["labels"]["collapsed_conditions"], got["per_condition"])
        for i, (c, same) in enumerate(zip(entry["per_condition"], agreeing)):
            k = 4 if gt.condition_decided(c["w1"]["div_ratio"]) else 6
            counts[k], counts[k + 1] = counts[k] + same, counts[k + 1] + 1
            near += [] if k == 4 else [f"{i}{'' if same else '*'}"]
        say(f"{item['name']:34s} truth {entry['labels']['collapse']:9s} {'decided  ' if decided else 'undecided'}  "
            f"scan {got['collapse']:9s} {'' if agree else 'MISS'}  near-boundary conditions: "
            f"{' '.join(near) or '-'}")
    say(f"collapse: {counts[0]}/{counts[1]} agree where the brute force's label is decided, {counts[2]}/{counts[3]} "
        f"where it is not; conditions: {counts[4]}/{counts[5]} away from a boundary, {counts[6]}/{counts[7]} near "
        f"one (* : a miss)")
    return tuple(counts)


def confusion(pairs, th: Thresholds, axis: str) -> str:
    order = ORDERS[axis]
    rows = [(item["truth"].get(axis), rejudge(data, th)[axis]) for item, data in pairs]
    rows = [(t, s) for t, s in rows if t in order]
    agree = sum(a == b for a, b in rows)
    return "\n".join(confusion_lines(rows, order, axis) + [f"  agreement {agree}/{len(rows)}"])


def confusion_lines(rows: list[tuple[str, str]], order: tuple[str, ...], title: str = "") -> list[str]:
    """A confusion matrix of labelled pairs: rows the first label of each pair, columns the second, in ``order``."""
    lines = [f"{title:12s}" + "".join(f"{o:>14s}" for o in order)]
    for t in order:
        lines.append(f"  {t:10s}" + "".join(f"{sum(1 for a, b in rows if a == t and b == s):>14d}" for s in order))
    return lines


def per_prompt(pairs, th: Thresholds) -> str:
    counts = [per_condition_agreement(item, rejudge(data, th)) for item, data in pairs]
    return f"per-condition collapsed-or-not: {sum(a for a, _ in counts)}/{sum(n for _, n in counts)} conditions agree"


def per_model(pairs_full, pairs_fast, th: Thresholds) -> str:
    fast = {item["name"]: data for item, data in pairs_fast}
    lines = ["| model | truth: collapse / null / guidance | full | fast | fast = full: verdicts, "
             "conditions | fast s / full s |", "| --- | --- | --- | --- | --- | --- |"]
    for item, data in pairs_full:
        t = item["truth"]
        f = rejudge(data, th)
        q = rejudge(fast[item["name"]], th) if item["name"] in fast else None
        show = lambda v: f"{v['collapse']} / {v['null_branch']} / {v['guidance']}"  # noqa: E731
        same = "-" if q is None else (("yes" if all(q[a] == f[a] for a in ORDERS) else "no") + ", " +
                                      ("yes" if q["per_condition"] == f["per_condition"] else "no"))
        time = "-" if q is None else (f"{fast[item['name']]['seconds']:.1f} / {data['seconds']:.1f} = "
                                      f"{fast[item['name']]['seconds'] / data['seconds']:.3f}")
        lines.append(f"| {item['name']} | {t.get('collapse')} / {t.get('null_branch')} / {t.get('guidance')} | "
                     f"{show(f)} | {show(q) if q else '-'} | {same} | {time} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=("scan", "fit", "cv", "margins", "score"))
    p.add_argument("--split", choices=("calibration", "holdout"), required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--pixel-zoo", type=Path, default=ROOT / "zoo" / "out")
    p.add_argument("--latent-zoo", type=Path, default=ROOT / "latent_zoo")
    p.add_argument("--only", nargs="*", help="scan only these model names")
    p.add_argument("--modes", nargs="+", default=["full", "fast"])
    p.add_argument("--thresholds", type=Path, help="a thresholds JSON file (fit writes one with --write)")
    p.add_argument("--write", type=Path, help="fit: write the fitted thresholds here")
    p.add_argument("--no-null-data", action="store_true",
                   help="score: judge the null without null_data_share (round 29's rule off; what it did)")
    p.add_argument("--fitted", nargs="+", choices=FITTED, default=list(FITTED),
                   help="fit and cv: fit only these thresholds (default: all of FITTED)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    items = targets(args.split, args.pixel_zoo, args.latent_zoo)
    if args.split == "holdout" and args.action in ("fit", "cv"):
        p.error("thresholds are fitted on the calibration split only")
    if args.split == "holdout" and not items:
        p.error("no holdout is prepared: every latent dataset has been scored once and joined the calibration split "
                "(docs/calibration.md says what the next holdout needs)")
    if args.action == "scan":
        scan_all([i for i in items if not args.only or i["name"] in args.only], args.out, args.modes)
        return 0
    th = Thresholds()
    if args.thresholds:
        th = dataclasses.replace(th, **json.loads(args.thresholds.read_text()))
    full, fast = load_scans(items, args.out, "full"), load_scans(items, args.out, "fast")
    if args.no_null_data:
        full, fast = without_null_data(full), without_null_data(fast)
    if args.action == "cv":
        cross_validate(full + fast, th, names=tuple(args.fitted))
        return 0
    if args.action == "margins":
        gt, truth = latent_ground_truth(args.latent_zoo)
        guidance_margins(full, th, gt, truth)
        collapse_margins(full, th, gt, truth)
        return 0
    if args.action == "fit":
        th = fit(full + fast, th, names=tuple(args.fitted))
        if args.write:
            args.write.write_text(json.dumps({k: getattr(th, k) for k in FITTED}, indent=2) + "\n")
    for mode, pairs in (("full", full), ("fast", fast)):
        print(f"\n{args.split}, {mode} mode ({len(pairs)} models):")
        for axis in ORDERS:
            print(confusion(pairs, th, axis))
        print(per_prompt(pairs, th))
    print()
    print(per_model(full, fast, th))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
