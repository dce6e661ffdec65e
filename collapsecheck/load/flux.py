"""Flux pipelines (``FluxPipeline``): ``--prompts`` through the pipeline's own ``encode_prompt``.

FluxPipeline encodes a prompt twice: CLIP (``text_encoder/``, ``tokenizer/``) gives the pooled embedding only,
T5 (``text_encoder_2/``, ``tokenizer_2/``) the token embeddings, padded to ``max_sequence_length`` (its default,
512) tokens. Both are packed into one row per prompt (:func:`~collapsecheck.load.conditions.pack_pooled`). The
pipeline has no negative prompt unless ``true_cfg_scale`` > 1; the null condition here is the empty prompt (or
``--negative-prompt``) encoded the same way, the condition classifier-free guidance would use.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Tuple

import torch

from ..errors import LoadError, UsageError
from .conditions import ConditionSet, pack_pooled
from .pipeline import quiet_transformers, read_prompts, text_pipeline

#: FluxPipeline's default max_sequence_length: the T5 tokens every prompt is padded (or cut) to
FLUX_MAX_SEQUENCE_LENGTH = 512


@quiet_transformers
def encode_flux_prompts(root: Path, prompts_file: str, negative_prompt: Optional[str], model: torch.nn.Module,
                        dims: Tuple[int, int]) -> ConditionSet:
    """The prompts and the null prompt through ``FluxPipeline.encode_prompt`` of ``root`` (with ``model`` as its
    transformer, not loaded twice); ``dims``: the (token, pooled) widths the transformer takes."""
    missing = [n + "/" for n in ("text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2") if not (root / n).is_dir()]
    if missing:
        raise UsageError(f"--prompts needs the Flux pipeline's {', '.join(missing)} in {root}; "
                         "or pass precomputed embeddings with --cond FILE ('cond' and 'pooled')")
    prompts = read_prompts(prompts_file)
    null_text = "" if negative_prompt is None else negative_prompt
    pipe = text_pipeline(root, "FluxPipeline", model, None)
    cpu = torch.device("cpu")
    with torch.inference_mode():
        embeds, pooled, _ = pipe.encode_prompt(prompt=prompts, prompt_2=None, device=cpu,
                                               max_sequence_length=FLUX_MAX_SEQUENCE_LENGTH)
        null, null_pooled, _ = pipe.encode_prompt(prompt=[null_text], prompt_2=None, device=cpu,
                                                  max_sequence_length=FLUX_MAX_SEQUENCE_LENGTH)
    if (int(embeds.shape[-1]), int(pooled.shape[-1])) != tuple(dims):
        raise LoadError(f"the text encoders of {root} give {int(embeds.shape[-1])}-wide embeddings and "
                        f"{int(pooled.shape[-1])}-wide pooled embeddings, the Flux transformer takes {dims[0]} and "
                        f"{dims[1]}: the folders do not belong together")
    note = (f"prompts encoded as FluxPipeline.encode_prompt does: T5 tokens padded to {FLUX_MAX_SEQUENCE_LENGTH} "
            "(its default max_sequence_length), the CLIP pooled embedding; text position ids are zeros")
    return ConditionSet(
        kind="cross_attn",
        values=pack_pooled(embeds.float(), pooled.float()),
        null=pack_pooled(null.float(), null_pooled.float()),
        labels=tuple(prompts),
        source=f"--prompts {prompts_file} encoded by {root} (FluxPipeline.encode_prompt)",
        null_source="the empty prompt" if negative_prompt is None else f"--negative-prompt '{negative_prompt}'",
        notes=(note,),
    )
