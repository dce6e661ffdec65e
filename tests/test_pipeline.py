"""Stable-Diffusion-style pipeline folders: prompts through the pipeline's own CLIP text encoder,
latent samples decoded by its VAE before any measure, end to end through the CLI."""
import json

import pytest
import torch
from click.testing import CliRunner

pytest.importorskip("transformers")

from collapsecheck.load.dispatch import load_checkpoint  # noqa: E402
from collapsecheck.cli import cli  # noqa: E402
from helpers_pipeline import CROSS_DIM, MAX_TOKENS, write_tiny_pipeline  # noqa: E402

FAST = ["--seeds", "3", "--steps", "2", "--guidance", "1", "--no-recovery", "--no-lpips", "-q"]
PROMPTS = ["a cat", "a dog"]


def invoke(*args):
    return CliRunner().invoke(cli, ["scan", *map(str, args)])


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    root = write_tiny_pipeline(tmp_path_factory.mktemp("sd") / "pipe")
    prompts = root.parent / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n\n")
    return root, prompts


def test_scan_pipeline_with_prompts_end_to_end(pipeline, tmp_path):
    root, prompts = pipeline
    out = tmp_path / "r.json"
    res = invoke(root, "--prompts", prompts, *FAST, "--json", out)
    assert res.exit_code in (0, 1), res.output
    data = json.loads(out.read_text())
    assert [c["label"] for c in data["conditions"]] == PROMPTS
    assert data["condition_set"]["kind"] == "cross_attn"
    assert data["condition_set"]["null"] == "the empty prompt"
    assert "text_encoder" in data["condition_set"]["source"]
    decoder = data["checkpoint"]["decoder"]
    assert decoder["latent_shape"] == [4, 8, 8] and decoder["image_shape"] == [3, 16, 16]
    assert decoder["scaling_factor"] == pytest.approx(0.18215)
    assert any("decoded by" in n for n in data["checkpoint"]["notes"])
    assert data["config"]["prompts"] == str(prompts)


def test_prompts_are_encoded_by_the_pipelines_text_encoder(pipeline):
    import transformers

    root, prompts = pipeline
    ckpt = load_checkpoint(root, prompts=prompts, negative_prompt="dog")
    tok = transformers.CLIPTokenizer.from_pretrained(str(root / "tokenizer"), local_files_only=True)
    enc = transformers.CLIPTextModel.from_pretrained(str(root / "text_encoder"), local_files_only=True).eval()
    ids = tok(PROMPTS + ["dog"], padding="max_length", max_length=MAX_TOKENS, truncation=True, return_tensors="pt")
    with torch.no_grad():
        expected = enc(ids.input_ids)[0]
    conds = ckpt.conditions
    assert conds.values.shape == (2, MAX_TOKENS, CROSS_DIM)
    torch.testing.assert_close(conds.values, expected[:2])
    torch.testing.assert_close(conds.null, expected[2:])
    assert conds.null_source == "--negative-prompt 'dog'"


