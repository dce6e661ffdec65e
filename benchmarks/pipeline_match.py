"""collapsecheck's sampler against diffusers' own pipelines: the largest difference between the final latents.

Tiny random-weight pipelines written in-process (those of ``tests/test_flux.py`` and ``tests/test_sd35.py``); for
each, the same prompt, seeds and steps through ``FluxPipeline`` / ``StableDiffusion3Pipeline``
(``output_type="latent"``) and through collapsecheck's grid sampler (the model's VP view, deterministic DDIM on the
pipeline's sigmas). Prints one table: model, w (embedded guidance for Flux dev, CFG for SD3.5, none for schnell),
steps, max |ours - diffusers| and max |latent|. Run from the repository root (a minute on a CPU)::

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 python benchmarks/pipeline_match.py
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

SEEDS = [0, 1, 2]


def ours(root: Path, prompts: Path, w: float, steps: int):
    from collapsecheck.config import make_config
    from collapsecheck.model.parametrization import vp_denoiser
    from collapsecheck.run import conditions_of, load, schedule_for
    from collapsecheck.sample.grid import sample_grid

    config = make_config(checkpoint=str(root), prompts=str(prompts), steps=steps, seeds=len(SEEDS))
    ckpt, den = load(config)
    schedule = schedule_for(config, ckpt, den)
    return sample_grid(vp_denoiser(den, schedule), schedule, conditions_of(config, ckpt, den), SEEDS, [w], steps,
                       64).samples[0, 0]  # the first prompt, (S, C, H, W)


def theirs(root: Path, flux: bool, w: float, steps: int, seed: int):
    import torch
    from diffusers import FluxPipeline, StableDiffusion3Pipeline

    if flux:
        pipe = FluxPipeline.from_pretrained(str(root), local_files_only=True)
    else:
        pipe = StableDiffusion3Pipeline.from_pretrained(str(root), local_files_only=True, vae=None)
    pipe.set_progress_bar_config(disable=True)
    size = 8 * pipe.vae_scale_factor
    out = pipe(prompt="cat", height=size, width=size, num_inference_steps=steps, guidance_scale=w,
               generator=torch.Generator().manual_seed(seed), output_type="latent").images
    return pipe._unpack_latents(out, size, size, pipe.vae_scale_factor)[0] if flux else out[0]


def main() -> None:
    from helpers_flux import write_flux_pipeline
    from test_sd35 import write_sd35

    work = Path(tempfile.mkdtemp(prefix="pipeline_match_"))
    prompts = work / "p.txt"
    prompts.write_text("cat\ndog\n")
    cases = [("flux-dev", write_flux_pipeline(work / "dev", dev=True), True, 3.5),
             ("flux-schnell", write_flux_pipeline(work / "schnell", dev=False), True, 1.0),
             ("sd35-large", write_sd35(work / "large", medium=False), False, 4.5),
             ("sd35-medium", write_sd35(work / "medium", medium=True), False, 4.5)]
    print("| model | w | steps | max abs diff | max abs latent |\n| --- | --- | --- | --- | --- |")
    for name, root, flux, w in cases:
        for steps in (4, 28):
            mine = ours(root, prompts, w, steps)
            diff = max(float((mine[s] - theirs(root, flux, w, steps, seed)).abs().max()) for s, seed in enumerate(SEEDS))
            print(f"| {name} | {w:g} | {steps} | {diff:.1e} | {float(mine.abs().max()):.3g} |")


if __name__ == "__main__":
    main()
