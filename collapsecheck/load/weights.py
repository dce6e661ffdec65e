"""Loading diffusers-format weights, the steps every non-converting format shares.

A format locates the weight file(s) (:mod:`collapsecheck.load.layout`); then: the config and scheduler
``--base`` supplies, the model config (:mod:`~collapsecheck.load.configs`), the scheduler
(:mod:`~collapsecheck.load.scheduler`), the strict build (:mod:`~collapsecheck.load.build`), the LoRA, and the
pipeline folder whose text encoder and VAE go with the network (attached by ``load_checkpoint``'s last step).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, List, Optional

from ..errors import UsageError
from .build import build_model, strip_prefixes
from .configs import base_sources, resolve_model_config
from .files import hash_files, read_state_dict, safetensors_metadata
from .layout import Located, locate
from .loaded import LoadedCheckpoint
from .lora import with_lora
from .options import LoadOptions, refuse_controlnet_scale
from .pipeline import pipeline_root
from .scheduler import apply_prediction_type, resolve_scheduler

Locator = Callable[[Path, str, List[str]], Located]


def load_weights(root: Path, options: LoadOptions, locator: Locator = locate) -> LoadedCheckpoint:
    """The network whose weights ``locator`` finds at ``root``, with its config, scheduler and LoRA."""
    refuse_controlnet_scale(root, options)
    config, scheduler, flag = base_sources(root, options.base, options.model_config, options.scheduler)
    notes: List[str] = []
    located = locator(root, options.weights, notes)
    metadata = safetensors_metadata(located.files)
    model_cfg, cfg_label = resolve_model_config(config, located, metadata, notes, flag)
    sched_cfg, sched_source = resolve_scheduler(scheduler, located, metadata, notes)
    sched_cfg = apply_prediction_type(sched_cfg, sched_source, options.prediction_type, notes)
    state = strip_prefixes(read_state_dict(located.files), notes)
    model, clean_cfg = build_model(model_cfg, cfg_label, state, notes)
    if getattr(model, "use_additional_conditions", False):  # PixArt-alpha 1024
        notes.append("PixArt resolution and aspect-ratio conditions: the pipeline's default image size (sample_size "
                     "x the VAE's scale factor, 8 without vae/), aspect ratio 1")
    source, content_hash = with_lora(model, clean_cfg["_class_name"], options.text_lora, located.source,
                                     hash_files(located.files), notes, text_encoder=options.prompts is not None)
    return LoadedCheckpoint.built(model, clean_cfg, (sched_cfg, sched_source), source, notes, content_hash,
                                  pipeline=_pipeline_for(root, options), lora=options.text_lora)


def _pipeline_for(root: Path, options: LoadOptions) -> Optional[Path]:
    """The pipeline folder ``root`` sits in, else ``--base``'s; UsageError when ``--prompts`` needs one and there is
    none."""
    base = options.base_path
    pipe = pipeline_root(root) or (pipeline_root(base) if base is not None else None)
    if pipe is None and options.prompts is not None:
        raise UsageError(
            "--prompts needs a pipeline folder (model_index.json, text_encoder/, tokenizer/) as CHECKPOINT or --base; "
            "for a UNet alone pass encoded prompts with --cond FILE"
        )
    return pipe
