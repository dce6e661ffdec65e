"""Fine-tune a zoo model into collapse with collapsecheck's training monitor on, logging to TensorBoard.

    python examples/monitor/train_with_monitor.py --out runs/monitor [--steps 200] [--every 20] [--early-stop]
    tensorboard --logdir runs/monitor

The zoo's ``series`` recipe, live: start from ``examples/digits-healthy`` (class labels 0-9, null class 10, trained
with 15% condition dropout: healthy) and keep training it on ONE image per class, DreamBooth-style. Within about a
hundred steps the model memorises the ten images and every seed gives the same digit. A
:class:`collapsecheck.monitor.CollapseMonitor` scans the model every ``--every`` steps (fast mode, 8 seeds, the ten
classes), logs seed diversity, the null branch, the eps ratio, the verdicts, its cost and a contact sheet through
accelerate's TensorBoard tracker, and reports the onset of collapse when it happens. CPU only, a few minutes.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE.parent
sys.path.insert(0, str(EXAMPLES / "zoo"))
import digits  # noqa: E402
from zoo_common import NULL_CLASS, ddpm_scheduler  # noqa: E402

from collapsecheck.monitor import CollapseMonitor  # noqa: E402

#: the zoo's series recipe (examples/zoo/train_zoo.py): one image per class, 15% dropout, lr 2e-4, no EMA
BATCH, LR, DROPOUT = 128, 2e-4, 0.15


def one_image_per_class():
    x, y = digits.load_split("train")
    return digits.per_class_subset(x, y, 1)


def train_step(unet, noise_scheduler, optimizer, images, labels, g) -> float:
    idx = torch.randint(len(labels), (BATCH,), generator=g)
    x0, lab = images[idx], labels[idx]
    lab = torch.where(torch.rand(BATCH, generator=g) < DROPOUT, torch.full_like(lab, NULL_CLASS), lab)
    noise = torch.randn(x0.shape, generator=g)
    t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (BATCH,), generator=g)
    loss = torch.nn.functional.mse_loss(unet(noise_scheduler.add_noise(x0, noise, t), t, class_labels=lab).sample,
                                        noise)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
    optimizer.step()
    return loss.item()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("runs/monitor"), help="accelerate's project dir (TensorBoard)")
    ap.add_argument("--steps", type=int, default=200, help="fine-tuning steps (default 200)")
    ap.add_argument("--every", type=int, default=20, help="scan every N steps (default 20)")
    ap.add_argument("--seeds", type=int, default=8, help="seeds per class in each scan (default 8)")
    ap.add_argument("--early-stop", action="store_true", help="stop training once the model has collapsed")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    from accelerate import Accelerator
    from diffusers import UNet2DModel

    accelerator = Accelerator(cpu=True, log_with="tensorboard", project_dir=str(a.out))
    accelerator.init_trackers("train_with_monitor")
    unet = UNet2DModel.from_pretrained(str(EXAMPLES / "digits-healthy" / "unet"), low_cpu_mem_usage=False)
    noise_scheduler = ddpm_scheduler("epsilon")
    optimizer = torch.optim.AdamW(unet.parameters(), lr=LR, weight_decay=0.0)
    unet, optimizer = accelerator.prepare(unet, optimizer)
    monitor = CollapseMonitor(every=a.every, classes=range(10), seeds=a.seeds, mode="fast", lpips=False,
                              early_stop=a.early_stop, budget=1.0)
    images, labels = one_image_per_class()
    g = torch.Generator().manual_seed(0)
    started = time.perf_counter()
    unet.train()
    for step in range(a.steps + 1):
        record = monitor.step(step, accelerator.unwrap_model(unet), noise_scheduler, accelerator=accelerator)
        if record is not None:
            print(f"step {step:4d}: {record.verdict:9s} seed share {record.scalars.get('seed_share', float('nan')):.3f}"
                  f"  pixel RMS {record.scalars['pixel_rms']:.3f}  guidance {record.guidance}"
                  + (f"  scan cost {record.cost_fraction:.0%} of training" if record.cost_fraction else ""), flush=True)
        if monitor.should_stop or step == a.steps:
            break
        loss = train_step(unet, noise_scheduler, optimizer, images, labels, g)
        accelerator.log({"train/loss": loss}, step=step)
    accelerator.end_training()
    seconds = time.perf_counter() - started
    where = next(iter(sorted(a.out.rglob("events.out.tfevents.*"))), a.out)
    if monitor.onset is None:
        print(f"no collapse onset within {a.steps} steps ({seconds:.0f}s); TensorBoard files: {where.parent}")
    else:
        print(f"collapse onset at step {monitor.onset.step} ({monitor.onset.verdict}; the last scan before it, at "
              f"step {monitor.onset.previous_step}, was below); TensorBoard files: {where.parent} ({seconds:.0f}s)")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    raise SystemExit(main())
