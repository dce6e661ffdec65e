"""Brute-force ground truth for every zoo model: many seeds, many DDIM steps, four guidance scales.

    python examples/zoo/ground_truth.py --zoo examples/zoo/out [--seeds 64] [--steps 100] [--only NAME ...]
        [--skip-existing] [--markdown-only]

Writes ``examples/zoo/ground_truth.json`` and ``docs/zoo-ground-truth.md``.  With ``--only`` or
``--skip-existing`` the JSON is updated in place (other entries kept); the Markdown is always
rebuilt from the whole JSON.

Sampling uses collapsecheck's loader and DDIM grid sampler (verified against diffusers); nothing
else from collapsecheck is used: every measure and label rule is computed here (``gt_measures.py``)
so that the ground truth stays independent of the thresholds it calibrates.

Per model, the conditional samples are ``seeds`` x 10 conditions at w in {1, 3, 7.5}; the null
branch (w = 0, where the condition has no effect) is sampled once with ``seeds`` x 10 distinct
seeds (same network cost as one guidance scale of the grid, ten times the null samples).
Samples are clipped to [-1, 1].  The label rules are the constants at the top of gt_measures.py.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

import digits  # noqa: E402
import gt_measures as gm  # noqa: E402

COND_GUIDANCES = (1.0, 3.0, 7.5)  # conditional grid
NULL_GUIDANCE = 0.0  # the null branch alone
ALL_GUIDANCES = (NULL_GUIDANCE,) + COND_GUIDANCES
NEAR_THRESHOLD_REL = 0.05  # a label number within 5% of its threshold is flagged "near threshold"
CONCAT_KNN = 5  # neighbours in 4x4-pool space for the concat reference spread
DEFAULT_JSON = HERE / "ground_truth.json"
DEFAULT_MD = REPO / "docs" / "zoo-ground-truth.md"


# ------------------------------------------------------------------------------------ references
class Reference:
    """Real-data references: training split, held-out split, within-class variances, a classifier."""

    def __init__(self) -> None:
        from sklearn.linear_model import LogisticRegression

        self.x_all, self.y_all = digits.load_digits_tensor()
        self.x_train, self.y_train = digits.load_split("train")
        self.x_held, self.y_held = digits.load_split("heldout")
        # Within-class variance of the full dataset (~180 images per class, stable), and of the
        # held-out split (20 per class) for comparison.
        self.class_var = gm.class_variances(self.x_all, self.y_all)
        self.class_var_heldout = gm.class_variances(self.x_held, self.y_held)
        self.total_var = gm.mean_pixel_variance(self.x_all)

        self.clf = LogisticRegression(max_iter=2000)
        self.clf.fit(self._np(self.x_train), self.y_train.numpy())
        self.clf_accuracy = float((self.clf.predict(self._np(self.x_held)) == self.y_held.numpy()).mean())
        self.heldout_confidence = float(self.clf.predict_proba(self._np(self.x_held)).max(axis=1).mean())

        d_held, _ = gm.nn_rms(self.x_held, self.x_train)
        self.heldout_nn = d_held
        self.heldout_nn_median = float(d_held.median())
        self.heldout_copy_fraction = float((d_held < gm.COPY_RMS).double().mean())
        self.train_nn_median = float(gm.nn_rms_excluding_self(self.x_train).median())
        self.heldout_pairwise_rms = float(
            np.mean([gm.mean_pairwise_rms(self.x_held[self.y_held == c]) for c in range(digits.NUM_CLASSES)])
        )

        # What a perfect posterior sampler could give a concat (4x4 low-res) model, as a div_ratio:
        # the within-class variance of the part of an image the 4x4 pool does not fix (an upper
        # bound of E[Var(x | pool)]), and the spread of the CONCAT_KNN digits with the nearest pools
        # (a rough estimate; neighbours' pools still differ).
        res = self.x_all - digits.lowres_condition(self.x_all)
        self.concat_residual_ratio = float(gm.class_variances(res, self.y_all).mean() / self.class_var.mean())
        p = gm.pool4(self.x_all)
        d = torch.cdist(p, p)
        d.fill_diagonal_(float("inf"))
        nb = d.topk(CONCAT_KNN, largest=False).indices
        knn_var = torch.stack([gm.flat(self.x_all[nb[i]]).var(dim=0, unbiased=True).mean() for i in range(len(nb))])
        self.concat_knn_ratio = float(knn_var.mean() / self.class_var.mean())

    @staticmethod
    def _np(x: torch.Tensor) -> np.ndarray:
        return x.reshape(x.shape[0], -1).double().numpy()

    def classify(self, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """(predicted class, max probability) of each image."""
        p = self.clf.predict_proba(self._np(x))
        return p.argmax(axis=1), p.max(axis=1)

    def meta(self) -> Dict[str, Any]:
        return {
            "classifier": "sklearn LogisticRegression(max_iter=2000) on the 64 raw pixels in [-1, 1], train split",
            "classifier_accuracy": round(self.clf_accuracy, 4),
            "classifier_heldout_confidence": round(self.heldout_confidence, 4),
            "real_within_class_variance": [round(float(v), 5) for v in self.class_var],
            "real_within_class_variance_mean": round(float(self.class_var.mean()), 5),
            "real_within_class_variance_source": "all 1797 digits, per class, per-pixel variance (ddof=1) averaged over pixels",
            "real_within_class_variance_heldout": [round(float(v), 5) for v in self.class_var_heldout],
            "real_within_class_variance_heldout_mean": round(float(self.class_var_heldout.mean()), 5),
            "real_total_variance": round(self.total_var, 5),
            "heldout_nn_rms_median": round(self.heldout_nn_median, 5),
            "heldout_copy_fraction": round(self.heldout_copy_fraction, 4),
            "train_nn_rms_median_leave_one_out": round(self.train_nn_median, 5),
            "heldout_within_class_pairwise_rms": round(self.heldout_pairwise_rms, 5),
            "concat_reference_div_ratio_residual_bound": round(self.concat_residual_ratio, 4),
            f"concat_reference_div_ratio_knn{CONCAT_KNN}": round(self.concat_knn_ratio, 4),
            "train_size": int(len(self.y_train)),
            "heldout_size": int(len(self.y_held)),
        }


# ------------------------------------------------------------------------------------ models
def find_models(zoo: Path) -> Dict[str, Dict[str, Any]]:
    """Finished zoo outputs (recipe.json is written last): {name: recipe}."""
    out = {}
    if not zoo.is_dir():
        return out
    for d in sorted(zoo.iterdir()):
        if d.is_dir() and (d / "recipe.json").is_file():
            out[d.name] = json.loads((d / "recipe.json").read_text())
    return out


def expected_names() -> List[str]:
    """The zoo's recipe names (from train_zoo.py), to report the ones that never appeared."""
    try:
        import train_zoo

        return list(train_zoo.RECIPES)
    except Exception:  # pragma: no cover - train_zoo is part of the same example
        return []


