"""Store a zoo folder's UNet weights as float16 (halves the committed size; diffusers upcasts them on load into
the float32 model the config builds, so every reader gets float32 weights rounded to float16).

    python examples/latent_zoo/to_fp16.py examples/latent_zoo/models/digits/drop10 ...
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def unet_to_fp16(folder: Path) -> None:
    import diffusers

    unet_dir = Path(folder) / "unet"
    cls = getattr(diffusers, json.loads((unet_dir / "config.json").read_text())["_class_name"])
    unet = cls.from_pretrained(unet_dir, low_cpu_mem_usage=False)
    unet.half().save_pretrained(unet_dir, safe_serialization=True)


if __name__ == "__main__":
    for f in sys.argv[1:]:
        unet_to_fp16(Path(f))