def test_decoder_turns_latents_into_images_in_chunks(pipeline):
    from collapsecheck.model.denoiser import build_denoiser

    root, _ = pipeline
    ckpt = load_checkpoint(root)
    den = build_denoiser(ckpt.model, ckpt.model_class, ckpt.model_config)
    den.decoder = ckpt.decoder
    latents = torch.randn(2, 1, 3, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    whole = den.decode_grid(latents, 64)
    chunked = den.decode_grid(latents, 2)
    assert whole.shape == (2, 1, 3, 3, 16, 16)
    assert whole.min() >= -1 and whole.max() <= 1
    torch.testing.assert_close(whole, chunked, atol=1e-5, rtol=1e-5)
    vae = ckpt.decoder.vae
    with torch.no_grad():
        direct = vae.decode(latents[0, 0] / vae.config.scaling_factor).sample.clamp(-1, 1)
    torch.testing.assert_close(whole[0, 0], direct, atol=1e-5, rtol=1e-5)
    pixel = build_denoiser(ckpt.model, ckpt.model_class, ckpt.model_config)
    assert pixel.decode_grid(latents, 2) is latents  # identity for pixel models


@pytest.mark.parametrize("args, code, words", [
    (["--prompts", "MISSING"], 2, "--prompts"),
    (["--prompts", "EMPTY"], 2, "holds no prompt"),
    (["--negative-prompt", "x"], 2, "pass --prompts FILE too"),
    (["--prompts", "PROMPTS", "--cond", "x.npy"], 2, "leave out --cond"),
])
def test_prompt_errors_are_one_line(pipeline, tmp_path, args, code, words):
    root, prompts = pipeline
    empty = tmp_path / "empty.txt"
    empty.write_text("\n \n")
    subst = {"MISSING": tmp_path / "nope.txt", "EMPTY": empty, "PROMPTS": prompts}
    res = invoke(root, *[subst.get(a, a) for a in args], *FAST)
    assert res.exit_code == code, res.output
    assert words in res.output and len(res.output.strip().splitlines()) == 1


def test_prompts_need_a_pipeline(pipeline, tmp_path):
    root, prompts = pipeline
    res = invoke(root / "unet", "--prompts", prompts, *FAST)  # a UNet folder inside a pipeline: still found
    assert res.exit_code in (0, 1), res.output
    from helpers_models import tiny_crossattn_unet

    tiny_crossattn_unet().save_pretrained(tmp_path / "alone")
    res = invoke(tmp_path / "alone", "--prompts", prompts, *FAST)
    assert res.exit_code == 2 and "needs a pipeline folder" in res.output


def test_pipeline_without_text_encoder_says_what_to_pass(pipeline, tmp_path):
    import shutil

    root, prompts = pipeline
    copy = tmp_path / "pipe"
    shutil.copytree(root, copy)
    shutil.rmtree(copy / "text_encoder")
    res = invoke(copy, "--prompts", prompts, *FAST)
    assert res.exit_code == 2 and "text_encoder/" in res.output and "--cond" in res.output


def test_measures_see_the_decoded_images(pipeline):
    from collapsecheck import make_config
    from collapsecheck import scan

    root, prompts = pipeline
    result = scan(make_config(checkpoint=str(root), prompts=str(prompts), seeds=2, steps=1, guidance=(1.0,),
                              recovery=False, lpips=False))
    assert tuple(result.samples.shape) == (1, 2, 2, 3, 16, 16)  # (guidance, prompts, seeds, RGB 16x16)
    assert result.condition_set["labels"] == PROMPTS


def test_lpips_runs_on_the_decoded_rgb_images(pipeline, tmp_path):
    import os
    from pathlib import Path

    weights = Path(os.environ.get("COLLAPSECHECK_LPIPS_WEIGHTS", "")) / "alexnet.safetensors"
    if not os.environ.get("COLLAPSECHECK_LPIPS_WEIGHTS") or not weights.is_file():
        pytest.skip("LPIPS weights not available (set COLLAPSECHECK_LPIPS_WEIGHTS)")
    root, prompts = pipeline
    out = tmp_path / "r.json"
    args = [a for a in FAST if a != "--no-lpips"]
    res = invoke(root, "--prompts", prompts, *args, "--lpips-weights", weights, "--json", out)
    assert res.exit_code in (0, 1), res.output
    data = json.loads(out.read_text())
    assert data["lpips"]["available"] is True  # 4-channel latents could not be measured; RGB images can
    assert all(c["lpips"] is not None for c in data["conditions"])


def test_text_encoders_saved_with_the_text_model_prefix_load_and_incomplete_ones_are_refused(pipeline, tmp_path):
    """transformers < 5.6 saved CLIPTextModel keys as ``text_model.*``; later versions without the prefix.
    Both must give the same embeddings; an encoder with missing weights (which transformers would fill
    with random numbers, warning only) is a load error."""
    import shutil

    from safetensors.torch import load_file, save_file

    from collapsecheck.errors import LoadError

    root, prompts = pipeline
    new = load_checkpoint(root, prompts=prompts).conditions
    old_root = tmp_path / "old"
    shutil.copytree(root, old_root)
    weights = old_root / "text_encoder" / "model.safetensors"
    state = load_file(str(weights))
    assert not any(k.startswith("text_model.") for k in state)  # what this transformers writes
    save_file({f"text_model.{k}": v for k, v in state.items()}, str(weights), metadata={"format": "pt"})
    old = load_checkpoint(old_root, prompts=prompts).conditions
    torch.testing.assert_close(old.values, new.values)
    save_file({k: v for k, v in state.items() if "layers.0.mlp" not in k}, str(weights), metadata={"format": "pt"})
    with pytest.raises(LoadError, match="lacks 4 weights"):
        load_checkpoint(old_root, prompts=prompts)