def intended_classes(recipe: Dict[str, Any], n_conds: int, ref: Reference) -> tuple[Optional[List[int]], str]:
    """The class each scan condition was made from, and how that was read."""
    if recipe["conditioning"] == "class":
        return [int(c) for c in recipe["scan_conditions"]], "recipe scan_conditions (class ids)"
    prov = recipe.get("cond_provenance") or {}
    if prov.get("class_labels") is not None:
        return [int(c) for c in prov["class_labels"]], "cond_provenance.class_labels"
    if prov.get("dataset_indices") is not None:
        idx = torch.tensor(prov["dataset_indices"], dtype=torch.long)
        return [int(c) for c in ref.y_all[idx]], "labels of cond_provenance.dataset_indices (load_digits_tensor order)"
    src = str(prov.get("source", ""))
    if "rows 0..9" in src and n_conds == digits.NUM_CLASSES:
        return list(range(digits.NUM_CLASSES)), f"cond_provenance.source '{src}': row i = class i"
    return None, "unknown: compared with the mean within-class variance, no adherence"


def load_model(path: Path, recipe: Dict[str, Any]):
    from collapsecheck.load.dispatch import load_checkpoint
    from collapsecheck.load.classes import class_conditions
    from collapsecheck.load.conditions import tensor_conditions
    from collapsecheck.model.denoiser import build_denoiser, expected_condition_shape
    from collapsecheck.model.schedule import schedule_from_config

    ck = load_checkpoint(path)
    den = build_denoiser(ck.model, ck.model_class, ck.model_config)
    schedule = schedule_from_config(ck.scheduler_config)
    if den.kind == "class":
        null = recipe.get("null_condition")
        conds = class_conditions(int(ck.model_config["num_class_embeds"]), null_class=None if null is None else int(null))
        want = [int(c) for c in recipe["scan_conditions"]]
        keep = [i for i, v in enumerate(conds.values.tolist()) if v in want]
        conds = dataclasses.replace(
            conds, values=conds.values[keep], labels=tuple(conds.labels[i] for i in keep)
        )
    else:
        cond_root = path if (path / (recipe.get("cond_file") or "cond.safetensors")).exists() else path.parent
        cond_file = cond_root / (recipe.get("cond_file") or "cond.safetensors")
        conds = tensor_conditions(den.kind, cond_file, expected_condition_shape(den, ck.model_config))
    return ck, den, schedule, conds


