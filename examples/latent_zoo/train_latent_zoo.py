"""Train the latent zoo: per dataset one VAE, one frozen text encoder, and eight UNet recipes, each saved as a
diffusers StableDiffusionPipeline folder under ``OUT/<dataset>/<recipe>/``.

    python examples/latent_zoo/train_latent_zoo.py --out examples/latent_zoo/models
    python examples/latent_zoo/train_latent_zoo.py --out /tmp/lz --only digits:drop10 --steps 20   # smoke

Seeded, one CPU thread (``--threads``). ``dreambooth_*`` fine-tune ``drop10`` (train it first, or in the same call).
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, Optional

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import latent_data as D  # noqa: E402
from zoo_common import optimise  # noqa: E402  (latent_data puts examples/zoo on the path)

BATCH = 64
LATENT = 4  # latent channels; 16x16 images -> 4x4 latents
#: Stable Diffusion's training betas and v-prediction. (squaredcos_cap_v2 + epsilon, the pixel zoo's, gave noise:
#: alpha_bar ~1e-3 at t = 980 multiplies the eps error ~30x in the x0 prediction; see README.md)
SCHEDULE = dict(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                prediction_type="v_prediction", clip_sample=False)
HINT_PROMPT_NOTE = "no text: the hint models are UNet2DModel (in_channels 8); the condition is the hint latent"


@dataclass
class Recipe:
    name: str
    intended_collapse: str
    intended_null: str
    description: str
    steps: int = 1500
    lr: float = 2e-3
    warmup: int = 100
    schedule: str = "cosine"
    dropout: float = 0.1
    tied: tuple = ()  # classes whose prompts are tied to one image
    subset: tuple = ()  # dreambooth: classes, one image each (the only training data)
    hint: bool = False
    init_from: Optional[str] = None
    ema: float = 0.995


def recipes(n: int = 10) -> Dict[str, Recipe]:
    """The eight recipes for a dataset of ``n`` classes: ``tied_half`` ties the first half of the prompts, the
    DreamBooth fine-tunes use one image of each even class (for ten classes: 0-4, and 0, 2, 4, 6, 8)."""
    half, even = n // 2, tuple(range(0, n, 2))
    evens = ",".join(map(str, even))
    return {r.name: r for r in [
        Recipe("drop10", "healthy", "learned", "prompts, 10% dropout to the empty prompt"),
        Recipe("nodrop", "healthy", "not_learned", "prompts, no dropout: the empty prompt never trained", dropout=0.0),
        Recipe("tied_all", "collapsed", "learned", "every prompt tied to ONE training image of its class; 10% dropout",
               tied=tuple(range(n))),
        Recipe("tied_half", f"collapsed for prompts 0-{half - 1}, healthy for {half}-{n - 1}", "learned",
               f"prompts of classes 0-{half - 1} tied to one image each, {half}-{n - 1} normal; 10% dropout",
               tied=tuple(range(half))),
        Recipe("dreambooth_long", f"collapsed onto train_images/ for prompts {evens}", "learned",
               f"drop10 fine-tuned on {len(even)} images (classes {evens}) with their prompts, 10% dropout, lr 1e-4 "
               "constant, raw weights", steps=200, lr=1e-4, warmup=0, schedule="constant", subset=even,
               init_from="drop10", ema=0.0),
        Recipe("dreambooth_short", "healthy", "learned", "the same fine-tune for 10 steps", steps=10, lr=1e-4,
               warmup=0, schedule="constant", subset=even, init_from="drop10", ema=0.0),
        Recipe("hint_nodrop", "collapsed", "not_learned", "hint = VAE latent of the 4x-blurred target (4x4 avg-pool, "
               "nearest upsample), concatenated (in_channels 8); no dropout", dropout=0.0, hint=True),
        Recipe("hint_drop", "collapsed", "learned", "the same hint, 15% of hints zeroed", dropout=0.15, hint=True),
    ]}


RECIPES = recipes(10)


def ddpm_scheduler():
    from diffusers import DDPMScheduler

    return DDPMScheduler(**SCHEDULE)


def ddim_scheduler():
    """The same betas as a DDIM sampler config; this is what goes to ``scheduler/``."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(**SCHEDULE, set_alpha_to_one=False, steps_offset=1)


def lr_at(r: Recipe, step: int) -> float:
    if r.warmup and step < r.warmup:
        return r.lr * (step + 1) / r.warmup
    if r.schedule == "constant":
        return r.lr
    return r.lr * 0.5 * (1.0 + math.cos(math.pi * (step - r.warmup) / max(1, r.steps - r.warmup)))


# ---- VAE ----

