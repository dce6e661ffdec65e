"""Original-LDM single files (SD 1.x/2.x, kohya's saves): tiny diffusers models written in the LDM layout by an
independent converter (helpers_ldm), loaded back through diffusers' conversion, compared output for output."""
import json

import pytest
import torch
from click.testing import CliRunner

pytest.importorskip("transformers")

from collapsecheck.load.dispatch import load_checkpoint  # noqa: E402
from collapsecheck.cli import cli  # noqa: E402
from collapsecheck.errors import LoadError, UsageError  # noqa: E402
from helpers_ldm import SD1_METADATA, tiny_ldm_vae, tiny_sd1_unet, tiny_sd2_unet, write_ldm_file  # noqa: E402
from helpers_pipeline import (  # noqa: E402
    CROSS_DIM, MAX_TOKENS, tiny_text_encoder, write_tiny_pipeline, write_tokenizer,
)

FAST = ["--seeds", "3", "--steps", "2", "--guidance", "1", "--no-recovery", "--no-lpips", "-q"]
ATOL = 1e-5


class _Callback:
    """A pickled object of the kind Lightning checkpoints carry: not a tensor, refused by weights_only."""


def invoke(*args):
    return CliRunner().invoke(cli, ["scan", *map(str, args)])


def unet_diff(original, loaded, seed=0):
    """Largest absolute difference of the two UNets' outputs on the same random input."""
    g = torch.Generator().manual_seed(seed)
    size = original.config.sample_size
    x = torch.randn(2, 4, size, size, generator=g)
    cond = torch.randn(2, 5, original.config.cross_attention_dim, generator=g)
    t = torch.tensor([20, 700])
    with torch.no_grad():
        return (original(x, t, cond).sample - loaded(x, t, cond).sample).abs().max().item()


@pytest.fixture(scope="module")
def sd1(tmp_path_factory):
    """A kohya-style SD 1.x file (UNet + VAE + CLIP, modelspec metadata) and the models it was written from."""
    root = tmp_path_factory.mktemp("ldm")
    tokenizer = write_tokenizer(root / "tok")
    unet, vae, encoder = tiny_sd1_unet(seed=1), tiny_ldm_vae(seed=1), tiny_text_encoder(tokenizer, seed=7)
    path = write_ldm_file(root / "finetune.safetensors", unet, vae, encoder, SD1_METADATA)
    cond = root / "cond.safetensors"
    from safetensors.torch import save_file

    save_file({"cond": torch.randn(2, 4, CROSS_DIM, generator=torch.Generator().manual_seed(3))}, str(cond))
    prompts = root / "prompts.txt"
    prompts.write_text("a cat\na dog\n")
    return {"path": path, "unet": unet, "vae": vae, "encoder": encoder, "root": root, "cond": cond, "prompts": prompts}


def test_kohya_file_round_trip_matches_the_original_unet_and_vae(sd1):
    ckpt = load_checkpoint(sd1["path"])
    assert ckpt.model_class == "UNet2DConditionModel"
    assert unet_diff(sd1["unet"], ckpt.model) <= ATOL
    assert ckpt.model_config["sample_size"] == 8  # modelspec.resolution 16x16, the VAE downsamples by 2
    assert ckpt.scheduler_config["prediction_type"] == "epsilon"
    assert ckpt.scheduler_config["beta_schedule"] == "scaled_linear"
    assert "single-file LDM" in ckpt.source and len(ckpt.content_hash) == 16
    notes = " | ".join(ckpt.notes)
    assert "modelspec.architecture 'stable-diffusion-v1'" in notes and "8 attention heads" in notes
    assert "prediction_type 'epsilon' from modelspec.prediction_type" in notes
    assert "scaled_linear" in notes and "text encoder is not used" in notes
    latents = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = sd1["vae"].decode(latents / 0.18215).sample.clamp(-1, 1)
    torch.testing.assert_close(ckpt.decoder(latents), expected, atol=ATOL, rtol=0)
    assert ckpt.decoder_info["image_shape"] == [3, 16, 16]


