"""SD3.5 pipelines (StableDiffusion3Pipeline with three text encoders): a large-like transformer (qk_norm) and a
medium-like one (qk_norm and dual_attention_layers), sampled as diffusers samples them (the same latents from the
same seeds, classifier-free guidance included) and scanned end to end."""
import json
import shutil

import pytest
import torch
from click.testing import CliRunner
from diffusers import SD3Transformer2DModel

from collapsecheck.cli import cli
from collapsecheck.config import make_config
from collapsecheck.model.parametrization import vp_denoiser
from collapsecheck.run import conditions_of, load, schedule_for
from collapsecheck.sample.grid import sample_grid
from helpers_flux import write_t5
from helpers_models import _seeded
from test_sd3 import DIM, POOLED, write_sd3_pipeline

SEEDS, STEPS = [0, 1], 4
T5_TOKENS = 256  # StableDiffusion3Pipeline's default max_sequence_length


def write_sd35(root, medium):
    """SD3's tiny pipeline with an SD3.5 transformer and a T5 text_encoder_3 (DIM wide, as joint_attention_dim)."""
    write_sd3_pipeline(root)
    shutil.rmtree(root / "transformer")
    extra = {"dual_attention_layers": (0,)} if medium else {}
    _seeded(0, lambda: SD3Transformer2DModel(
        sample_size=8, patch_size=2, in_channels=4, out_channels=4, num_layers=2, attention_head_dim=8,
        num_attention_heads=2, joint_attention_dim=DIM, caption_projection_dim=16, pooled_projection_dim=POOLED,
        pos_embed_max_size=8, qk_norm="rms_norm", **extra)).save_pretrained(root / "transformer")
    write_t5(root, "text_encoder_3", "tokenizer_3", width=DIM)
    index = json.loads((root / "model_index.json").read_text())
    index.update(text_encoder_3=["transformers", "T5EncoderModel"], tokenizer_3=["transformers", "T5TokenizerFast"])
    (root / "model_index.json").write_text(json.dumps(index))
    return root


@pytest.fixture(scope="module", params=["large", "medium"])
def sd35(request, tmp_path_factory):
    base = tmp_path_factory.mktemp("sd35")
    (base / "p.txt").write_text("cat\ndog\n")
    return write_sd35(base / request.param, medium=request.param == "medium"), base / "p.txt"


def test_latents_match_stable_diffusion_3_pipeline(sd35):
    """With CFG (w = 4) and without (w = 1): StableDiffusion3Pipeline's latents from the same seeds, its three
    encoders' embeddings and the empty prompt as the negative."""
    from diffusers import StableDiffusion3Pipeline

    root, prompts = sd35
    config = make_config(checkpoint=str(root), prompts=str(prompts), steps=STEPS, seeds=len(SEEDS))
    ckpt, den = load(config)
    assert ckpt.model_config["qk_norm"] == "rms_norm"
    assert bool(ckpt.model_config["dual_attention_layers"]) == root.name.startswith("medium")
    conds = conditions_of(config, ckpt, den)
    assert conds.values.shape == (2, (8 + T5_TOKENS) * DIM + POOLED) and not any("no text_encoder_3" in n for n in conds.notes)
    schedule = schedule_for(config, ckpt, den)
    mine = sample_grid(vp_denoiser(den, schedule), schedule, conds, SEEDS, [1.0, 4.0], STEPS, 64).samples
    pipe = StableDiffusion3Pipeline.from_pretrained(str(root), local_files_only=True, vae=None)
    pipe.set_progress_bar_config(disable=True)
    for v, w in enumerate((1.0, 4.0)):
        for s, seed in enumerate(SEEDS):
            theirs = pipe(prompt="dog", height=64, width=64, num_inference_steps=STEPS, guidance_scale=w,
                          generator=torch.Generator().manual_seed(seed), output_type="latent").images[0]
            torch.testing.assert_close(mine[v, 1, s], theirs, atol=2e-5, rtol=1e-4)
    assert (mine[0] - mine[1]).abs().max() > 1e-3


def test_sd35_scans_end_to_end(sd35, tmp_path):
    root, prompts = sd35
    out = tmp_path / "r.json"
    res = CliRunner().invoke(cli, ["scan", str(root), "--prompts", str(prompts), "--mode", "fast", "--seeds", "3",
                                   "--steps", "3", "--no-lpips", "-q", "--fail-on", "never", "--json", str(out)])
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert data["checkpoint"]["model_class"] == "SD3Transformer2DModel" and data["guidance"]["kind"] == "cfg"
    assert data["guidance"]["null_branch"]["verdict"] in ("learned", "unclear", "not_learned")
    assert "StableDiffusion3Pipeline's sigmas" in data["checkpoint"]["scheduler_source"]
    assert "(StableDiffusion3Pipeline.encode_prompt)" in data["condition_set"]["source"]
