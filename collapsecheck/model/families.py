"""Facts about model families read from their configs."""
from __future__ import annotations

from typing import Optional

from .flux import embeds_guidance, image_seq_len, is_flux
from .parametrization import FlowSampling

#: the flow-matching transformers whose pipelines are followed step for step, and how
_FLOW_PIPELINES = {
    "FluxTransformer2DModel": ("FluxPipeline", True, 1.15),
    "SD3Transformer2DModel": ("StableDiffusion3Pipeline", False, 1.16),
}


def distilled_hint(model_config: dict, scheduler_config: dict) -> Optional[str]:
    """Why a checkpoint looks guidance-distilled (it has no real null branch by design), or None.

    Flux: FLUX.1-dev-like transformers (``guidance_embeds``) were distilled from classifier-free guidance into a
    guidance input; FLUX.1-schnell-like ones (a Flux transformer without it) were distilled further, to a few
    steps, and FluxPipeline runs them without any guidance. Neither was trained with a null condition, so neither
    has a null branch to check."""
    if model_config.get("time_cond_proj_dim"):
        return "the model takes a guidance-scale embedding (time_cond_proj_dim), as LCM-distilled models do"
    if embeds_guidance(model_config):
        return ("a Flux transformer with guidance_embeds (FLUX.1-dev-like): classifier-free guidance was distilled "
                "into its embedded guidance input, so it has no null branch to check; the guidance sweep runs over "
                "the embedded guidance value")
    if is_flux(model_config):
        return ("a Flux transformer without guidance_embeds (FLUX.1-schnell-like): distilled to sample in a few "
                "steps without guidance (FluxPipeline runs it without classifier-free guidance), so it has no null "
                "branch to check; the guidance sweep's classifier-free guidance is outside what it was trained for")
    name = str(scheduler_config.get("_class_name", ""))
    if name in ("LCMScheduler", "TCDScheduler"):
        return f"its scheduler is {name}, made for guidance-distilled models"
    return None


def flow_sampling(model_class: str, model_config: dict, sample_shape: tuple, steps: int) -> Optional[FlowSampling]:
    """How the pipeline of a flow-matching transformer spaces ``steps`` steps (None for other networks): the image
    sequence length its dynamic shift reads (Flux: packed 2x2 patches; SD3: ``patch_size`` patches)."""
    if model_class not in _FLOW_PIPELINES:
        return None
    pipeline, flux_sigmas, max_shift = _FLOW_PIPELINES[model_class]
    if is_flux({**model_config, "_class_name": model_class}):
        length = image_seq_len(sample_shape)
    else:
        patch = int(model_config.get("patch_size", 2))
        length = (int(sample_shape[1]) // patch) * (int(sample_shape[2]) // patch)
    return FlowSampling(steps=int(steps), image_seq_len=length, pipeline=pipeline, flux_sigmas=flux_sigmas,
                        max_shift=max_shift)
