"""Facts about model families read from their configs."""
from __future__ import annotations

from typing import Optional


def distilled_hint(model_config: dict, scheduler_config: dict) -> Optional[str]:
    """Why a checkpoint looks guidance-distilled (it has no real null branch by design), or None."""
    if model_config.get("time_cond_proj_dim"):
        return "the model takes a guidance-scale embedding (time_cond_proj_dim), as LCM-distilled models do"
    name = str(scheduler_config.get("_class_name", ""))
    if name in ("LCMScheduler", "TCDScheduler"):
        return f"its scheduler is {name}, made for guidance-distilled models"
    return None
