"""PixArtTransformer2DModel: prompts through the pipeline's T5 encoder as PixArtAlphaPipeline.encode_prompt
runs it (its attention mask carried as zero padding), the learned-sigma half of the output dropped, the
resolution micro-conditions of PixArt-alpha 1024, and transformer or pipeline folders end to end."""
import json

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import save_file

pytest.importorskip("transformers")

from collapsecheck.load.dispatch import load_checkpoint  # noqa: E402
from collapsecheck.cli import cli  # noqa: E402
from collapsecheck.model.denoiser import build_denoiser, padding_mask  # noqa: E402
from helpers_models import _seeded  # noqa: E402
from helpers_pipeline import _quiet_transformers, tiny_vae  # noqa: E402

FAST = ["--seeds", "3", "--steps", "2", "--guidance", "1,3", "--no-recovery", "--no-lpips", "-q"]
PROMPTS = ["a cat", "A dog"]
CAPTION = 12  # T5 d_model = the transformer's caption_channels
MAX_LENGTH = 120  # PixArtAlphaPipeline's max_sequence_length


def invoke(*args):
    return CliRunner().invoke(cli, ["scan", *map(str, args)])


def tiny_t5_tokenizer():
    """A T5 Unigram tokenizer over a few pieces and the letters, built offline (no sentencepiece model)."""
    tf = _quiet_transformers()
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0), ("\u2581a", -1.0), ("\u2581cat", -1.0),
              ("\u2581dog", -1.0)] + [(chr(c), -5.0) for c in range(ord("a"), ord("z") + 1)]
    return tf.T5Tokenizer(vocab=pieces, extra_ids=0)


def tiny_t5(tokenizer, seed=0):
    tf = _quiet_transformers()
    config = tf.T5Config(vocab_size=len(tokenizer), d_model=CAPTION, d_kv=4, d_ff=16, num_layers=1, num_heads=2,
                         relative_attention_num_buckets=8, relative_attention_max_distance=16, pad_token_id=0,
                         eos_token_id=1, decoder_start_token_id=0)
    return _seeded(seed, lambda: tf.T5EncoderModel(config))


def tiny_pixart(seed=0, micro=False):
    """Learned sigma (out_channels 2 x 4); ``micro``: PixArt-alpha 1024's resolution and aspect-ratio inputs."""
    from diffusers import PixArtTransformer2DModel

    return _seeded(seed, lambda: PixArtTransformer2DModel(
        num_attention_heads=2, attention_head_dim=12, in_channels=4, out_channels=8, num_layers=2,
        cross_attention_dim=24, caption_channels=CAPTION, sample_size=8, patch_size=2,
        use_additional_conditions=micro))


def write_pixart_pipeline(root, micro=False):
    from diffusers import DDIMScheduler

    tokenizer = tiny_t5_tokenizer()
    tokenizer.save_pretrained(str(root / "tokenizer"))
    tiny_t5(tokenizer).save_pretrained(str(root / "text_encoder"))
    tiny_pixart(micro=micro).save_pretrained(str(root / "transformer"))
    tiny_vae().save_pretrained(str(root / "vae"))
    DDIMScheduler(beta_schedule="linear", beta_start=0.0001, beta_end=0.02).save_pretrained(str(root / "scheduler"))
    (root / "model_index.json").write_text(json.dumps({
        "_class_name": "PixArtAlphaPipeline", "_diffusers_version": "0.42.1",
        "scheduler": ["diffusers", "DDIMScheduler"], "text_encoder": ["transformers", "T5EncoderModel"],
        "tokenizer": ["transformers", "T5Tokenizer"], "transformer": ["diffusers", "PixArtTransformer2DModel"],
        "vae": ["diffusers", "AutoencoderKL"]}))
    return root


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    root = write_pixart_pipeline(tmp_path_factory.mktemp("pixart") / "pipe")
    prompts = root.parent / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    return root, prompts


def _diffusers_pipeline(root):
    """The same folder loaded as diffusers' own PixArtAlphaPipeline, for reference values."""
    import transformers
    from diffusers import AutoencoderKL, DDIMScheduler, PixArtAlphaPipeline, PixArtTransformer2DModel

    return PixArtAlphaPipeline(
        tokenizer=transformers.AutoTokenizer.from_pretrained(str(root / "tokenizer"), local_files_only=True),
        text_encoder=transformers.T5EncoderModel.from_pretrained(str(root / "text_encoder"), local_files_only=True),
        vae=AutoencoderKL.from_pretrained(str(root / "vae"), local_files_only=True),
        transformer=PixArtTransformer2DModel.from_pretrained(str(root / "transformer"), local_files_only=True),
        scheduler=DDIMScheduler.from_pretrained(str(root / "scheduler"), local_files_only=True))


