"""SDXL-style UNets (``addition_embed_type="text_time"``): embeddings and pooled embeddings packed into one row per
condition, the size time ids fixed per scan, --prompts through StableDiffusionXLPipeline.encode_prompt, and a
pipeline folder scanned end to end."""
import json

import pytest
import torch
from click.testing import CliRunner
from diffusers import EulerDiscreteScheduler, UNet2DConditionModel
from safetensors.torch import save_file

from collapsecheck.load.dispatch import load_checkpoint
from collapsecheck.cli import cli
from collapsecheck.load.conditions import pooled_conditions
from collapsecheck.model.denoiser import build_denoiser
from collapsecheck.errors import LoadError
from helpers_models import _seeded

FAST = ["--seeds", "3", "--steps", "3", "--guidance", "0,1,3", "--no-lpips", "-q", "--fail-on", "never"]
DIM, POOLED, TIME_DIM, TOKENS = 16, 8, 4, 8  # two 8-wide CLIP encoders; 8-wide projection of the second


def tiny_sdxl_unet(seed=0):
    return _seeded(seed, lambda: UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(8, 16), layers_per_block=1,
        norm_num_groups=4, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=DIM, attention_head_dim=4,
        addition_embed_type="text_time", addition_time_embed_dim=TIME_DIM,
        projection_class_embeddings_input_dim=POOLED + 6 * TIME_DIM))


def write_cond(path, n=3, pooled=True):
    g = torch.Generator().manual_seed(0)
    tensors = {"cond": torch.randn(n, TOKENS, DIM, generator=g)}
    if pooled:
        tensors["pooled"] = torch.randn(n, POOLED, generator=g)
    save_file(tensors, str(path))
    return tensors


