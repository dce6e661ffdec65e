"""Tiny Flux pipeline folders written in-process (no download): ``FluxPipeline`` with a 1+1-layer
``FluxTransformer2DModel`` (4 latent channels packed into 16, 8x8 latents: 16 tokens), a 4-channel VAE with Flux's
shift_factor and scaling_factor (16x16 images), a tiny CLIP (pooled 32) and T5 (32 wide) and their tokenizers,
and Flux-dev's dynamically shifted FlowMatchEulerDiscreteScheduler. ``dev=True``: guidance_embeds (FLUX.1-dev-like);
False: FLUX.1-schnell-like."""
from __future__ import annotations

import json
from pathlib import Path

from helpers_models import _seeded
from helpers_pipeline import _quiet_transformers, write_tokenizer
from test_pixart import tiny_t5_tokenizer

WIDTH = 32  # T5 d_model = joint_attention_dim; CLIP hidden = pooled_projection_dim
LATENT = 8


def tiny_flux(dev: bool, seed: int = 0):
    from diffusers import FluxTransformer2DModel

    return _seeded(seed, lambda: FluxTransformer2DModel(
        patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=WIDTH, pooled_projection_dim=WIDTH, axes_dims_rope=[4, 4, 8],
        guidance_embeds=dev))


def flux_vae(seed: int = 0):
    from diffusers import AutoencoderKL

    return _seeded(seed, lambda: AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"), block_out_channels=(8, 16), layers_per_block=1,
        latent_channels=4, norm_num_groups=4, sample_size=16, scaling_factor=1.5035, shift_factor=0.0609,
        use_quant_conv=False, use_post_quant_conv=False))


def write_text_encoders(root: Path, t5_name: str = "text_encoder_2", t5_tokenizer: str = "tokenizer_2") -> None:
    """CLIP (text_encoder/, tokenizer/) and T5 (``t5_name``, ``t5_tokenizer``), both WIDTH wide."""
    tf = _quiet_transformers()
    tokenizer = write_tokenizer(root / "tokenizer")
    config = tf.CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=WIDTH, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        max_position_embeddings=8, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id)
    _seeded(1, lambda: tf.CLIPTextModel(config)).save_pretrained(str(root / "text_encoder"))
    write_t5(root, t5_name, t5_tokenizer)


def write_t5(root: Path, name: str, tokenizer_name: str, width: int = WIDTH, seed: int = 2) -> None:
    tf = _quiet_transformers()
    t5_tokenizer = tiny_t5_tokenizer()
    t5_tokenizer.save_pretrained(str(root / tokenizer_name))
    config = tf.T5Config(vocab_size=len(t5_tokenizer), d_model=width, d_kv=8, d_ff=16, num_layers=1, num_heads=2,
                         relative_attention_num_buckets=8, relative_attention_max_distance=16, pad_token_id=0,
                         eos_token_id=1, decoder_start_token_id=0)
    _seeded(seed, lambda: tf.T5EncoderModel(config)).save_pretrained(str(root / name))


def write_flux_pipeline(root: Path, dev: bool = True, seed: int = 0) -> Path:
    from diffusers import FlowMatchEulerDiscreteScheduler

    root.mkdir(parents=True, exist_ok=True)
    tiny_flux(dev, seed).save_pretrained(str(root / "transformer"))
    config = root / "transformer" / "config.json"  # scan 8x8 latents, not FluxPipeline's default 128x128
    config.write_text(json.dumps({**json.loads(config.read_text()), "sample_size": LATENT}))
    flux_vae(seed).save_pretrained(str(root / "vae"))
    write_text_encoders(root)
    FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                    base_image_seq_len=256, max_image_seq_len=4096).save_pretrained(str(root / "scheduler"))
    (root / "model_index.json").write_text(json.dumps({
        "_class_name": "FluxPipeline", "_diffusers_version": "0.42.1",
        "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
        "text_encoder_2": ["transformers", "T5EncoderModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
        "tokenizer_2": ["transformers", "T5TokenizerFast"], "transformer": ["diffusers", "FluxTransformer2DModel"],
        "vae": ["diffusers", "AutoencoderKL"], "image_encoder": [None, None], "feature_extractor": [None, None]}))
    return root