def test_scan_pixart_pipeline_with_prompts_end_to_end(pipeline, tmp_path):
    root, prompts = pipeline
    out = tmp_path / "r.json"
    res = invoke(root, "--prompts", prompts, *FAST, "--json", out)
    assert res.exit_code in (0, 1), res.output
    data = json.loads(out.read_text())
    assert data["verdict"] in ("healthy", "at_risk", "collapsed")
    assert data["guidance"]["verdict"] in ("steerable", "weak", "not_steerable")
    assert data["checkpoint"]["model_class"] == "PixArtTransformer2DModel"
    assert [c["label"] for c in data["conditions"]] == PROMPTS
    assert data["condition_set"]["null"] == "the empty prompt"
    assert "T5EncoderModel" in data["condition_set"]["source"]
    assert data["checkpoint"]["decoder"]["latent_shape"] == [4, 8, 8]
    assert data["checkpoint"]["decoder"]["image_shape"] == [3, 16, 16]
    assert any("padded to 120 tokens" in n and "masked" in n for n in data["checkpoint"]["notes"])


def test_prompts_are_encoded_as_the_pixart_pipeline_encodes_them(pipeline):
    root, prompts = pipeline
    ckpt = load_checkpoint(root, prompts=prompts, negative_prompt="a dog")
    pipe = _diffusers_pipeline(root)
    with torch.no_grad():
        embeds, mask, neg, neg_mask = pipe.encode_prompt(PROMPTS, negative_prompt="a dog", device="cpu",
                                                         clean_caption=False, max_sequence_length=MAX_LENGTH)
    conds = ckpt.conditions
    assert conds.values.shape == (2, MAX_LENGTH, CAPTION)
    # the mask travels as zero padding: the tokens the pipeline attends to, the rest zero
    torch.testing.assert_close(conds.values, embeds * mask[..., None])
    torch.testing.assert_close(conds.null, neg[:1] * neg_mask[:1, :, None])
    assert torch.equal(padding_mask(conds.values), mask) and torch.equal(padding_mask(conds.null), neg_mask[:1])
    assert mask.sum(1).tolist() == [3, 3]  # "a cat" and the lowercased "a dog": two pieces and </s>
    assert conds.null_source == "--negative-prompt 'a dog'"


def test_denoiser_matches_the_pipelines_transformer_call_and_drops_learned_sigma(pipeline):
    root, prompts = pipeline
    ckpt = load_checkpoint(root, prompts=prompts)
    den = build_denoiser(ckpt.model, ckpt.model_class, ckpt.model_config)
    assert den.kind == "cross_attn" and den.sample_shape == (4, 8, 8)
    pipe = _diffusers_pipeline(root)
    with torch.no_grad():
        embeds, mask, _, _ = pipe.encode_prompt(PROMPTS, device="cpu", clean_caption=False,
                                                max_sequence_length=MAX_LENGTH)
        x, t = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0)), torch.tensor([10, 700])
        ours = den(x, t, ckpt.conditions.values)
        full = ckpt.model(x, encoder_hidden_states=embeds, encoder_attention_mask=mask, timestep=t,
                          added_cond_kwargs={"resolution": None, "aspect_ratio": None}).sample
        unmasked = ckpt.model(x, encoder_hidden_states=embeds, timestep=t,
                              added_cond_kwargs={"resolution": None, "aspect_ratio": None}).sample
    assert full.shape == (2, 8, 8, 8) and ours.shape == (2, 4, 8, 8)  # the learned-sigma half is dropped
    torch.testing.assert_close(ours, full[:, :4], atol=1e-5, rtol=1e-5)
    assert (unmasked[:, :4] - full[:, :4]).abs().max() > 1e-4  # the mask matters
    # CADS noise covers the padding too, but the mask is read before it is added: the padding stays masked
    noise = torch.randn(2, MAX_LENGTH, CAPTION, generator=torch.Generator().manual_seed(1))
    mixed = 0.5 ** 0.5 * (ckpt.conditions.values + noise)
    with torch.no_grad():
        cads = den(x, t, ckpt.conditions.values, (torch.full((2,), 0.5), noise))
        expected = ckpt.model(x, encoder_hidden_states=mixed, encoder_attention_mask=mask, timestep=t,
                              added_cond_kwargs={"resolution": None, "aspect_ratio": None}).sample
    torch.testing.assert_close(cads, expected[:, :4], atol=1e-5, rtol=1e-5)
    tokens = ckpt.conditions.values[mask.bool()]  # (6, CAPTION): CADS noise scales with the tokens, not the padding
    assert den.condition_spread(ckpt.conditions) == pytest.approx(float(tokens.std()))


