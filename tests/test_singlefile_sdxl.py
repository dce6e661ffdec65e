"""SDXL single files (kohya's and A1111's saves): a tiny SDXL-style UNet, VAE and two CLIP encoders written in the
LDM layout by an independent converter (helpers_ldm, after diffusers' convert_diffusers_to_original_sdxl.py), loaded
back through diffusers' conversion, compared output for output; --prompts through the pipeline's encode_prompt with
the file's own encoders."""
import json

import pytest
import torch
from click.testing import CliRunner

pytest.importorskip("transformers")

from collapsecheck.load.dispatch import load_checkpoint  # noqa: E402
from collapsecheck.cli import cli  # noqa: E402
from collapsecheck.model.denoiser import build_denoiser  # noqa: E402
from collapsecheck.errors import LoadError  # noqa: E402
from helpers_ldm import SDXL_METADATA, tiny_ldm_vae, tiny_sdxl_unet, write_ldm_file  # noqa: E402
from helpers_models import _seeded  # noqa: E402
from test_sdxl import DIM, POOLED, TOKENS, write_cond, write_sdxl_pipeline  # noqa: E402

FAST = ["--seeds", "3", "--steps", "2", "--guidance", "0,1,3", "--no-recovery", "--no-lpips", "-q",
        "--fail-on", "never"]
ATOL = 1e-5
#: the config entries that decide the network (what a config built from the shapes must get right)
CONFIG_KEYS = ("in_channels", "out_channels", "block_out_channels", "layers_per_block", "down_block_types",
               "up_block_types", "cross_attention_dim", "attention_head_dim", "use_linear_projection",
               "transformer_layers_per_block", "class_embed_type", "addition_embed_type", "addition_time_embed_dim",
               "projection_class_embeddings_input_dim")


def invoke(*args):
    return CliRunner().invoke(cli, ["scan", *map(str, args)])