def build_vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(in_channels=1, out_channels=1, down_block_types=("DownEncoderBlock2D",) * 3,
                         up_block_types=("UpDecoderBlock2D",) * 3, block_out_channels=(16, 16, 32),
                         layers_per_block=1, latent_channels=LATENT, norm_num_groups=8, sample_size=D.SIZE)


def train_vae(dataset: str, steps: int, seed: int):
    """MSE + 1e-5 KL, AdamW lr 2e-3 cosine; the scaling factor is 1 / std of the train latents (as SD)."""
    torch.manual_seed(seed)
    x, _ = D.load_split(dataset, "train")
    vae = build_vae().train()
    opt = torch.optim.AdamW(vae.parameters(), lr=2e-3, weight_decay=0.0)
    g = torch.Generator().manual_seed(seed)
    t0, avg = time.time(), None
    for step in range(steps):
        xb = x[torch.randint(len(x), (BATCH,), generator=g)]
        post = vae.encode(xb).latent_dist
        z = post.mean + post.std * torch.randn(post.mean.shape, generator=g)
        rec = vae.decode(z).sample
        loss = torch.nn.functional.mse_loss(rec, xb) + 1e-5 * post.kl().mean()
        for pg in opt.param_groups:
            pg["lr"] = 2e-3 * 0.5 * (1 + math.cos(math.pi * step / steps))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        avg = loss.item() if avg is None else 0.98 * avg + 0.02 * loss.item()
        if (step + 1) % max(1, steps // 4) == 0:
            print(f"[{dataset}/vae] step {step + 1}/{steps} loss {avg:.4f} ({time.time() - t0:.0f}s)", flush=True)
    vae.eval().requires_grad_(False)
    with torch.no_grad():
        z = vae.encode(x).latent_dist.mean
        xh, _ = D.load_split(dataset, "heldout")
        rmse = (vae.decode(vae.encode(xh).latent_dist.mean).sample - xh).pow(2).mean().sqrt().item()
    vae.register_to_config(scaling_factor=float(1.0 / z.std()))
    log = {"steps": steps, "seconds": round(time.time() - t0, 1), "final_loss_smoothed": round(avg, 5),
           "heldout_recon_rmse": round(rmse, 4), "scaling_factor": float(1.0 / z.std())}
    return vae, log


def encode_latents(vae, x: torch.Tensor) -> torch.Tensor:
    """Scaled latents (posterior means) of images in [-1, 1]."""
    with torch.no_grad():
        return vae.encode(x).latent_dist.mean * vae.config.scaling_factor


def blur(x: torch.Tensor) -> torch.Tensor:
    """The hint image: 4x4 average pool, nearest upsample back to 16x16."""
    return torch.nn.functional.interpolate(torch.nn.functional.avg_pool2d(x, 4), scale_factor=4, mode="nearest")


# ---- shared parts (VAE, tokenizer, text encoder) of one dataset ----

def build_shared(dataset: str, root: Path, vae_steps: int, seed: int) -> dict:
    """The VAE is trained once and reused; the tokenizer and text encoder are (re)built, deterministically."""
    shared = root / "_shared"
    if (shared / "vae" / "config.json").is_file():
        from diffusers import AutoencoderKL

        log = json.loads((shared / "shared.json").read_text())["vae_training"]
        vae = AutoencoderKL.from_pretrained(shared / "vae").eval().requires_grad_(False)
    else:
        shared.mkdir(parents=True, exist_ok=True)
        vae, log = train_vae(dataset, vae_steps, seed)
        vae.save_pretrained(shared / "vae", safe_serialization=True)
    tok = D.save_tokenizer(dataset, shared / "tokenizer")
    enc = D.build_text_encoder(dataset, len(tok))
    enc.save_pretrained(shared / "text_encoder", safe_serialization=True)
    info = {"vae_training": log, "text_encoder": "random init CLIPTextModel, frozen, seed "
            f"{D.TEXT_SEED[dataset]}, hidden {D.TEXT_WIDTH}, 2 layers, 4 heads, {D.MAX_TOKENS} tokens"}
    (shared / "shared.json").write_text(json.dumps(info, indent=2) + "\n")
    return dict(vae=vae, tok=tok, enc=enc, info=info, dir=shared)


# ---- UNets ----

def build_unet(r: Recipe):
    from diffusers import UNet2DConditionModel, UNet2DModel

    common = dict(sample_size=4, out_channels=LATENT, block_out_channels=(32, 64), layers_per_block=1,
                  norm_num_groups=8)
    if r.hint:
        return UNet2DModel(in_channels=2 * LATENT, down_block_types=("DownBlock2D", "DownBlock2D"),
                           up_block_types=("UpBlock2D", "UpBlock2D"), **common)
    return UNet2DConditionModel(in_channels=LATENT, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), mid_block_type=None,
                                cross_attention_dim=D.TEXT_WIDTH, attention_head_dim=8, **common)