def test_shapes_only_sd1_like_file_without_metadata(tmp_path):
    unet = tiny_sd1_unet(seed=2, cross_dim=768)
    path = write_ldm_file(tmp_path / "plain.safetensors", unet)
    ckpt = load_checkpoint(path)
    assert unet_diff(unet, ckpt.model) <= ATOL
    assert ckpt.model_config["sample_size"] == 64  # 512 / 8: no VAE in the file to say otherwise
    notes = " | ".join(ckpt.notes)
    assert "no modelspec metadata" in notes and "cross-attention width 768" in notes
    assert "image size 512 assumed" in notes and "prediction_type 'epsilon' assumed" in notes
    assert "measures run on the latents" in notes and ckpt.decoder is None


def test_sd2_v_file_uses_64_channel_heads_and_v_prediction(tmp_path):
    unet = tiny_sd2_unet(seed=3)
    meta = {"modelspec.architecture": "stable-diffusion-v2-768-v", "modelspec.resolution": "64x64"}
    ckpt = load_checkpoint(write_ldm_file(tmp_path / "v2.safetensors", unet, metadata=meta))
    assert unet_diff(unet, ckpt.model) <= ATOL
    assert ckpt.model_config["use_linear_projection"] is True
    assert ckpt.scheduler_config["prediction_type"] == "v_prediction"
    assert any("the default of modelspec.architecture" in n for n in ckpt.notes)
    flagged = load_checkpoint(tmp_path / "v2.safetensors", prediction_type="epsilon")
    assert flagged.scheduler_config["prediction_type"] == "epsilon"


def test_the_head_count_assumption_matters_and_config_overrides_it(tmp_path):
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_config({**tiny_sd1_unet().config, "attention_head_dim": 4})
    path = write_ldm_file(tmp_path / "fourheads.safetensors", unet, metadata=SD1_METADATA)
    assumed = load_checkpoint(path)  # SD 1.x's 8 heads: same weights, another network
    assert unet_diff(unet, assumed.model) > 1e-3
    unet.save_pretrained(tmp_path / "cfg")
    given = load_checkpoint(path, config=tmp_path / "cfg" / "config.json")
    assert unet_diff(unet, given.model) <= ATOL
    assert any("UNet config taken from --config" in n for n in given.notes)


def test_ckpt_is_read_with_weights_only_and_extra_buffers_are_noted(tmp_path):
    unet = tiny_sd1_unet(seed=4, cross_dim=768)  # a .ckpt has no metadata: SD 1.x by its width
    extra = {"betas": torch.linspace(1e-4, 2e-2, 1000), "alphas_cumprod": torch.ones(1000),
             "model_ema.decay": torch.tensor(0.9999)}
    path = write_ldm_file(tmp_path / "sd.ckpt", unet, tiny_ldm_vae(), extra=extra)
    ckpt = load_checkpoint(path, prediction_type="v_prediction", scheduler=None)
    assert unet_diff(unet, ckpt.model) <= ATOL
    assert ckpt.scheduler_config["prediction_type"] == "v_prediction"
    notes = " | ".join(ckpt.notes)
    assert "model_ema.*" in notes and "schedule buffers" in notes
    bad = {"state_dict": {"model.diffusion_model.x": torch.zeros(1)}, "callbacks": _Callback()}
    torch.save(bad, tmp_path / "bad.ckpt")
    with pytest.raises(LoadError, match="refuses to unpickle"):
        load_checkpoint(tmp_path / "bad.ckpt")


def test_scan_end_to_end_with_cond_embeddings(sd1, tmp_path):
    out = tmp_path / "r.json"
    res = invoke(sd1["path"], "--cond", sd1["cond"], *FAST, "--json", out)
    assert res.exit_code in (0, 1), res.output
    data = json.loads(out.read_text())
    assert data["verdict"] in ("healthy", "at_risk", "collapsed")
    assert data["guidance"]["verdict"] in ("steerable", "weak", "not_steerable")
    assert data["checkpoint"]["decoder"]["image_shape"] == [3, 16, 16]
    assert "single-file LDM" in data["checkpoint"]["source"]
    assert any("8 attention heads" in n for n in data["checkpoint"]["notes"])


