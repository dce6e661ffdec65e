"""Small pieces shared by train_zoo.py and quicklook.py (no dependency on collapsecheck)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, Tuple

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

NUM_TRAIN_TIMESTEPS = 1000
BETA_SCHEDULE = "squaredcos_cap_v2"
NULL_CLASS = 10  # class id of the null condition in the class-conditioned recipes


def ddpm_scheduler(prediction_type: str):
    """The training noise schedule."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(
        num_train_timesteps=NUM_TRAIN_TIMESTEPS,
        beta_schedule=BETA_SCHEDULE,
        prediction_type=prediction_type,
        clip_sample=False,
    )


def ddim_scheduler(prediction_type: str):
    """The same betas as a DDIM sampler config; this is what goes to ``scheduler/``."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        num_train_timesteps=NUM_TRAIN_TIMESTEPS,
        beta_schedule=BETA_SCHEDULE,
        prediction_type=prediction_type,
        clip_sample=False,
        set_alpha_to_one=False,
    )


def model_output(unet, conditioning: str, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
    """One call signature over the three zoo families.

    conditioning: "class" (cond = class ids (B,)), "concat" (cond = (B, C, 8, 8) stacked after x_t
    in channels), "crossattn" (cond = encoder_hidden_states (B, L, D)).
    """
    if t.ndim == 0:
        t = t.expand(x_t.shape[0])
    if conditioning == "class":
        return unet(x_t, t, class_labels=cond).sample
    if conditioning == "concat":
        return unet(torch.cat([x_t, cond], dim=1), t).sample
    if conditioning == "crossattn":
        return unet(x_t, t, encoder_hidden_states=cond).sample
    raise ValueError(f"unknown conditioning {conditioning!r}")


def load_model_dir(path: Path) -> Tuple[Any, Any]:
    """(unet in eval mode, DDIMScheduler) from a folder holding ``unet/`` and ``scheduler/``."""
    from diffusers import DDIMScheduler, UNet2DConditionModel, UNet2DModel

    path = Path(path)
    cfg = json.loads((path / "unet" / "config.json").read_text())
    cls = {"UNet2DModel": UNet2DModel, "UNet2DConditionModel": UNet2DConditionModel}[cfg["_class_name"]]
    unet = cls.from_pretrained(path / "unet", low_cpu_mem_usage=False).eval()
    sched = DDIMScheduler.from_pretrained(path / "scheduler")
    return unet, sched


def read_recipe(path: Path) -> Dict[str, Any]:
    return json.loads((Path(path) / "recipe.json").read_text())


def scan_conditions(model_root: Path, recipe: Dict[str, Any]) -> Tuple[torch.Tensor, torch.Tensor]:
    """(conditions (N, ...), null (1, ...)) of a zoo model, as a scanner would read them."""
    if recipe["conditioning"] == "class":
        conds = torch.tensor(recipe["scan_conditions"], dtype=torch.long)
        null = torch.tensor([recipe["null_condition"]], dtype=torch.long)
        return conds, null
    from safetensors.torch import load_file

    d = load_file(str(Path(model_root) / "cond.safetensors"))
    return d["cond"], d["null"]


def optimise(model: torch.nn.Module, opt: torch.optim.Optimizer, loss: torch.Tensor, lr: float,
             ema: "torch.nn.Module | None", decay: float, step: int) -> None:
    """One training step both zoos take: the learning rate, backward, grad-norm clip 1.0, the optimiser step
    and the EMA update (decay ``min(decay, (1 + step) / (10 + step))``)."""
    for pg in opt.param_groups:
        pg["lr"] = lr
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    if ema is not None:
        d = min(decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, p in zip(ema.parameters(), model.parameters()):
                pe.lerp_(p, 1 - d)
