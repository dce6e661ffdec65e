"""SD3Transformer2DModel: embeddings and pooled embeddings from --cond, packed into one row per condition,
a flow-matching schedule, and a pipeline folder (transformer/, scheduler/, vae/) scanned end to end."""
import json

import pytest
import torch
from click.testing import CliRunner
from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel
from safetensors.torch import save_file

from collapsecheck.load.dispatch import load_checkpoint
from collapsecheck.cli import cli
from collapsecheck.load.conditions import pack_pooled, pooled_conditions
from collapsecheck.model.denoiser import build_denoiser
from collapsecheck.errors import UsageError
from helpers_models import _seeded

FAST = ["--seeds", "3", "--steps", "3", "--guidance", "0,1,3", "--no-lpips", "-q", "--fail-on", "never"]
DIM, POOLED, TOKENS = 16, 8, 5


def tiny_sd3(seed=0):
    return _seeded(seed, lambda: SD3Transformer2DModel(
        sample_size=8, patch_size=2, in_channels=4, out_channels=4, num_layers=1, attention_head_dim=8,
        num_attention_heads=2, joint_attention_dim=DIM, caption_projection_dim=16, pooled_projection_dim=POOLED,
        pos_embed_max_size=8))


def write_cond(path, n=3, null=True):
    g = torch.Generator().manual_seed(0)
    tensors = {"cond": torch.randn(n, TOKENS, DIM, generator=g), "pooled": torch.randn(n, POOLED, generator=g)}
    if null:
        tensors.update(null=torch.randn(1, TOKENS, DIM, generator=g), null_pooled=torch.randn(1, POOLED, generator=g))
    save_file(tensors, str(path))
    return tensors


def test_packed_conditions_reach_the_transformer_as_they_were(tmp_path):
    tiny_sd3().save_pretrained(tmp_path / "transformer")
    ckpt = load_checkpoint(tmp_path / "transformer")
    den = build_denoiser(ckpt.model, ckpt.model_class, ckpt.model_config)
    assert den.kind == "cross_attn" and den.sample_shape == (4, 8, 8) and den.pooled == (DIM, POOLED)
    tensors = write_cond(tmp_path / "c.safetensors")
    conds = pooled_conditions(tmp_path / "c.safetensors", DIM, POOLED)
    assert conds.values.shape == (3, TOKENS * DIM + POOLED) and conds.null.shape == (1, TOKENS * DIM + POOLED)
    torch.testing.assert_close(conds.null, pack_pooled(tensors["null"], tensors["null_pooled"]))
    x, t = torch.randn(3, 4, 8, 8), torch.tensor([999.0, 500.0, 3.0])
    with torch.no_grad():
        ours = den(x, t, conds.values)
        direct = ckpt.model(hidden_states=x, encoder_hidden_states=tensors["cond"],
                            pooled_projections=tensors["pooled"], timestep=t).sample
    torch.testing.assert_close(ours, direct)


def test_cond_file_without_pooled_is_a_usage_error(tmp_path):
    save_file({"cond": torch.randn(2, TOKENS, DIM)}, str(tmp_path / "c.safetensors"))
    with pytest.raises(UsageError, match="'pooled'"):
        pooled_conditions(tmp_path / "c.safetensors", DIM, POOLED)


def test_sd3_pipeline_end_to_end(tmp_path):
    from helpers_pipeline import tiny_vae

    root = tmp_path / "sd3"
    tiny_sd3().save_pretrained(root / "transformer")
    FlowMatchEulerDiscreteScheduler(shift=3.0).save_pretrained(root / "scheduler")
    tiny_vae().save_pretrained(root / "vae")
    (root / "model_index.json").write_text(json.dumps({
        "_class_name": "StableDiffusion3Pipeline", "transformer": ["diffusers", "SD3Transformer2DModel"],
        "vae": ["diffusers", "AutoencoderKL"], "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"]}))
    write_cond(tmp_path / "c.safetensors")
    out = tmp_path / "r.json"
    res = CliRunner().invoke(cli, ["scan", str(root), "--cond", str(tmp_path / "c.safetensors"), *FAST,
                                   "--json", str(out)])
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert data["verdict"] in ("healthy", "at_risk", "collapsed")
    assert data["checkpoint"]["model_class"] == "SD3Transformer2DModel"
    assert data["checkpoint"]["prediction_type"] == "flow_velocity"
    assert data["checkpoint"]["decoder"]["image_shape"] == [3, 16, 16]
    assert data["condition_set"]["count"] == 3 and data["condition_set"]["null"].startswith("'null' and 'null_pooled'")
    res = CliRunner().invoke(cli, ["scan", str(root), *FAST])
    assert res.exit_code == 2 and "'pooled'" in res.output


def write_sd3_pipeline(root):
    """transformer/, scheduler/ and two tiny CLIP encoders with projection (hidden 8 + 8 = joint_attention_dim,
    projections 4 + 4 = pooled_projection_dim); no T5, as the pipeline allows."""
    from helpers_pipeline import _quiet_transformers, write_tokenizer

    tf = _quiet_transformers()
    tiny_sd3().save_pretrained(root / "transformer")
    FlowMatchEulerDiscreteScheduler(shift=3.0).save_pretrained(root / "scheduler")
    for i, name in enumerate(("", "_2")):
        tokenizer = write_tokenizer(root / f"tokenizer{name}")
        config = tf.CLIPTextConfig(
            vocab_size=len(tokenizer), hidden_size=DIM // 2, intermediate_size=16, num_hidden_layers=1,
            num_attention_heads=2, max_position_embeddings=8, projection_dim=POOLED // 2,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
        _seeded(i, lambda: tf.CLIPTextModelWithProjection(config)).save_pretrained(str(root / f"text_encoder{name}"))
    (root / "model_index.json").write_text(json.dumps({
        "_class_name": "StableDiffusion3Pipeline", "transformer": ["diffusers", "SD3Transformer2DModel"],
        "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
        "text_encoder": ["transformers", "CLIPTextModelWithProjection"], "tokenizer": ["transformers", "CLIPTokenizer"],
        "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
        "tokenizer_2": ["transformers", "CLIPTokenizer"], "text_encoder_3": [None, None], "tokenizer_3": [None, None],
        "vae": [None, None]}))
    return root


def test_sd3_prompts_through_the_pipelines_own_encode_prompt(tmp_path):
    root = write_sd3_pipeline(tmp_path / "sd3")
    (tmp_path / "p.txt").write_text("cat\ndog\n")
    ckpt = load_checkpoint(root, prompts=tmp_path / "p.txt")
    conds = ckpt.conditions
    assert conds.labels == ("cat", "dog") and conds.null_source == "the empty prompt"
    assert conds.values.shape == (2, (8 + 256) * DIM + POOLED)  # 8 CLIP tokens + 256 zero T5 tokens
    assert any("no text_encoder_3" in n for n in conds.notes)
    assert not torch.equal(conds.values[0], conds.values[1])
    out = tmp_path / "r.json"
    res = CliRunner().invoke(cli, ["scan", str(root), "--prompts", str(tmp_path / "p.txt"), *FAST, "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert [c["label"] for c in json.loads(out.read_text())["conditions"]] == ["cat", "dog"]