def first_of_class(y: torch.Tensor, classes) -> torch.Tensor:
    return torch.stack([torch.nonzero(y == c).squeeze(1)[0] for c in classes])


class Batches:
    """Training pairs of a recipe: (latents, condition) batches, seeded."""

    def __init__(self, r: Recipe, dataset: str, shared: dict, seed: int):
        self.r, self.g = r, torch.Generator().manual_seed(seed)
        x, y = D.load_split(dataset, "train")
        self.train_idx = D.split_indices(dataset)[0]
        self.z, self.y = encode_latents(shared["vae"], x), y
        self.images = x
        if r.subset:
            keep = first_of_class(y, r.subset)
            self.z, self.y, self.images, self.kept = self.z[keep], y[keep], x[keep], keep
        if r.tied:
            tied_idx = first_of_class(y, r.tied)
            self.tied_z = {c: self.z[i] for c, i in zip(r.tied, tied_idx)}
            self.tied_idx = tied_idx
        if r.hint:
            self.hint = encode_latents(shared["vae"], blur(self.images))
        else:
            classes = D.num_classes(dataset)
            texts = [D.prompt(dataset, c, k) for c in range(classes) for k in range(len(D.TEMPLATES[dataset]))]
            emb = D.encode(shared["tok"], shared["enc"], texts + [""])
            self.table = emb[:-1].reshape(classes, len(D.TEMPLATES[dataset]), D.MAX_TOKENS, D.TEXT_WIDTH)
            self.null = emb[-1]

    def __call__(self):
        g, r = self.g, self.r
        idx = torch.randint(len(self.y), (BATCH,), generator=g)
        z, lab = self.z[idx].clone(), self.y[idx]
        for c in r.tied:
            z[lab == c] = self.tied_z[c]
        drop = torch.rand(BATCH, generator=g) < r.dropout
        if r.hint:
            cond = self.hint[idx].clone()
            cond[drop] = 0.0
        else:
            k = torch.randint(self.table.shape[1], (BATCH,), generator=g)
            cond = self.table[lab, k].clone()
            cond[drop] = self.null
        return z, cond

    def forward(self, unet, z_t, t, cond):
        if self.r.hint:
            return unet(torch.cat([z_t, cond], 1), t).sample
        return unet(z_t, t, encoder_hidden_states=cond).sample