def test_base_gives_tokenizer_and_the_files_own_text_encoder_encodes(sd1, tmp_path):
    base = write_tiny_pipeline(tmp_path / "base", seed=0, unet=tiny_sd1_unet(seed=0))
    ckpt = load_checkpoint(sd1["path"], base=base, prompts=sd1["prompts"], negative_prompt="dog")
    assert unet_diff(sd1["unet"], ckpt.model) <= ATOL  # the file's weights in the base's config
    import transformers

    tok = transformers.CLIPTokenizer.from_pretrained(str(base / "tokenizer"), local_files_only=True)
    ids = tok(["a cat", "a dog", "dog"], padding="max_length", max_length=MAX_TOKENS, return_tensors="pt").input_ids
    with torch.no_grad():
        expected = sd1["encoder"](ids)[0]
    torch.testing.assert_close(ckpt.conditions.values, expected[:2], atol=ATOL, rtol=0)
    torch.testing.assert_close(ckpt.conditions.null, expected[2:], atol=ATOL, rtol=0)
    assert ckpt.scheduler_source.endswith("scheduler_config.json")
    notes = " | ".join(ckpt.notes)
    assert "the file's own CLIP text encoder" in notes and "the file's own VAE decodes" in notes
    out = tmp_path / "r.json"
    res = invoke(sd1["path"], "--base", base, "--prompts", sd1["prompts"], *FAST, "--json", out)
    assert res.exit_code in (0, 1), res.output
    data = json.loads(out.read_text())
    assert [c["label"] for c in data["conditions"]] == ["a cat", "a dog"]
    assert data["verdict"] in ("healthy", "at_risk", "collapsed")


def test_file_without_text_encoder_takes_the_bases(sd1, tmp_path):
    base = write_tiny_pipeline(tmp_path / "base", seed=0, unet=tiny_sd1_unet(seed=0))
    path = write_ldm_file(tmp_path / "unet_only.safetensors", sd1["unet"], metadata=SD1_METADATA)
    ckpt = load_checkpoint(path, base=base, prompts=sd1["prompts"])
    assert "text_encoder" in ckpt.conditions.source and str(base) in ckpt.conditions.source
    assert ckpt.decoder_info["source"] == str(base / "vae")


@pytest.mark.parametrize("case, code, words", [
    ("sdxl_keys", 3, "an SDXL file but its UNet has no label_emb"),  # an SD 1.x UNet marked as SDXL
    ("sdxl_meta", 3, "an SDXL file but its UNet has no label_emb"),
    ("prompts_no_base", 2, "--base"),
    ("odd_width", 3, "--config UNET_CONFIG.json or --base"),
    ("stray_tensor", 3, "have no place in the converted UNet"),
    ("bad_prediction", 3, "--prediction-type"),
    ("weights", 2, "--weights"),
])
def test_errors_are_one_line_and_name_what_to_pass(sd1, tmp_path, case, code, words):
    unet = sd1["unet"]
    args = []
    if case == "sdxl_keys":
        path = write_ldm_file(tmp_path / "xl.safetensors", unet,
                              extra={"conditioner.embedders.1.model.positional_embedding": torch.zeros(77, 8)})
    elif case == "sdxl_meta":
        path = write_ldm_file(tmp_path / "xl.safetensors", unet,
                              metadata={**SD1_METADATA, "modelspec.architecture": "stable-diffusion-xl-v1-base"})
    elif case == "prompts_no_base":
        path, args = sd1["path"], ["--prompts", sd1["prompts"]]
    elif case == "odd_width":
        path = write_ldm_file(tmp_path / "odd.safetensors", unet)  # width 16, no metadata: heads unknown
    elif case == "stray_tensor":
        path = write_ldm_file(tmp_path / "stray.safetensors", unet, metadata=SD1_METADATA,
                              extra={"model.diffusion_model.extra.weight": torch.zeros(3)})
    elif case == "bad_prediction":
        path = write_ldm_file(tmp_path / "p.safetensors", unet,
                              metadata={**SD1_METADATA, "modelspec.prediction_type": "flow"})
    else:
        path, args = sd1["path"], ["--weights", "unet_ema"]
    res = invoke(path, *args, *FAST)
    assert res.exit_code == code, res.output
    assert words in res.output and len(res.output.strip().splitlines()) == 1


def test_library_errors_are_typed(sd1):
    with pytest.raises(UsageError, match="--base"):
        load_checkpoint(sd1["path"], prompts=sd1["prompts"])