def write_sdxl_pipeline(root, index_extra=None):
    """unet/, vae/ (scale factor 2), scheduler/, text_encoder/ (CLIPTextModel) and text_encoder_2/
    (CLIPTextModelWithProjection): hidden 8 + 8 = cross_attention_dim, projection 8 = the pooled width."""
    from helpers_pipeline import _quiet_transformers, tiny_vae, write_tokenizer

    tf = _quiet_transformers()
    tiny_sdxl_unet().save_pretrained(root / "unet")
    tiny_vae().save_pretrained(root / "vae")
    EulerDiscreteScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012).save_pretrained(
        root / "scheduler")
    for i, (name, cls) in enumerate((("", tf.CLIPTextModel), ("_2", tf.CLIPTextModelWithProjection))):
        tokenizer = write_tokenizer(root / f"tokenizer{name}")
        config = tf.CLIPTextConfig(
            vocab_size=len(tokenizer), hidden_size=DIM // 2, intermediate_size=16, num_hidden_layers=2,
            num_attention_heads=2, max_position_embeddings=TOKENS, projection_dim=POOLED,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
        _seeded(i, lambda: cls(config)).save_pretrained(str(root / f"text_encoder{name}"))
    index = {
        "_class_name": "StableDiffusionXLPipeline", "_diffusers_version": "0.42.1",
        "force_zeros_for_empty_prompt": True, "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"], "scheduler": ["diffusers", "EulerDiscreteScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
        "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
        "tokenizer_2": ["transformers", "CLIPTokenizer"], "image_encoder": [None, None],
        "feature_extractor": [None, None], **(index_extra or {})}
    (root / "model_index.json").write_text(json.dumps(index))
    return root


def test_packed_row_reaches_the_unet_as_added_cond_kwargs(tmp_path):
    tiny_sdxl_unet().save_pretrained(tmp_path / "unet")
    ckpt = load_checkpoint(tmp_path / "unet")
    den = build_denoiser(ckpt.model, ckpt.model_class, ckpt.model_config)
    assert den.kind == "cross_attn" and den.pooled == (DIM, POOLED) and den.text_time
    tensors = write_cond(tmp_path / "c.safetensors")
    conds = pooled_conditions(tmp_path / "c.safetensors", *den.pooled)
    x, t = torch.randn(3, 4, 8, 8), torch.tensor([999, 500, 3])
    ids = torch.tensor([[64.0, 64.0, 0.0, 0.0, 64.0, 64.0]]).repeat(3, 1)  # 8 latents x 8 without a VAE
    with torch.no_grad():
        ours = den(x, t, conds.values)
        direct = ckpt.model(x, t, encoder_hidden_states=tensors["cond"],
                            added_cond_kwargs={"text_embeds": tensors["pooled"], "time_ids": ids}).sample
        other = ckpt.model(x, t, encoder_hidden_states=tensors["cond"],
                           added_cond_kwargs={"text_embeds": tensors["pooled"], "time_ids": ids / 2}).sample
    torch.testing.assert_close(ours, direct)
    assert not torch.allclose(ours, other)  # the time ids reach the network
    assert den.notes() == ["SDXL size conditions (time_ids), fixed for the scan: original size 64x64, crop top-left "
                           "0,0, target size 64x64, the pipeline's default image size (sample_size x 8 (no vae/))"]


def test_cond_file_without_pooled_is_one_usage_error(tmp_path):
    tiny_sdxl_unet().save_pretrained(tmp_path / "unet")
    write_cond(tmp_path / "c.safetensors", pooled=False)
    res = CliRunner().invoke(cli, ["scan", str(tmp_path / "unet"), "--cond", str(tmp_path / "c.safetensors"), *FAST])
    assert res.exit_code == 2
    assert "'pooled'" in res.output and len(res.output.strip().splitlines()) == 1, res.output
    save_file({"cond": torch.randn(2, TOKENS, DIM), "pooled": torch.randn(2, POOLED + TIME_DIM)},
              str(tmp_path / "r.safetensors"))  # a refiner-width pooled embedding
    res = CliRunner().invoke(cli, ["scan", str(tmp_path / "unet"), "--cond", str(tmp_path / "r.safetensors"), *FAST])
    assert res.exit_code == 2 and "refiners" in res.output, res.output


def test_prompts_equal_the_pipelines_own_encode_prompt(tmp_path):
    from diffusers import StableDiffusionXLPipeline

    root = write_sdxl_pipeline(tmp_path / "sdxl")
    (tmp_path / "p.txt").write_text("cat\ndog\n")
    conds = load_checkpoint(root, prompts=tmp_path / "p.txt").conditions
    assert conds.labels == ("cat", "dog")
    assert conds.null_source.startswith("zeros") and any("force_zeros_for_empty_prompt" in n for n in conds.notes)
    pipe = StableDiffusionXLPipeline.from_pretrained(str(root), local_files_only=True, add_watermarker=False)
    with torch.no_grad():
        embeds, null, pooled, null_pooled = pipe.encode_prompt(["cat", "dog"], device=torch.device("cpu"))
    assert embeds.shape == (2, TOKENS, DIM) and pooled.shape == (2, POOLED)
    torch.testing.assert_close(conds.values, torch.cat([embeds.flatten(1), pooled], 1))
    assert not conds.null.any() and not null.any() and not null_pooled.any()  # force_zeros_for_empty_prompt
    conds = load_checkpoint(root, prompts=tmp_path / "p.txt", negative_prompt="dog").conditions
    with torch.no_grad():
        _, null, _, null_pooled = pipe.encode_prompt(["cat", "dog"], device=torch.device("cpu"),
                                                     negative_prompt=["dog", "dog"])
    torch.testing.assert_close(conds.null, torch.cat([null[:1].flatten(1), null_pooled[:1]], 1))
    torch.testing.assert_close(conds.null, conds.values[1:])  # the negative prompt "dog" is the condition "dog"


def test_sdxl_pipeline_scan_end_to_end(tmp_path):
    root = write_sdxl_pipeline(tmp_path / "sdxl")
    (tmp_path / "p.txt").write_text("cat\ndog\n")
    out = tmp_path / "r.json"
    res = CliRunner().invoke(cli, ["scan", str(root), "--prompts", str(tmp_path / "p.txt"), *FAST, "--json", str(out)])
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert data["verdict"] in ("healthy", "at_risk", "collapsed")
    assert [c["label"] for c in data["conditions"]] == ["cat", "dog"]
    assert data["checkpoint"]["decoder"]["image_shape"] == [3, 16, 16]
    assert any("original size 16x16, crop top-left 0,0, target size 16x16" in n for n in data["checkpoint"]["notes"])
    write_cond(tmp_path / "c.safetensors")  # the same folder with --cond embeddings
    res = CliRunner().invoke(cli, ["scan", str(root), "--cond", str(tmp_path / "c.safetensors"), *FAST])
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize("extra, message", [
    ({"_class_name": "StableDiffusionXLInpaintPipeline"}, "masked image"),
    ({"_class_name": "StableDiffusionXLImg2ImgPipeline", "requires_aesthetics_score": True}, "refiner"),
])
def test_unsupported_sdxl_pipelines_are_one_line(tmp_path, extra, message):
    root = tmp_path / "sdxl"
    tiny_sdxl_unet().save_pretrained(root / "unet")
    (root / "model_index.json").write_text(json.dumps({"unet": ["diffusers", "UNet2DConditionModel"], **extra}))
    with pytest.raises(LoadError, match=message):
        load_checkpoint(root)


def test_controlnet_on_an_sdxl_base_is_one_line(tmp_path):
    from diffusers import ControlNetModel

    root = write_sdxl_pipeline(tmp_path / "sdxl")
    ControlNetModel.from_unet(tiny_sdxl_unet(), conditioning_embedding_out_channels=(4, 8)).save_pretrained(
        tmp_path / "cn")
    with pytest.raises(LoadError, match="SDXL ControlNets are not supported"):
        load_checkpoint(tmp_path / "cn", base=root)


def test_lora_reaches_the_unet_and_both_text_encoders(tmp_path):
    pytest.importorskip("peft")
    import transformers
    from diffusers import StableDiffusionXLPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig, inject_adapter_in_model
    from peft.utils import get_peft_model_state_dict

    root = write_sdxl_pipeline(tmp_path / "sdxl")
    (tmp_path / "p.txt").write_text("cat\ndog\n")
    unet = tiny_sdxl_unet()
    unet.add_adapter(LoraConfig(r=2, lora_alpha=2, target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    targets = ["q_proj", "k_proj", "v_proj", "out_proj"]
    encoders = [inject_adapter_in_model(LoraConfig(r=2, lora_alpha=2, target_modules=targets),
                                        cls.from_pretrained(str(root / f"text_encoder{name}"), local_files_only=True))
                for name, cls in (("", transformers.CLIPTextModel), ("_2", transformers.CLIPTextModelWithProjection))]
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        for model in (unet, *encoders):
            for name, p in model.named_parameters():
                if "lora" in name:
                    p.normal_(0, 0.3)
    StableDiffusionXLPipeline.save_lora_weights(
        str(tmp_path / "lora"), unet_lora_layers=convert_state_dict_to_diffusers(get_peft_model_state_dict(unet)),
        text_encoder_lora_layers=get_peft_model_state_dict(encoders[0]),
        text_encoder_2_lora_layers=get_peft_model_state_dict(encoders[1]), safe_serialization=True)
    lora = tmp_path / "lora" / "pytorch_lora_weights.safetensors"
    base = load_checkpoint(root, prompts=tmp_path / "p.txt").conditions
    zero = load_checkpoint(root, prompts=tmp_path / "p.txt", lora=lora, lora_scale=0.0)
    one = load_checkpoint(root, prompts=tmp_path / "p.txt", lora=lora)
    torch.testing.assert_close(zero.conditions.values, base.values, atol=0, rtol=0)
    assert (one.conditions.values[:, -POOLED:] - base.values[:, -POOLED:]).abs().max() > 1e-3  # text_encoder_2
    notes = list(one.notes) + list(one.conditions.notes)
    assert any("text-encoder layers at scale 1" in n for n in notes) and any("text_encoder_2 layers at scale 1" in n
                                                                           for n in notes), notes
    assert not any("not applied" in n for n in notes), notes
    pipe = StableDiffusionXLPipeline.from_pretrained(str(root), local_files_only=True, add_watermarker=False,
                                                     text_encoder=encoders[0].eval(), text_encoder_2=encoders[1].eval())
    with torch.no_grad():
        embeds, _, pooled, _ = pipe.encode_prompt(["cat", "dog"], device=torch.device("cpu"))
    torch.testing.assert_close(one.conditions.values, torch.cat([embeds.flatten(1), pooled], 1), atol=1e-5, rtol=1e-5)
    save_file({"cond": torch.randn(2, TOKENS, DIM), "pooled": torch.randn(2, POOLED)}, str(tmp_path / "c.safetensors"))
    res = CliRunner().invoke(cli, ["scan", str(root), "--lora", str(lora), "--cond", str(tmp_path / "c.safetensors"),
                                   *FAST, "--json", str(tmp_path / "r.json")])
    assert res.exit_code == 0, res.output
    notes = json.loads((tmp_path / "r.json").read_text())["checkpoint"]["notes"]
    assert any("text_encoder and text_encoder_2 layers are not applied" in n for n in notes), notes


def test_img2img_pipeline_with_a_base_unet_encodes_as_the_text_to_image_one(tmp_path):
    (tmp_path / "p.txt").write_text("cat\ndog\n")
    t2i = load_checkpoint(write_sdxl_pipeline(tmp_path / "t2i"), prompts=tmp_path / "p.txt").conditions
    i2i = write_sdxl_pipeline(tmp_path / "i2i", {"_class_name": "StableDiffusionXLImg2ImgPipeline",
                                                 "requires_aesthetics_score": False})
    torch.testing.assert_close(load_checkpoint(i2i, prompts=tmp_path / "p.txt").conditions.values, t2i.values)