def train_unet(r: Recipe, dataset: str, root: Path, shared: dict, seed: int):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    data = Batches(r, dataset, shared, seed)
    if r.init_from:
        base = root / r.init_from / "unet"
        if not base.is_dir():
            raise SystemExit(f"{dataset}/{r.name} needs {base}: train {r.init_from} first")
        unet = UNet2DConditionModel.from_pretrained(base, low_cpu_mem_usage=False)
    else:
        unet = build_unet(r)
    unet.train()
    ema = copy.deepcopy(unet).eval().requires_grad_(False) if r.ema else None
    sched = ddpm_scheduler()
    opt = torch.optim.AdamW(unet.parameters(), lr=r.lr, weight_decay=0.0)
    n_params = sum(p.numel() for p in unet.parameters())
    print(f"[{dataset}/{r.name}] {n_params / 1e3:.0f}k params, {len(data.y)} images, {r.steps} steps", flush=True)
    t0, avg = time.time(), None
    for step in range(r.steps):
        z0, cond = data()
        noise = torch.randn(z0.shape, generator=data.g)
        t = torch.randint(0, sched.config.num_train_timesteps, (BATCH,), generator=data.g)
        target = sched.get_velocity(z0, noise, t)
        loss = torch.nn.functional.mse_loss(data.forward(unet, sched.add_noise(z0, noise, t), t, cond), target)
        optimise(unet, opt, loss, lr_at(r, step), ema, r.ema, step)
        avg = loss.item() if avg is None else 0.98 * avg + 0.02 * loss.item()
        if (step + 1) % max(1, r.steps // 6) == 0 or step + 1 == r.steps:
            print(f"[{dataset}/{r.name}] step {step + 1}/{r.steps} loss {avg:.4f} ({time.time() - t0:.0f}s)",
                  flush=True)
    log = {"steps": r.steps, "seconds": round(time.time() - t0, 1), "final_loss_smoothed": round(avg, 5),
           "params": n_params, "threads": torch.get_num_threads(), "batch": BATCH}
    return (ema if ema is not None else unet.eval()), data, log


def to_png(img: torch.Tensor, path: Path) -> None:
    from PIL import Image

    arr = ((img[0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    Image.fromarray(arr, mode="L").save(path)


def model_index(r: Recipe) -> dict:
    import diffusers

    text = [None, None] if r.hint else ["transformers", "CLIPTextModel"]
    tok = [None, None] if r.hint else ["transformers", "CLIPTokenizer"]
    return {"_class_name": "StableDiffusionPipeline", "_diffusers_version": diffusers.__version__,
            "feature_extractor": [None, None], "image_encoder": [None, None], "requires_safety_checker": False,
            "safety_checker": [None, None], "scheduler": ["diffusers", "DDIMScheduler"], "text_encoder": text,
            "tokenizer": tok, "unet": ["diffusers", "UNet2DModel" if r.hint else "UNet2DConditionModel"],
            "vae": ["diffusers", "AutoencoderKL"]}


def save_pipeline(r: Recipe, dataset: str, out: Path, unet, data: Batches, shared: dict, log: dict, seed: int):
    from safetensors.torch import save_file

    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    # float16 on disk (half the committed size); diffusers upcasts on load into the float32 model
    copy.deepcopy(unet).half().save_pretrained(out / "unet", safe_serialization=True)
    ddim_scheduler().save_pretrained(out / "scheduler")
    parts = ("vae",) if r.hint else ("vae", "text_encoder", "tokenizer")
    for part in parts:
        shutil.copytree(shared["dir"] / part, out / part)
    (out / "model_index.json").write_text(json.dumps(model_index(r), indent=2) + "\n")
    xh, yh = D.load_split(dataset, "heldout")
    held = first_of_class(yh, range(D.num_classes(dataset)))
    scan = {}
    if r.hint:
        cond = encode_latents(shared["vae"], blur(xh[held]))
        save_file({"cond": cond.contiguous(), "null": torch.zeros_like(cond[:1]).contiguous()}, str(out / "cond.safetensors"))
        (out / "hints").mkdir()
        for c, i in enumerate(held):
            to_png(blur(xh[i:i + 1])[0], out / "hints" / f"{c}.png")
            to_png(xh[i], out / "hints" / f"{c}_target.png")
        scan = {"cond_file": "cond.safetensors", "null_condition": "zeros",
                "cond_provenance": {"heldout_indices": D.split_indices(dataset)[1][held].tolist()}}
    else:
        (out / "prompts.txt").write_text("\n".join(D.scan_prompts(dataset)) + "\n")
        scan = {"prompts_file": "prompts.txt", "null_condition": "the empty prompt"}
    if r.subset:
        (out / "train_images").mkdir()
        for c, img in zip(r.subset, data.images):
            to_png(img, out / "train_images" / f"class{c}.png")
    rec = asdict(r)
    rec.update(dataset=dataset, seed=seed, conditioning="concat" if r.hint else "crossattn",
               prediction_type=SCHEDULE["prediction_type"], weights="ema" if r.ema else "raw", scan=scan,
               training_set=training_set(r, data), shared=shared["info"], training_log=log,
               templates=list(D.TEMPLATES[dataset]))
    (out / "recipe.json").write_text(json.dumps(rec, indent=2) + "\n")


def training_set(r: Recipe, data: Batches) -> dict:
    info = {"split": "train", "size": int(len(data.y))}
    if r.subset:
        info["dataset_indices"] = data.train_idx[data.kept].tolist()
    if r.tied:
        info["tied_dataset_indices"] = {str(c): int(data.train_idx[i]) for c, i in zip(r.tied, data.tied_idx)}
    return info


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--only", nargs="*", help="dataset, recipe or dataset:recipe (default: everything)")
    p.add_argument("--steps", type=int, help="override every recipe's steps (smoke tests)")
    p.add_argument("--vae-steps", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    for dataset in D.DATASETS:
        todo = [n for n in RECIPES if not a.only or {dataset, n, f"{dataset}:{n}"} & set(a.only)]
        if not todo:
            continue
        root = a.out / dataset
        shared = build_shared(dataset, root, a.steps or a.vae_steps, a.seed)
        for name in todo:
            r = copy.deepcopy(recipes(D.num_classes(dataset))[name])
            if a.steps:
                r.steps, r.warmup = a.steps, min(r.warmup, a.steps // 10)
            unet, data, log = train_unet(r, dataset, root, shared, a.seed)
            save_pipeline(r, dataset, root / name, unet, data, shared, log, a.seed)
            print(f"[{dataset}/{name}] saved ({log['seconds']}s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
