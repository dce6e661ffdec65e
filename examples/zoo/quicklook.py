"""Quick sanity look at zoo models with a small self-contained DDIM sampler.

    python examples/zoo/quicklook.py examples/zoo/out/class_dropout [more model dirs ...]
        [--seeds 8] [--steps 50] [--guidance 1.0] [--png] [--null-test]

For each model (a folder with unet/ + scheduler/, or a series folder with checkpoint-*/): samples
``seeds`` x ``conditions`` images with deterministic DDIM (eta = 0), plus the null condition, and prints

* divratio: per-pixel variance across seeds over the real within-class variance (mean over conditions);
* rms[c]: mean pairwise RMS distance across seeds for each condition (pixel units of [-1, 1]);
* near-dup: fraction of seed pairs closer than 0.1 RMS;
* nn_train: mean RMS distance from each sample to its nearest training image (memorization: ~0);
* null_rms / null_nn: the same for samples from the null condition;
* the real-data reference: within-class pairwise RMS of held-out digits;
* with --null-test, an ICG-style null-branch ratio per timestep (see null_branch_ratio).

``--png`` writes quicklook.png in the model folder (rows: conditions then null; columns: seeds).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import digits  # noqa: E402
from zoo_common import load_model_dir, model_output, read_recipe, scan_conditions  # noqa: E402

NEAR_DUP_RMS = 0.1


@torch.no_grad()
def ddim_sample(unet, sched, conditioning, cond, null, seeds, steps=50, guidance=1.0):
    """(S, N, C, H, W) samples: seed s, condition n. guidance w: eps_null + w (eps_c - eps_null)."""
    n = cond.shape[0]
    s = len(seeds)
    noise = torch.stack([torch.randn(1, 8, 8, generator=torch.Generator().manual_seed(int(k))) for k in seeds])
    x = noise[:, None].expand(s, n, 1, 8, 8).reshape(s * n, 1, 8, 8).clone()
    c = cond[None].expand(s, *cond.shape).reshape(s * n, *cond.shape[1:])
    nc = null.expand(s * n, *null.shape[1:])
    sched.set_timesteps(steps)
    for t in sched.timesteps:
        if guidance == 1.0:
            out = model_output(unet, conditioning, x, t, c)
        else:
            both = model_output(unet, conditioning, torch.cat([x, x]), t, torch.cat([c, nc]))
            oc, on = both.chunk(2)
            out = on + guidance * (oc - on)
        x = sched.step(out, t, x, eta=0.0).prev_sample
    return x.reshape(s, n, 1, 8, 8)


@torch.no_grad()
def null_branch_ratio(unet, conditioning, conds, null, ts=(100, 300, 500, 700), draws=4):
    """ICG-style null test: ||eps(x_t, null) - mean_c eps(x_t, c)|| / mean_c ||eps(x_t, c) - mean_c eps||.

    Computed on the raw model output (eps, or v for v_prediction models).
    x_t from held-out digits (one per class). A trained null branch sits near the conditional mean
    (ratio around or below 1); an untrained one is wherever its random embedding points.
    Returns {t: ratio} averaged over images and noise draws.
    """
    xh, yh = digits.load_split("heldout")
    x0, _ = digits.one_per_class(xh, yh)
    from zoo_common import ddpm_scheduler

    sch = ddpm_scheduler("epsilon")
    n = conds.shape[0]
    out = {}
    for t in ts:
        g = torch.Generator().manual_seed(1000 + t)
        ratios = []
        for _ in range(draws):
            noise = torch.randn(x0.shape, generator=g)
            tt = torch.full((len(x0),), t, dtype=torch.long)
            x_t = sch.add_noise(x0, noise, tt)  # (M, 1, 8, 8)
            m = len(x_t)
            xr = x_t[:, None].expand(m, n + 1, 1, 8, 8).reshape(-1, 1, 8, 8)
            c = torch.cat([conds, null])[None].expand(m, n + 1, *conds.shape[1:]).reshape(-1, *conds.shape[1:])
            e = model_output(unet, conditioning, xr, tt[:1].expand(len(xr)), c).reshape(m, n + 1, -1)
            ec, en = e[:, :n], e[:, n]
            bar = ec.mean(1)
            spread = (ec - bar[:, None]).norm(dim=-1).mean(1)
            ratios.append(((en - bar).norm(dim=-1) / spread).mean())
        out[t] = float(torch.stack(ratios).mean())
    return out


def nn_dist(samples: torch.Tensor, train: torch.Tensor) -> torch.Tensor:
    a = samples.reshape(len(samples), -1).double()
    b = train.reshape(len(train), -1).double()
    return (torch.cdist(a, b).min(dim=1).values / a.shape[1] ** 0.5).float()


def near_dup(samples: torch.Tensor) -> float:
    s = samples.reshape(samples.shape[0], -1).double()
    d = torch.cdist(s, s) / s.shape[1] ** 0.5
    iu = torch.triu_indices(len(s), len(s), offset=1)
    return float((d[iu[0], iu[1]] < NEAR_DUP_RMS).float().mean())


def save_grid(path: Path, rows: torch.Tensor, scale: int = 4) -> None:
    from PIL import Image

    r, c = rows.shape[:2]
    cell = 8 * scale + 2
    img = Image.new("L", (c * cell + 2, r * cell + 2), 128)
    for i in range(r):
        for j in range(c):
            a = ((rows[i, j, 0].clamp(-1, 1) + 1) * 127.5).round().byte().numpy()
            tile = Image.fromarray(a, mode="L").resize((8 * scale, 8 * scale), Image.NEAREST)
            img.paste(tile, (2 + j * cell, 2 + i * cell))
    img.save(path)


def look(model_dir: Path, recipe: dict, seeds, steps, guidance, png: bool, root: Path, null_test: bool = False) -> dict:
    unet, sched = load_model_dir(model_dir)
    conds, null = scan_conditions(root, recipe)
    samp = ddim_sample(unet, sched, recipe["conditioning"], torch.cat([conds, null]), null, seeds, steps, guidance)
    x_train, _ = digits.load_split("train")
    n = len(conds)
    rms = [float(digits.pairwise_rms(samp[:, k])) for k in range(n)]
    dup = [near_dup(samp[:, k]) for k in range(n)]
    nn_c = float(nn_dist(samp[:, :n].reshape(-1, 1, 8, 8), x_train).mean())
    null_s = samp[:, n]
    # per-pixel variance across seeds over the real within-class variance of condition k's class
    # (zoo conditions are one per class, classes 0..9 in order)
    xa, ya = digits.load_digits_tensor()
    div = [
        float(samp[:, k].var(dim=0).mean() / xa[ya == (k % 10)].var(dim=0).mean())
        for k in range(n)
    ]
    res = {
        "div_ratio": sum(div) / n,
        "rms_mean": sum(rms) / n,
        "rms_min": min(rms),
        "rms": rms,
        "near_dup_mean": sum(dup) / n,
        "nn_train_cond": nn_c,
        "null_rms": float(digits.pairwise_rms(null_s)),
        "nn_train_null": float(nn_dist(null_s, x_train).mean()),
    }
    if null_test:
        res["null_ratio"] = null_branch_ratio(unet, recipe["conditioning"], conds, null)
    if png:
        save_grid(model_dir / "quicklook.png", samp.permute(1, 0, 2, 3, 4))
    return res


def real_reference() -> float:
    xh, yh = digits.load_split("heldout")
    return sum(float(digits.pairwise_rms(xh[yh == c])) for c in range(10)) / 10


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="+", type=Path)
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--guidance", type=float, default=1.0)
    ap.add_argument("--png", action="store_true")
    ap.add_argument("--null-test", action="store_true", help="also print the null-branch ratio per timestep")
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    seeds = list(range(a.seeds))
    print(f"real held-out within-class pairwise RMS (reference): {real_reference():.3f}")
    print(f"{'model':32s} {'divratio':>8s} {'rms_mean':>8s} {'rms_min':>7s} {'neardup':>7s} {'nn_train':>8s} {'null_rms':>8s} {'null_nn':>7s}  per-condition rms")
    allres = {}
    for m in a.models:
        recipe = read_recipe(m)
        targets = [m] if (m / "unet").exists() else sorted(m.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
        for d in targets:
            r = look(d, recipe, seeds, a.steps, a.guidance, a.png, m, a.null_test)
            label = recipe["name"] + ("" if d == m else "/" + d.name)
            allres[label] = r
            print(f"{label:32s} {r['div_ratio']:8.3f} {r['rms_mean']:8.3f} {r['rms_min']:7.3f} {r['near_dup_mean']:7.2f} {r['nn_train_cond']:8.3f} "
                  f"{r['null_rms']:8.3f} {r['nn_train_null']:7.3f}  " + " ".join(f"{v:.2f}" for v in r["rms"]), flush=True)
            if "null_ratio" in r:
                print(f"{'':32s} null-branch ratio by t: " + "  ".join(f"t={k}: {v:.2f}" for k, v in r["null_ratio"].items()))
    if a.json:
        a.json.write_text(json.dumps(allres, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