def test_transformer_folder_scans_cond_embeddings(tmp_path):
    tiny_pixart().save_pretrained(tmp_path / "transformer")
    emb = torch.randn(2, 6, CAPTION, generator=torch.Generator().manual_seed(1))
    emb[:, 4:] = 0  # zero rows: padding, masked
    save_file({"cond": emb}, str(tmp_path / "emb.safetensors"))
    out = tmp_path / "r.json"
    res = invoke(tmp_path / "transformer", "--cond", tmp_path / "emb.safetensors", *FAST, "--json", out)
    assert res.exit_code in (0, 1), res.output
    data = json.loads(out.read_text())
    assert data["checkpoint"]["model_class"] == "PixArtTransformer2DModel"
    assert data["condition_set"]["kind"] == "cross_attn" and data["condition_set"]["count"] == 2
    assert data["checkpoint"]["decoder"] is None
    wrong = tmp_path / "wrong.safetensors"
    save_file({"cond": torch.randn(2, 6, 24)}, str(wrong))
    res = invoke(tmp_path / "transformer", "--cond", wrong, *FAST)
    assert res.exit_code == 2 and "(1, 12)" in res.output


def test_resolution_micro_conditions_follow_the_decoded_image_size(tmp_path):
    tiny_pixart(micro=True).save_pretrained(tmp_path / "transformer")
    ckpt = load_checkpoint(tmp_path / "transformer")
    assert any("aspect ratio 1" in n for n in ckpt.notes)
    den = build_denoiser(ckpt.model, ckpt.model_class, ckpt.model_config)
    x, t = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0)), torch.tensor([10, 700])
    c = torch.randn(2, 5, CAPTION, generator=torch.Generator().manual_seed(2))

    def reference(size):
        cond = {"resolution": torch.tensor([[size, size]] * 2, dtype=torch.float32),
                "aspect_ratio": torch.ones(2, 1)}
        return ckpt.model(x, encoder_hidden_states=c, timestep=t, added_cond_kwargs=cond,
                          encoder_attention_mask=torch.ones(2, 5)).sample[:, :4]

    with torch.no_grad():
        torch.testing.assert_close(den(x, t, c), reference(64.0))  # no VAE: 8 x 8 latents, 8x -> 64 px
        assert (reference(64.0) - reference(16.0)).abs().max() > 1e-5
        root = write_pixart_pipeline(tmp_path / "pipe", micro=True)
        piped = load_checkpoint(root)
        den = build_denoiser(piped.model, piped.model_class, piped.model_config)
        den.decoder = piped.decoder  # the tiny VAE upsamples 2x: 16 px images
        torch.testing.assert_close(den(x, t, c), reference(16.0))


def test_prompts_need_the_pipeline_and_a_matching_encoder(pipeline, tmp_path):
    import shutil

    root, prompts = pipeline
    res = invoke(root / "transformer", "--prompts", prompts, *FAST)  # inside the pipeline: found
    assert res.exit_code in (0, 1), res.output
    alone = tmp_path / "alone"
    shutil.copytree(root / "transformer", alone)
    res = invoke(alone, "--prompts", prompts, *FAST)
    assert res.exit_code == 2 and "needs a pipeline folder" in res.output
    other = tmp_path / "other"
    shutil.copytree(root, other)
    shutil.rmtree(other / "text_encoder")
    tiny_t5(tiny_t5_tokenizer()).__class__(  # a 16-wide T5: does not belong to a 12-channel caption projection
        _quiet_transformers().T5Config(vocab_size=40, d_model=16, d_kv=4, d_ff=16, num_layers=1, num_heads=2)
    ).save_pretrained(str(other / "text_encoder"))
    res = invoke(other, "--prompts", prompts, *FAST)
    assert res.exit_code == 3 and "16-wide" in res.output and len(res.output.strip().splitlines()) == 1


def test_published_pixart_config_naming_transformer2dmodel_loads_as_pixart(tmp_path):
    """PixArt-alpha/PixArt-XL-2-512x512's transformer/config.json names Transformer2DModel (norm_type
    ada_norm_single): diffusers loads it as PixArtTransformer2DModel, and so must the scan."""
    from test_dit import _legacy_config

    model = tiny_pixart(seed=2).eval()
    model.save_pretrained(tmp_path / "transformer")
    _legacy_config(tmp_path / "transformer", double_self_attention=False)
    ckpt = load_checkpoint(tmp_path / "transformer")
    assert ckpt.model_class == "PixArtTransformer2DModel"
    assert any("Transformer2DModel" in n and "ada_norm_single" in n for n in ckpt.notes)
    den = build_denoiser(ckpt.model, ckpt.model_class, ckpt.model_config)
    g = torch.Generator().manual_seed(0)
    x, t = torch.randn(2, 4, 8, 8, generator=g), torch.tensor([5, 900])
    cond = torch.randn(2, 6, CAPTION, generator=g)
    cond[0, 3:] = 0
    with torch.no_grad():
        expected = model(x, encoder_hidden_states=cond, encoder_attention_mask=padding_mask(cond), timestep=t,
                         added_cond_kwargs={"resolution": None, "aspect_ratio": None}).sample[:, :4]
        torch.testing.assert_close(den(x, t, cond), expected, atol=1e-6, rtol=0)