def xl_diff(original, loaded, seed=0):
    """Largest absolute difference of two SDXL-style UNets' outputs on the same random input and added conditions."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 4, 8, 8, generator=g)
    cond, pooled = torch.randn(2, 5, DIM, generator=g), torch.randn(2, POOLED, generator=g)
    added = {"text_embeds": pooled, "time_ids": torch.tensor([[16.0, 16, 0, 0, 16, 16], [32.0, 24, 4, 0, 16, 16]])}
    t = torch.tensor([20, 700])
    with torch.no_grad():
        a = original(x, t, cond, added_cond_kwargs=added).sample
        b = loaded(x, t, cond, added_cond_kwargs=added).sample
    return (a - b).abs().max().item()


def plain(value):
    return list(value) if isinstance(value, (list, tuple)) else value


@pytest.fixture(scope="module")
def xl(tmp_path_factory):
    """An SDXL pipeline folder (the --base: tokenizers, encoder configs, the UNet's config, a 0.13025 VAE config),
    and kohya-style files written from a UNet, VAE and two encoders of other seeds."""
    from diffusers import AutoencoderKL

    from helpers_pipeline import _quiet_transformers

    tf = _quiet_transformers()
    root = tmp_path_factory.mktemp("sdxlfile")
    base = write_sdxl_pipeline(root / "base")
    tiny_sdxl_unet(seed=0, cross_dim=DIM, pooled_dim=POOLED).save_pretrained(base / "unet")
    AutoencoderKL.from_config(tiny_ldm_vae().config, scaling_factor=0.13025).save_pretrained(base / "vae")
    unet, vae = tiny_sdxl_unet(seed=1, cross_dim=DIM, pooled_dim=POOLED), tiny_ldm_vae(seed=1)
    enc1 = _seeded(11, lambda: tf.CLIPTextModel(tf.CLIPTextConfig.from_pretrained(str(base / "text_encoder"))))
    enc2 = _seeded(12, lambda: tf.CLIPTextModelWithProjection(
        tf.CLIPTextConfig.from_pretrained(str(base / "text_encoder_2"))))
    enc1.eval(), enc2.eval()
    path = write_ldm_file(root / "xl.safetensors", unet, vae, enc1, SDXL_METADATA, text_encoder_2=enc2)
    bare = write_ldm_file(root / "xl_plain.safetensors", unet, vae, enc1, text_encoder_2=enc2)
    prompts = root / "prompts.txt"
    prompts.write_text("cat\ndog\n")
    return {"root": root, "base": base, "path": path, "bare": bare, "unet": unet, "vae": vae, "enc1": enc1,
            "enc2": enc2, "prompts": prompts}


def test_kohya_sdxl_file_round_trip_matches_the_original_unet_and_vae(xl):
    ckpt = load_checkpoint(xl["path"])
    assert ckpt.model_class == "UNet2DConditionModel"
    assert xl_diff(xl["unet"], ckpt.model) <= ATOL
    for key in CONFIG_KEYS:  # the config built from the shapes is the original's
        assert plain(ckpt.model_config[key]) == plain(xl["unet"].config[key]), key
    assert ckpt.model_config["sample_size"] == 8  # modelspec.resolution 16x16, the VAE downsamples by 2
    den = build_denoiser(ckpt.model, ckpt.model_class, ckpt.model_config)
    assert den.text_time and den.pooled == (DIM, POOLED)
    assert ckpt.scheduler_config["prediction_type"] == "epsilon"
    notes = " | ".join(ckpt.notes)
    assert "modelspec.architecture 'stable-diffusion-xl-v1-base'" in notes
    assert "64 channels per attention head (SDXL)" in notes and "addition_time_embed_dim 256 assumed" in notes
    assert "scaling_factor 0.13025 from SDXL's, assumed" in notes
    assert "OpenCLIP text encoder with projection" in notes and "text encoder is not used" in notes
    latents = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = xl["vae"].decode(latents / 0.13025).sample.clamp(-1, 1)
    torch.testing.assert_close(ckpt.decoder(latents), expected, atol=ATOL, rtol=0)


def test_sdxl_file_without_metadata_is_read_from_its_keys(xl):
    ckpt = load_checkpoint(xl["bare"])
    assert xl_diff(xl["unet"], ckpt.model) <= ATOL
    assert ckpt.model_config["sample_size"] == 512  # SDXL's 1024 assumed, over the file's VAE factor 2
    notes = " | ".join(ckpt.notes)
    assert "no modelspec metadata" in notes and "the SDXL layout (conditioner.embedders.* keys)" in notes
    assert "image size 1024 assumed" in notes


def test_base_and_prompts_use_the_files_own_two_encoders(xl):
    from diffusers import StableDiffusionXLPipeline

    ckpt = load_checkpoint(xl["path"], base=xl["base"], prompts=xl["prompts"], negative_prompt="dog")
    assert xl_diff(xl["unet"], ckpt.model) <= ATOL  # the file's weights in the base's config
    pipe = StableDiffusionXLPipeline.from_pretrained(str(xl["base"]), local_files_only=True, add_watermarker=False,
                                                     text_encoder=xl["enc1"], text_encoder_2=xl["enc2"])
    with torch.no_grad():
        embeds, null, pooled, null_pooled = pipe.encode_prompt(["cat", "dog"], device=torch.device("cpu"),
                                                               negative_prompt=["dog", "dog"])
    conds = ckpt.conditions
    assert embeds.shape == (2, TOKENS, DIM) and conds.labels == ("cat", "dog")
    torch.testing.assert_close(conds.values, torch.cat([embeds.flatten(1), pooled], 1), atol=ATOL, rtol=0)
    torch.testing.assert_close(conds.null, torch.cat([null[:1].flatten(1), null_pooled[:1]], 1), atol=ATOL, rtol=0)
    bases = load_checkpoint(xl["base"], prompts=xl["prompts"]).conditions  # the base's own encoders differ
    assert (bases.values - conds.values).abs().max() > 1e-2
    assert "conditioner.embedders" in conds.source
    notes = " | ".join(ckpt.notes)
    assert "text_encoder is the file's own" in notes and "text_encoder_2 is the file's own" in notes
    assert f"0.13025 from {xl['base'] / 'vae' / 'config.json'}" in notes


def test_scan_with_base_and_prompts_reaches_a_verdict(xl, tmp_path):
    out = tmp_path / "r.json"
    res = invoke(xl["path"], "--base", xl["base"], "--prompts", xl["prompts"], *FAST, "--json", out)
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert data["verdict"] in ("healthy", "at_risk", "collapsed")
    assert data["guidance"]["verdict"] in ("steerable", "weak", "not_steerable")
    assert [c["label"] for c in data["conditions"]] == ["cat", "dog"]
    assert data["checkpoint"]["decoder"]["image_shape"] == [3, 16, 16]
    assert any("original size 16x16, crop top-left 0,0, target size 16x16" in n for n in data["checkpoint"]["notes"])


def test_scan_with_cond_and_pooled_embeddings(xl, tmp_path):
    write_cond(tmp_path / "c.safetensors")
    res = invoke(xl["path"], "--cond", tmp_path / "c.safetensors", *FAST, "--json", tmp_path / "r.json")
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "r.json").read_text())["verdict"] in ("healthy", "at_risk", "collapsed")


def test_file_without_encoders_takes_the_bases(xl, tmp_path):
    path = write_ldm_file(tmp_path / "unet_only.safetensors", xl["unet"], metadata=SDXL_METADATA)
    ckpt = load_checkpoint(path, base=xl["base"], prompts=xl["prompts"])
    base = load_checkpoint(xl["base"], prompts=xl["prompts"]).conditions
    torch.testing.assert_close(ckpt.conditions.values, base.values)
    assert any("the file holds no text_encoder_2" in n for n in ckpt.notes)
    assert ckpt.decoder_info["source"] == str(xl["base"] / "vae")


@pytest.mark.parametrize("case, code, words", [
    ("refiner_meta", 3, "SDXL refiner"),
    ("refiner_keys", 3, "SDXL refiner"),
    ("prompts_no_base", 2, "--base"),
    ("sd_base", 3, "not an SDXL UNet's"),
    ("prompts_sd_base", 2, "needs --base an SDXL pipeline folder"),
])
def test_errors_are_one_line(xl, tmp_path, case, code, words):
    from helpers_pipeline import write_tiny_pipeline

    args = []
    if case == "refiner_meta":
        path = write_ldm_file(tmp_path / "r.safetensors", xl["unet"],
                              metadata={**SDXL_METADATA, "modelspec.architecture": "stable-diffusion-xl-v1-refiner"})
    elif case == "refiner_keys":
        path = write_ldm_file(tmp_path / "r.safetensors", xl["unet"],
                              extra={"conditioner.embedders.0.model.text_projection": torch.zeros(8, 8)})
    elif case == "prompts_no_base":
        path, args = xl["path"], ["--prompts", xl["prompts"]]
    elif case == "sd_base":  # an SD 1.x pipeline: its UNet config, one tokenizer, one text encoder
        path, args = xl["path"], ["--base", write_tiny_pipeline(tmp_path / "sd")]
    else:  # the UNet config right, the tokenizers from an SD 1.x pipeline
        path, args = xl["path"], ["--prompts", xl["prompts"], "--base", write_tiny_pipeline(tmp_path / "sd"),
                                  "--config", xl["base"] / "unet" / "config.json"]
    res = invoke(path, *args, *FAST)
    assert res.exit_code == code, res.output
    assert words in res.output and len(res.output.strip().splitlines()) == 1, res.output


def test_refiner_shaped_unet_is_refused_whatever_the_metadata_says(tmp_path):
    refiner = tiny_sdxl_unet(cross_dim=1280, pooled_dim=2560 - 6 * 256)  # 2560 added features, 1280-wide text
    path = write_ldm_file(tmp_path / "r.safetensors", refiner, metadata=SDXL_METADATA)
    with pytest.raises(LoadError, match="refiner"):
        load_checkpoint(path)
