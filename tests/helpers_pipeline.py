"""A tiny Stable-Diffusion-style pipeline folder written in-process (no download, a few hundred kB).

``unet/`` (4 latent channels, 8x8, cross-attention width 16), ``vae/`` (AutoencoderKL, one
downsampling: 8x8 latents -> 3x16x16 images), ``text_encoder/`` (CLIPTextModel, hidden size 16),
``tokenizer/`` (a CLIP BPE tokenizer over a small vocabulary written here) and ``scheduler/``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


from helpers_models import _seeded  # noqa: E402

MAX_TOKENS = 8
CROSS_DIM = 16


def _quiet_transformers():
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    return transformers


def write_tokenizer(folder: Path):
    """A CLIP BPE tokenizer over a-z (word-final and not), a few merges, and the two special tokens."""
    tf = _quiet_transformers()
    folder.mkdir(parents=True, exist_ok=True)
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    tokens = letters + [f"{c}</w>" for c in letters] + ["ca", "cat</w>", "do", "dog</w>"]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\nc a\nca t</w>\nd o\ndo g</w>\n")
    tokenizer = tf.CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=MAX_TOKENS)
    tokenizer.save_pretrained(str(folder))
    return tokenizer


def tiny_text_encoder(tokenizer, seed: int = 0):
    tf = _quiet_transformers()
    config = tf.CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=CROSS_DIM, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, max_position_embeddings=MAX_TOKENS, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    return _seeded(seed, lambda: tf.CLIPTextModel(config))


def tiny_latent_unet(seed: int = 0):
    from diffusers import UNet2DConditionModel

    return _seeded(seed, lambda: UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(8, 16), layers_per_block=1,
        norm_num_groups=4, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=CROSS_DIM, attention_head_dim=4,
    ))


def tiny_vae(seed: int = 0):
    from diffusers import AutoencoderKL

    return _seeded(seed, lambda: AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"), block_out_channels=(8, 16), layers_per_block=1,
        latent_channels=4, norm_num_groups=4, sample_size=16,
    ))


def write_tiny_pipeline(root: Path, seed: int = 0, unet=None) -> Path:
    """Write the pipeline under ``root`` (``save_pretrained`` of every component + model_index.json)."""
    from diffusers import DDIMScheduler

    root.mkdir(parents=True, exist_ok=True)
    tokenizer = write_tokenizer(root / "tokenizer")
    tiny_text_encoder(tokenizer, seed).save_pretrained(str(root / "text_encoder"))
    (unet if unet is not None else tiny_latent_unet(seed)).save_pretrained(str(root / "unet"))
    tiny_vae(seed).save_pretrained(str(root / "vae"))
    DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012).save_pretrained(
        str(root / "scheduler"))
    index = {
        "_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.42.1",
        "scheduler": ["diffusers", "DDIMScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"], "safety_checker": [None, None], "feature_extractor": [None, None],
    }
    (root / "model_index.json").write_text(json.dumps(index, indent=2))
    return root