def weights_hash(path: Path) -> str:
    """sha256 (16 hex) of the files of ``path/unet``: an entry is stale when the zoo retrained the model."""
    import hashlib

    h = hashlib.sha256()
    for f in sorted((path / "unet").rglob("*")):
        if f.is_file():
            h.update(f.name.encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def _r(x: float, n: int = 5) -> float:
    return round(float(x), n)


def cond_stats(
    x: torch.Tensor, intended: Optional[List[int]], conds, kind: str, ref: Reference, own_train: Optional[torch.Tensor]
) -> Dict[str, Any]:
    """Numbers for one guidance scale of the conditional grid; x is (C, S, 1, 8, 8), clipped."""
    C, S = x.shape[:2]
    flat = x.reshape(C * S, 1, 8, 8)
    var_c = [gm.mean_pixel_variance(x[c]) for c in range(C)]
    if intended is not None:
        ref_c = [float(ref.class_var[k]) for k in intended]
    else:
        ref_c = [float(ref.class_var.mean())] * C
    pw = [gm.mean_pairwise_rms(x[c]) for c in range(C)]
    pred, conf = ref.classify(flat)
    pred = pred.reshape(C, S)
    d, _ = gm.nn_rms(flat, ref.x_train)
    out: Dict[str, Any] = {
        "div_ratio": _r(gm.div_ratio(var_c, ref_c)),
        "div_ratio_per_condition": [_r(v / r, 4) for v, r in zip(var_c, ref_c)],
        "pixel_variance": _r(float(np.mean(var_c)), 6),
        "pairwise_rms": _r(float(np.mean(pw))),
        "pairwise_rms_per_condition": [_r(p, 4) for p in pw],
        "nn_rms_median": _r(float(d.median())),
        "nn_ratio": _r(float(d.median()) / ref.heldout_nn_median),
        "copy_fraction": _r(float((d < gm.COPY_RMS).double().mean()), 4),
        "classifier_confidence": _r(float(conf.mean()), 4),
    }
    if own_train is not None:
        d_own, _ = gm.nn_rms(flat, own_train)
        out["copy_fraction_own_training_set"] = _r(float((d_own < gm.COPY_RMS).double().mean()), 4)
    if intended is not None:
        hit = pred == np.asarray(intended)[:, None]
        out["adherence"] = _r(float(hit.mean()), 4)
        out["adherence_per_condition"] = [_r(float(h), 3) for h in hit.mean(axis=1)]
    if kind == "concat":
        values = conds.values
        err = torch.stack([gm.pooled_rms(x[c], values[c : c + 1].expand(S, -1, -1, -1)) for c in range(C)])
        out["cond_error"] = _r(float(err.mean()))
        out["cond_error_per_condition"] = [_r(float(e), 4) for e in err.mean(dim=1)]
    return out


def null_stats(x0: torch.Tensor, ref: Reference, own_train: Optional[torch.Tensor]) -> Dict[str, Any]:
    """Numbers for the null-branch samples (N, 1, 8, 8), clipped."""
    pred, conf = ref.classify(x0)
    d, _ = gm.nn_rms(x0, ref.x_train)
    var = gm.mean_pixel_variance(x0)
    hist = np.bincount(pred, minlength=digits.NUM_CLASSES)
    out = {
        "samples": int(x0.shape[0]),
        "div_ratio": _r(var / float(ref.class_var.mean())),
        "div_ratio_vs_total_variance": _r(var / ref.total_var),
        "pixel_variance": _r(var, 6),
        "pairwise_rms": _r(gm.mean_pairwise_rms(x0)),
        "null_class_entropy": _r(gm.normalized_entropy(torch.from_numpy(pred)), 4),
        "class_histogram": [int(h) for h in hist],
        "nn_rms_median": _r(float(d.median())),
        "nn_ratio": _r(float(d.median()) / ref.heldout_nn_median),
        "copy_fraction": _r(float((d < gm.COPY_RMS).double().mean()), 4),
        "classifier_confidence": _r(float(conf.mean()), 4),
    }
    if own_train is not None:
        d_own, _ = gm.nn_rms(x0, own_train)
        out["copy_fraction_own_training_set"] = _r(float((d_own < gm.COPY_RMS).double().mean()), 4)
    return out


def labels(per_w: Dict[str, Dict[str, Any]], expected_collapse: Optional[str], expected_null: Optional[str]) -> Dict[str, Any]:
    def w(v: float) -> Dict[str, Any]:
        return per_w[f"{v:g}"]

    div1 = w(gm.GT_COLLAPSE_W)["div_ratio"]
    collapse = gm.gt_collapse(div1)
    null0 = w(NULL_GUIDANCE)
    evidence = gm.null_learned_evidence(null0["nn_ratio"], null0["null_class_entropy"])
    lo, hi = w(gm.GUIDANCE_LOW_W), w(gm.GUIDANCE_HIGH_W)
    recipe_learned = None if expected_null is None else expected_null == "learned"
    out: Dict[str, Any] = {
        "gt_collapse": collapse,
        "gt_collapse_from": {"div_ratio_w1": div1},
        "expected_collapse": expected_collapse,
        "collapse_agrees": gm.agreement(expected_collapse, collapse),
        "gt_null_branch": expected_null,
        "learned_evidence": evidence,
        "learned_evidence_from": {"nn_ratio_w0": null0["nn_ratio"], "null_class_entropy": null0["null_class_entropy"]},
        "null_branch_agrees": None if recipe_learned is None else recipe_learned == evidence,
    }
    near = []

    def check(what: str, value: float, threshold: float) -> None:
        if abs(value - threshold) <= NEAR_THRESHOLD_REL * abs(threshold):
            near.append(f"{what} {value:.3g} vs {threshold:g}")

    check(f"div_ratio@w={gm.GT_COLLAPSE_W:g}", div1, gm.COLLAPSED_BELOW)
    check(f"div_ratio@w={gm.GT_COLLAPSE_W:g}", div1, gm.AT_RISK_BELOW)
    check("nn_ratio@w=0", null0["nn_ratio"], gm.NULL_NN_RATIO_MAX)
    check("null entropy", null0["null_class_entropy"], gm.NULL_ENTROPY_MIN)
    if "adherence" in lo and "adherence" in hi:
        check(f"nn_ratio@w={gm.GUIDANCE_HIGH_W:g}", hi["nn_ratio"], gm.GUIDANCE_NN_RATIO_MAX)
        drop = lo["adherence"] - hi["adherence"]
        if abs(drop - gm.GUIDANCE_ADHERENCE_SLACK) <= 0.01:
            near.append(f"adherence drop w={gm.GUIDANCE_LOW_W:g}->{gm.GUIDANCE_HIGH_W:g} {drop:.3f} vs {gm.GUIDANCE_ADHERENCE_SLACK}")
    out["near_threshold"] = near
    if "adherence" in lo and "adherence" in hi:
        args = (lo["adherence"], hi["adherence"], hi["nn_ratio"])
        out["gt_guidance"] = gm.gt_guidance(bool(recipe_learned), *args)
        out["gt_guidance_if_evidence"] = gm.gt_guidance(evidence, *args)
        out["gt_guidance_from"] = {
            "null_learned_recipe": recipe_learned,
            f"adherence_w{gm.GUIDANCE_LOW_W:g}": lo["adherence"],
            f"adherence_w{gm.GUIDANCE_HIGH_W:g}": hi["adherence"],
            f"nn_ratio_w{gm.GUIDANCE_HIGH_W:g}": hi["nn_ratio"],
        }
    else:
        out["gt_guidance"] = "not_steerable" if recipe_learned is False else None
        out["gt_guidance_if_evidence"] = None
    return out


def evaluate(path: Path, recipe: Dict[str, Any], ref: Reference, seeds: int, steps: int, batch_size: int,
             expected_collapse: Optional[str]) -> Dict[str, Any]:
    from collapsecheck.sample.grid import sample_grid

    t0 = time.time()
    ck, den, schedule, conds = load_model(path, recipe)
    C = len(conds)
    intended, intended_how = intended_classes(recipe, C, ref)
    own = None
    ts = recipe.get("training_set") or {}
    if ts.get("dataset_indices") is not None:
        own = ref.x_all[torch.tensor(ts["dataset_indices"], dtype=torch.long)]

    grid = sample_grid(den, schedule, conds, list(range(seeds)), list(COND_GUIDANCES), steps, batch_size)
    null_conds = dataclasses.replace(conds, values=conds.values[:1], labels=conds.labels[:1])
    null_grid = sample_grid(den, schedule, null_conds, list(range(seeds * C)), [NULL_GUIDANCE], steps, batch_size)
    nfe = grid.nfe + null_grid.nfe

    per_w: Dict[str, Dict[str, Any]] = {}
    x0 = null_grid.samples[0, 0].float().cpu().clamp(-1, 1)
    per_w[f"{NULL_GUIDANCE:g}"] = null_stats(x0, ref, own)
    for i, w in enumerate(COND_GUIDANCES):
        xw = grid.samples[i].float().cpu().clamp(-1, 1)
        per_w[f"{w:g}"] = cond_stats(xw, intended, conds, den.kind, ref, own)
    seconds = time.time() - t0
    entry = {
        "path": str(path),
        "conditioning": recipe["conditioning"],
        "kind": den.kind,
        "prediction_type": schedule.prediction_type,
        "model_class": ck.model_class,
        "content_hash": ck.content_hash,
        "weights_hash": weights_hash(path),
        "loader_notes": list(ck.notes),
        "conditions": len(conds),
        "condition_labels": list(conds.labels),
        "null_source": conds.null_source,
        "intended_classes": intended,
        "intended_classes_from": intended_how,
        "recipe": {
            "description": recipe.get("description"),
            "expected_collapse": expected_collapse,
            "expected_null_branch": recipe.get("expected_null_branch"),
            "cond_dropout_prob": recipe.get("cond_dropout_prob"),
            "training_set_size": ts.get("size"),
            "steps": recipe.get("steps"),
        },
        "seeds": seeds,
        "null_seeds": seeds * C,
        "steps": steps,
        "nfe": nfe,
        "seconds": round(seconds, 1),
        "per_w": per_w,
    }
    entry.update(labels(per_w, expected_collapse, recipe.get("expected_null_branch")))
    return entry


# ------------------------------------------------------------------------------------ markdown
def _f(v: Any, n: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.{n}f}"
    return str(v)


def _agree_cell(e: Dict[str, Any]) -> str:
    parts = []
    c = e.get("collapse_agrees")
    if c is False:
        parts.append(f"**DISAGREES: collapse** (recipe {e['expected_collapse']}, brute force {e['gt_collapse']})")
    n = e.get("null_branch_agrees")
    if n is False:
        ev = "learned" if e["learned_evidence"] else "not learned"
        parts.append(f"**DISAGREES: null branch** (recipe {e['gt_null_branch']}, evidence {ev})")
    if e.get("gt_guidance_if_evidence") not in (None, e.get("gt_guidance")):
        parts.append(f"guidance from evidence would be {e['gt_guidance_if_evidence']}")
    if e.get("near_threshold"):
        parts.append("near threshold: " + ", ".join(e["near_threshold"]))
    if c is None and e.get("expected_collapse") is None:
        parts.append("no collapse expectation in the recipe")
    if not any(p.startswith("**") for p in parts) and (c is not None or n is not None):
        parts.insert(0, "agrees")
    return "; ".join(parts) or "no expectation"


def _row(name: str, e: Dict[str, Any]) -> str:
    p = e["per_w"]
    rec = f"{e['conditioning']}, exp. {e['recipe']['expected_collapse'] or '-'} / null {e['recipe']['expected_null_branch'] or '-'}"
    adh = f"{_f(p['1'].get('adherence'))} / {_f(p['3'].get('adherence'))}"
    nn = f"{_f(p['0']['nn_ratio'])} / {_f(p['1']['nn_ratio'])} / {_f(p['3']['nn_ratio'])}"
    copy = f"{_f(p['0']['copy_fraction'])} / {_f(p['1']['copy_fraction'])}"
    null = f"{e['gt_null_branch'] or '-'} (evidence: {'learned' if e['learned_evidence'] else 'not learned'})"
    cells = [
        f"`{name}`", rec, _f(p["1"]["div_ratio"], 3), adh, nn, _f(p["0"]["null_class_entropy"]), copy,
        f"**{e['gt_collapse']}**", null, f"**{e['gt_guidance'] or '-'}**", _agree_cell(e),
    ]
    return "| " + " | ".join(cells) + " |"


HEADER = (
    "| model | recipe | div_ratio@w=1 | adherence@w=1 / 3 | nn_ratio@w=0 / 1 / 3 | null entropy | copy_fraction@w=0 / 1 "
    "| gt_collapse | gt_null_branch | gt_guidance | agreement with recipe |\n"
    "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- | --- | --- |"
)

DETAIL_HEADER = (
    "| model | w | div_ratio | pairwise RMS | adherence | nn_ratio | copy_fraction | classifier confidence | cond_error |\n"
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
)


def _detail_rows(name: str, e: Dict[str, Any]) -> List[str]:
    rows = []
    for w, s in e["per_w"].items():
        rows.append(
            "| " + " | ".join([
                f"`{name}`", w, _f(s["div_ratio"], 3), _f(s["pairwise_rms"], 3), _f(s.get("adherence")),
                _f(s["nn_ratio"]), _f(s["copy_fraction"]), _f(s["classifier_confidence"]), _f(s.get("cond_error"), 3),
            ]) + " |"
        )
    return rows


def write_markdown(data: Dict[str, Any], path: Path) -> None:
    meta = data["meta"]
    models, series = data.get("models", {}), data.get("series", {})
    L = [
        "# Zoo ground truth (brute-force sampling)",
        "",
        "Generated by `examples/zoo/ground_truth.py` from the models in `examples/zoo/out/` "
        "(do not edit by hand; the numbers are in `examples/zoo/ground_truth.json`).",
        "",
        f"Every model: {meta['seeds']} seeds x {meta.get('conditions', 10)} conditions at w = "
        f"{', '.join(f'{w:g}' for w in COND_GUIDANCES)}, plus {meta['seeds'] * 10} seeds of the null branch alone (w = 0); "
        f"deterministic DDIM, {meta['steps']} steps (collapsecheck's sampler); samples clipped to [-1, 1].",
        "",
        "## Models",
        "",
        HEADER,
    ]
    for name, e in models.items():
        L.append(_row(name, e))
    groups: Dict[str, List[str]] = {}
    for name, e in list(models.items()) + list(series.items()):
        ar = e.get("adherence_reference")
        if ar and ar["misclassified"]:
            bad = ", ".join(f"dataset digit {m['dataset_index']} (a {m['label']}, read as {m['predicted']})" for m in ar["misclassified"])
            msg = (f"the classifier gets {ar['classifier_accuracy']:.2f} of {ar['images']} right; it misreads {bad}, "
                   "so samples that copy those images count as non-adherent")
            groups.setdefault(msg, []).append(f"`{name}`")
    if groups:
        L += ["", "Adherence ceilings (the reference classifier on the real images behind the conditions):", ""]
        L += [f"- {', '.join(names)}: {msg}." for msg, names in groups.items()]
    missing = meta.get("missing") or []
    if missing:
        L += ["", "Missing (never appeared in the zoo folder): " + ", ".join(f"`{m}`" for m in missing) + "."]
    L += [
        "",
        "Columns: `div_ratio` = mean over conditions of the per-pixel variance across seeds, divided by the real "
        "within-class variance of the condition's class; adherence = fraction of samples the reference classifier "
        "puts in the condition's class; `nn_ratio` = median RMS distance of the samples to their nearest training "
        "image over the same median for held-out real digits (~1 data-like, >> 1 off the data, << 1 copies); "
        "null entropy = class-histogram entropy of the w = 0 samples / log 10; `copy_fraction` = share of samples "
        f"within RMS {gm.COPY_RMS} of a training image.",
        "",
        "## Series (over-fine-tuning checkpoints)",
        "",
    ]
    if series:
        L.append(HEADER)
        for name, e in series.items():
            L.append(_row(name, e))
        L += ["", "Where each checkpoint's expectation comes from (the zoo recipe):", ""]
        for name, e in series.items():
            L.append(f"- `{name}` (step {e.get('step')}): {e['recipe'].get('expected_source') or 'not stated'}")
    else:
        L.append("No series checkpoints were found.")
    L += ["", "## Rules", ""]
    for k, v in gm.rules().items():
        if k != "constants":
            L.append(f"- `{k}`: {v}")
    L += [
        "- `steerable` says guidance keeps or raises adherence without breaking the images at w = 3; it says nothing "
        "about diversity (a memorizing model can be steerable and collapsed at every w; see the per-w table).",
        f"- A label number within {NEAR_THRESHOLD_REL:.0%} of its threshold is listed as *near threshold*: that label "
        "could flip with another seed set or training run.",
        "- Agreement: `gt_collapse` is compared with the recipe's `expected_collapse`; `learned_evidence` with the "
        "recipe's `expected_null_branch`.  Disagreements are printed in bold, never resolved silently.",
        "",
        "## Real-data references",
        "",
        f"- Reference classifier: {meta['classifier']}; held-out accuracy **{meta['classifier_accuracy']:.3f}** "
        f"({meta['heldout_size']} held-out digits), mean max-probability on held-out digits {meta['classifier_heldout_confidence']:.3f}.",
        f"- Real within-class per-pixel variance (all digits, mean over classes): {meta['real_within_class_variance_mean']:.4f} "
        f"(held-out only: {meta['real_within_class_variance_heldout_mean']:.4f}); all-class variance {meta['real_total_variance']:.4f}.",
        f"- Held-out digits: median nearest-training-image RMS {meta['heldout_nn_rms_median']:.4f} (the `nn_ratio` unit); "
        f"copy fraction {meta['heldout_copy_fraction']:.3f}; mean within-class pairwise RMS {meta['heldout_within_class_pairwise_rms']:.3f}.",
        f"- Concat models (condition = 4x4 average pool): even a perfect posterior sampler has less spread than a "
        f"whole class. Upper bound of its div_ratio (within-class variance of the image minus its upsampled pool): "
        f"{meta['concat_reference_div_ratio_residual_bound']:.3f}; spread of the {CONCAT_KNN} digits with the nearest pools: "
        f"{meta[f'concat_reference_div_ratio_knn{CONCAT_KNN}']:.3f} (rough; their pools still differ).",
        "",
        "## Per guidance scale",
        "",
        "w = 0 rows are the null-branch samples (divided by the mean within-class variance; the unconditional "
        "spread includes the between-class spread, so a healthy null branch gives > 1). `cond_error` (concat "
        "models) = RMS between the 4x4 average pools of the sample and of the condition.",
        "",
        DETAIL_HEADER,
    ]
    for name, e in list(models.items()) + list(series.items()):
        L += _detail_rows(name, e)
    timing = [f"`{n}` {e['seconds']:.0f} s ({e['nfe'] / 1e3:.0f}k NFE)" for n, e in list(models.items()) + list(series.items())]
    L += [
        "",
        "## How to reproduce",
        "",
        "```",
        "python examples/zoo/train_zoo.py --out examples/zoo/out",
        f"python examples/zoo/ground_truth.py --zoo examples/zoo/out --seeds {meta['seeds']} --steps {meta['steps']}",
        "```",
        "",
        f"torch {meta['torch']}, diffusers {meta['diffusers']}, scikit-learn {meta['sklearn']}, "
        f"{meta['threads']} CPU thread(s). Time per model: " + "; ".join(timing) + ".",
        "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(L))


# ------------------------------------------------------------------------------------ main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--zoo", type=Path, default=HERE / "out")
    ap.add_argument("--seeds", type=int, default=64)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--only", nargs="+", default=None, help="evaluate only these models (series: 'series' or 'series/checkpoint-N')")
    ap.add_argument("--skip-existing", action="store_true", help="keep entries already in the JSON (same seeds and steps)")
    ap.add_argument("--markdown-only", action="store_true", help="rebuild the Markdown from the JSON")
    ap.add_argument("--json", type=Path, default=DEFAULT_JSON)
    ap.add_argument("--markdown", type=Path, default=DEFAULT_MD)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)

    data: Dict[str, Any] = {"meta": {}, "models": {}, "series": {}}
    if a.json.exists() and (a.only or a.skip_existing or a.markdown_only):
        data = json.loads(a.json.read_text())
        data.setdefault("models", {})
        data.setdefault("series", {})
    if a.markdown_only:
        write_markdown(data, a.markdown)
        print(f"wrote {a.markdown}")
        return 0
    old_meta = data.get("meta") or {}
    if old_meta and (old_meta.get("seeds"), old_meta.get("steps")) != (a.seeds, a.steps):
        print(f"note: JSON had seeds={old_meta.get('seeds')} steps={old_meta.get('steps')}; starting fresh", flush=True)
        data = {"meta": {}, "models": {}, "series": {}}

    import diffusers
    import sklearn

    ref = Reference()
    print(f"reference classifier held-out accuracy {ref.clf_accuracy:.3f}; held-out nn median {ref.heldout_nn_median:.4f}", flush=True)
    data["meta"] = {
        "seeds": a.seeds,
        "null_seeds": a.seeds * digits.NUM_CLASSES,
        "steps": a.steps,
        "guidance": list(ALL_GUIDANCES),
        "sampler": "collapsecheck.sample.grid.sample_grid (deterministic DDIM, eta 0), seeds 0..S-1 per condition",
        **ref.meta(),
        "rules": gm.rules(),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "sklearn": sklearn.__version__,
        "python": platform.python_version(),
        "threads": a.threads,
        "command": "python " + " ".join(shlex.quote(x) for x in [os.path.relpath(__file__, REPO)] + list(argv if argv is not None else sys.argv[1:])),
    }

    found = find_models(a.zoo)
    for name, recipe in found.items():
        if recipe.get("checkpoints"):
            for ck in recipe["checkpoints"]:
                key = f"{name}/{ck['path']}"
                if a.only and name not in a.only and key not in a.only:
                    continue
                if a.skip_existing and _fresh(data["series"].get(key), a.zoo / name / ck["path"]):
                    _refresh_expectation(data["series"][key], ck)
                    annotate(data["series"][key], recipe, ref)
                    continue
                print(f"[{key}] sampling ...", flush=True)
                e = _try(evaluate, a.zoo / name / ck["path"], recipe, ref, a.seeds, a.steps, a.batch_size, ck.get("expected_collapse"))
                if e is None:
                    continue
                e["step"] = ck["step"]
                _refresh_expectation(e, ck)
                annotate(e, recipe, ref)
                data["series"][key] = e
                _save(data, a)
                print(f"[{key}] {e['seconds']:.0f}s div@1 {e['per_w']['1']['div_ratio']:.3f} -> {e['gt_collapse']}", flush=True)
            continue
        if a.only and name not in a.only:
            continue
        if a.skip_existing and _fresh(data["models"].get(name), a.zoo / name):
            annotate(data["models"][name], recipe, ref)
            continue
        print(f"[{name}] sampling ...", flush=True)
        e = _try(evaluate, a.zoo / name, recipe, ref, a.seeds, a.steps, a.batch_size, recipe.get("expected_collapse"))
        if e is None:
            continue
        annotate(e, recipe, ref)
        data["models"][name] = e
        _save(data, a)
        print(f"[{name}] {e['seconds']:.0f}s div@1 {e['per_w']['1']['div_ratio']:.3f} -> {e['gt_collapse']} "
              f"(recipe {e['expected_collapse']}); null evidence {e['learned_evidence']}; guidance {e['gt_guidance']}", flush=True)
    _save(data, a)
    return 0


def annotate(entry: Dict[str, Any], recipe: Dict[str, Any], ref: Reference) -> None:
    """The classifier on the real images behind the conditions: the ceiling of ``adherence``.

    concat models: the held-out digits the conditions were made from; models trained on a few
    images per class: those training images (a memorizing model reproduces them exactly, so
    adherence cannot exceed the classifier's accuracy on them).  Other models: not applicable.
    """
    prov = recipe.get("cond_provenance") or {}
    ts = recipe.get("training_set") or {}
    if recipe["conditioning"] == "concat" and prov.get("dataset_indices") is not None:
        idx, what = prov["dataset_indices"], "the real digits the conditions were made from"
    elif ts.get("dataset_indices") is not None:
        idx, what = ts["dataset_indices"], "the recipe's few-image training set (for the series: the fine-tuning set)"
    else:
        entry["adherence_reference"] = None
        return
    idx_t = torch.tensor(idx, dtype=torch.long)
    pred, conf = ref.classify(ref.x_all[idx_t])
    truth = ref.y_all[idx_t].numpy()
    entry["adherence_reference"] = {
        "images": what,
        "classifier_accuracy": _r(float((pred == truth).mean()), 4),
        "misclassified": [{"dataset_index": int(i), "label": int(t), "predicted": int(p_)}
                          for i, t, p_ in zip(idx, truth, pred) if t != p_],
        "classifier_confidence": [_r(float(c), 3) for c in conf],
    }


def _refresh_expectation(entry: Dict[str, Any], ck: Dict[str, Any]) -> None:
    """A series checkpoint's expectation (and where it came from) as the recipe states it now."""
    exp = ck.get("expected_collapse")
    entry["recipe"]["expected_collapse"] = exp
    entry["recipe"]["expected_source"] = ck.get("expected_source")
    entry["expected_collapse"] = exp
    entry["collapse_agrees"] = gm.agreement(exp, entry["gt_collapse"])


def _fresh(entry: Optional[Dict[str, Any]], path: Path) -> bool:
    return entry is not None and entry.get("weights_hash") == weights_hash(path)


def _try(fn, *args):
    """A model folder can be rewritten while the zoo trains: report the failure and go on."""
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001
        print(f"  FAILED: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", flush=True)
        return None


def _save(data: Dict[str, Any], a) -> None:
    for e in list(data["models"].values()) + list(data["series"].values()):
        e.update(labels(e["per_w"], e["expected_collapse"], e["gt_null_branch"]))  # rules may have changed
    found = set(find_models(a.zoo))
    order = expected_names()
    data["meta"]["missing"] = [n for n in order if n not in found]
    rank = {n: i for i, n in enumerate(order)}
    data["models"] = dict(sorted(data["models"].items(), key=lambda kv: (rank.get(kv[0], 99), kv[0])))
    data["series"] = dict(sorted(data["series"].items(), key=lambda kv: kv[1].get("step", 0)))
    a.json.write_text(json.dumps(data, indent=1) + "\n")
    write_markdown(data, a.markdown)


if __name__ == "__main__":
    raise SystemExit(main())
