"""LoRA on transformer denoisers (SD3, Flux, PixArt): loaded through collapsecheck, the outputs match diffusers' own
loading (``load_lora_adapter``) and the closed form W + scale * alpha / r * B A (alpha != rank), differ from the
base's; kohya Flux files are converted; a LoRA for another model, or in no known layout, is one line (exit 3)."""
import copy
import json

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

pytest.importorskip("peft")

from collapsecheck.cli import cli  # noqa: E402
from collapsecheck.errors import LoadError  # noqa: E402
from collapsecheck.load.dispatch import load_checkpoint  # noqa: E402
from collapsecheck.load.lora import apply_lora  # noqa: E402
from collapsecheck.load.lora_keys import FLUX, KOHYA, PIXART, SD3, UNET, lora_layout  # noqa: E402
from helpers_models import _seeded  # noqa: E402

FAST = ["--seeds", "2", "--steps", "2", "--guidance", "1", "--no-recovery", "--no-lpips", "-q"]
RANK, ALPHA = 4, 8.0  # alpha != rank: the factors are scaled by 2
TARGETS = {SD3: ["to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "ff.net.2"],
           FLUX: ["to_q", "to_k", "to_v", "to_out.0", "proj_out", "norm.linear"],
           PIXART: ["to_q", "to_k", "to_v", "to_out.0", "ff.net.2"]}


def tiny(family, seed=0, wide=False):
    from diffusers import FluxTransformer2DModel, PixArtTransformer2DModel, SD3Transformer2DModel

    builders = {
        SD3: lambda: SD3Transformer2DModel(
            sample_size=8, patch_size=2, in_channels=4, out_channels=4, num_layers=1, attention_head_dim=8,
            num_attention_heads=3 if wide else 2, joint_attention_dim=16, caption_projection_dim=24 if wide else 16,
            pooled_projection_dim=8, pos_embed_max_size=8),
        FLUX: lambda: FluxTransformer2DModel(
            patch_size=1, in_channels=4, num_layers=1, num_single_layers=1, attention_head_dim=16,
            num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=[4, 4, 8]),
        PIXART: lambda: PixArtTransformer2DModel(
            num_attention_heads=2, attention_head_dim=12, in_channels=4, out_channels=8, num_layers=2,
            cross_attention_dim=24, caption_channels=12, sample_size=8, patch_size=2),
    }
    return _seeded(seed, builders[family])


def out(model, family):
    """The denoiser output on fixed inputs."""
    g = torch.Generator().manual_seed(5)
    t = torch.tensor([700.0, 20.0])
    with torch.no_grad():
        if family == FLUX:
            x, c = torch.randn(2, 16, 4, generator=g), torch.randn(2, 6, 32, generator=g)
            return model(hidden_states=x, encoder_hidden_states=c, pooled_projections=torch.randn(2, 32, generator=g),
                         timestep=t / 1000, img_ids=torch.randn(16, 3, generator=g),
                         txt_ids=torch.randn(6, 3, generator=g)).sample
        x = torch.randn(2, 4, 8, 8, generator=g)
        if family == SD3:
            return model(hidden_states=x, encoder_hidden_states=torch.randn(2, 5, 16, generator=g),
                         pooled_projections=torch.randn(2, 8, generator=g), timestep=t).sample
        return model(x, encoder_hidden_states=torch.randn(2, 6, 12, generator=g), timestep=t,
                     added_cond_kwargs={"resolution": None, "aspect_ratio": None}).sample


def random_factors(model, seed=1):
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.normal_(0, 0.2)


def make_lora(family, folder, seed=1):
    """A random peft LoRA (r=4, alpha=8) on a copy of the tiny base, saved by the pipeline class's
    save_lora_weights with its LoraConfig as metadata; returns (file, {module: (A, B)})."""
    from diffusers.loaders import FluxLoraLoaderMixin, SD3LoraLoaderMixin
    from peft import LoraConfig, inject_adapter_in_model
    from peft.utils import get_peft_model_state_dict

    config = LoraConfig(r=RANK, lora_alpha=ALPHA, target_modules=TARGETS[family])
    model = inject_adapter_in_model(config, copy.deepcopy(tiny(family)))
    random_factors(model, seed)
    state = get_peft_model_state_dict(model)
    saver = FluxLoraLoaderMixin if family == FLUX else SD3LoraLoaderMixin  # PixArt has none: the generic layout
    saver.save_lora_weights(str(folder), transformer_lora_layers=state,
                            transformer_lora_adapter_metadata=config.to_dict(), safe_serialization=True)
    factors = {k.rsplit(".lora_A.", 1)[0]: (v, state[k.replace("lora_A", "lora_B")])
               for k, v in state.items() if ".lora_A." in k}
    return folder / "pytorch_lora_weights.safetensors", factors


def merged(family, factors, scale, ratio=ALPHA / RANK):
    """The base with every LoRA folded into its weight: W + scale * alpha / r * B A (the closed form)."""
    model = tiny(family)
    modules = dict(model.named_modules())
    with torch.no_grad():
        for name, (down, up) in factors.items():
            modules[name].weight += scale * ratio * up @ down
    return model


@pytest.fixture(scope="module")
def loras(tmp_path_factory):
    root = tmp_path_factory.mktemp("tlora")
    made = {}
    for family in (SD3, FLUX, PIXART):
        if family != FLUX:  # Flux folders are another branch's format; its LoRA is tested at the transformer level
            tiny(family).save_pretrained(root / family / "transformer")
        made[family] = make_lora(family, root / family / "lora")
    return root, made


def via_collapsecheck(root, family, lora, scale):
    if family == FLUX:
        model, notes = tiny(FLUX), []
        apply_lora(model, FLUX, lora, scale, notes)
        return model, notes
    ckpt = load_checkpoint(lora, base=root / family / "transformer", lora_scale=scale)
    return ckpt.model, list(ckpt.notes)


@pytest.mark.parametrize("family", [SD3, FLUX, PIXART])
def test_transformer_lora_matches_diffusers_and_the_closed_form(loras, family):
    root, made = loras
    lora, factors = made[family]
    base = out(tiny(family), family)
    for scale in (1.0, 0.5):
        model, notes = via_collapsecheck(root, family, lora, scale)
        ours = out(model, family)
        assert (ours - base).abs().max() > 1e-3  # the LoRA changes the output
        torch.testing.assert_close(ours, out(merged(family, factors, scale), family), atol=1e-5, rtol=1e-4)
        assert any(f"scale {scale:g} (--lora-scale)" in n and "transformer layers" in n for n in notes), notes
        if family == PIXART:
            continue  # diffusers has no LoRA loader for PixArt; the closed form above is the reference
        reference = tiny(family)
        reference.load_lora_adapter(str(lora.parent), weight_name=lora.name, prefix="transformer", adapter_name="ref")
        reference.set_adapters(["ref"], weights=[scale])
        torch.testing.assert_close(ours, out(reference, family), atol=1e-6, rtol=1e-5)
    zero, _ = via_collapsecheck(root, family, lora, 0.0)
    torch.testing.assert_close(out(zero, family), base, atol=0, rtol=0)


def kohya_flux(path, seed=2):
    """A kohya (sd-scripts) Flux LoRA: fused qkv, rank 4, alpha 2 (!= rank); returns (file, merged factors)."""
    g = torch.Generator().manual_seed(seed)
    # kohya name, diffusers modules (rows split evenly among them), in, out (of the fused layer)
    layers = [("double_blocks_0_img_attn_qkv", ["transformer_blocks.0.attn.to_q", "transformer_blocks.0.attn.to_k",
                                                 "transformer_blocks.0.attn.to_v"], 32, 96),
              ("double_blocks_0_img_attn_proj", ["transformer_blocks.0.attn.to_out.0"], 32, 32),
              ("double_blocks_0_txt_attn_qkv", ["transformer_blocks.0.attn.add_q_proj",
                                                 "transformer_blocks.0.attn.add_k_proj",
                                                 "transformer_blocks.0.attn.add_v_proj"], 32, 96),
              ("double_blocks_0_txt_mlp_0", ["transformer_blocks.0.ff_context.net.0.proj"], 32, 128),
              ("single_blocks_0_linear2", ["single_transformer_blocks.0.proj_out"], 160, 32)]
    tensors, factors = {}, {}
    for name, modules, fan_in, fan_out in layers:
        down, up = torch.randn(4, fan_in, generator=g) * 0.3, torch.randn(fan_out, 4, generator=g) * 0.3
        tensors.update({f"lora_unet_{name}.lora_down.weight": down, f"lora_unet_{name}.lora_up.weight": up,
                        f"lora_unet_{name}.alpha": torch.tensor(2.0)})
        for module, rows in zip(modules, up.chunk(len(modules))):
            factors[module] = (down, rows)
    # img_in: converted to x_embedder without the transformer. prefix, which diffusers' loader then leaves out
    tensors.update({"lora_unet_img_in.lora_down.weight": torch.randn(4, 4, generator=g),
                    "lora_unet_img_in.lora_up.weight": torch.randn(32, 4, generator=g),
                    "lora_unet_img_in.alpha": torch.tensor(2.0)})
    save_file(tensors, str(path))
    return path, factors


def test_kohya_flux_lora_is_converted_with_its_alpha(tmp_path):
    path, factors = kohya_flux(tmp_path / "kohya_flux.safetensors")
    assert lora_layout(["lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight"]).families == (FLUX,)
    model, notes = tiny(FLUX), []
    apply_lora(model, FLUX, path, 0.5, notes)
    expected = out(merged(FLUX, factors, 0.5, ratio=2.0 / 4), FLUX)
    torch.testing.assert_close(out(model, FLUX), expected, atol=1e-5, rtol=1e-4)
    assert (out(model, FLUX) - out(tiny(FLUX), FLUX)).abs().max() > 1e-3
    assert any("kohya layout" in n and "9 transformer layers" in n for n in notes), notes
    assert any("x_embedder layers are not applied" in n for n in notes), notes


def test_layouts_and_families_from_names():
    cases = {
        ("transformer.single_transformer_blocks.0.attn.to_q.lora_A.weight",): (FLUX,),
        ("transformer.transformer_blocks.0.attn1.to_q.lora_A.weight",): (PIXART,),
        ("transformer.transformer_blocks.0.attn.add_q_proj.lora_A.weight",): (SD3, FLUX),
        ("unet.down_blocks.0.attentions.0.proj_in.lora_A.weight",): (UNET,),
        ("lora_unet_joint_blocks_0_x_block_attn_qkv.lora_down.weight",): (SD3,),
        ("lora_unet_input_blocks_1_1_proj_in.lora_down.weight",): (UNET,),
    }
    for keys, families in cases.items():
        assert lora_layout(keys).families == families, keys
    assert lora_layout(["lora_unet_joint_blocks_0_x_block_attn_qkv.lora_down.weight"]).layout == KOHYA
    assert lora_layout(["blocks.0.attn.lora_A.weight"]) is None


def test_a_lora_that_does_not_fit_names_the_first_mismatching_module(loras, tmp_path):
    root, made = loras
    with pytest.raises(LoadError, match=r"first mismatching module is transformer_blocks\.0\.attn\.add_q_proj"):
        apply_lora(tiny(FLUX), FLUX, made[SD3][0], 1.0, [])  # SD3's names, Flux's widths
    with pytest.raises(LoadError, match="for Flux .* the model it is applied to is a SD3Transformer2DModel"):
        apply_lora(tiny(SD3), SD3, kohya_flux(tmp_path / "k.safetensors")[0], 1.0, [])
    wide = tmp_path / "wide"
    tiny(SD3, wide=True).save_pretrained(wide)
    unknown = tmp_path / "unknown.safetensors"
    save_file({"blocks.0.attn.lora_A.weight": torch.zeros(4, 8), "blocks.0.attn.lora_B.weight": torch.zeros(8, 4)},
              str(unknown))
    kohya_sd3 = tmp_path / "kohya_sd3.safetensors"
    save_file({"lora_unet_joint_blocks_0_x_block_attn_qkv.lora_down.weight": torch.zeros(4, 16),
               "lora_unet_joint_blocks_0_x_block_attn_qkv.lora_up.weight": torch.zeros(48, 4)}, str(kohya_sd3))
    cond = tmp_path / "c.safetensors"
    save_file({"cond": torch.randn(2, 5, 16), "pooled": torch.randn(2, 8)}, str(cond))
    cases = [(made[SD3][0], wide, "first mismatching module is transformer_blocks.0.attn.add_q_proj"),
             (made[PIXART][0], wide, "for PixArt"),
             (unknown, wide, "unknown LoRA layout"),
             (kohya_sd3, root / SD3 / "transformer", "diffusers converts kohya names for Stable Diffusion")]
    for lora, base, words in cases:
        res = CliRunner().invoke(cli, ["scan", str(lora), "--base", str(base), "--cond", str(cond), *FAST])
        assert res.exit_code == 3, res.output
        assert words in res.output and len(res.output.strip().splitlines()) == 1, res.output


def test_scan_a_transformer_lora_with_base_end_to_end(loras, tmp_path):
    root, made = loras
    cond = tmp_path / "c.safetensors"
    save_file({"cond": torch.randn(2, 5, 16), "pooled": torch.randn(2, 8)}, str(cond))
    report = tmp_path / "r.json"
    scheduler = tmp_path / "scheduler_config.json"  # a flow-matching transformer is refused without its schedule
    scheduler.write_text(json.dumps({"_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": 1000,
                                     "shift": 3.0}))
    res = CliRunner().invoke(cli, ["scan", str(made[SD3][0]), "--base", str(root / SD3 / "transformer"),
                                   "--scheduler", str(scheduler), "--lora-scale", "0.5", "--cond", str(cond), *FAST,
                                   "--json", str(report)])
    assert res.exit_code in (0, 1), res.output
    data = json.loads(report.read_text())
    assert data["checkpoint"]["model_class"] == SD3 and "LoRA" in data["checkpoint"]["source"]
    assert any("transformer layers at scale 0.5" in n for n in data["checkpoint"]["notes"])


def test_sd3_text_encoder_layers_reach_the_prompt_embeddings(tmp_path):
    """A LoRA with transformer and both CLIP encoders' layers (alpha != rank, in the metadata), --prompts through the
    pipeline's encode_prompt: the embeddings are those of the encoders the LoRA was made on, at the same scale."""
    from diffusers import StableDiffusion3Pipeline
    from diffusers.loaders import SD3LoraLoaderMixin
    from diffusers.utils.peft_utils import set_weights_and_activate_adapters
    from peft import LoraConfig, inject_adapter_in_model
    from peft.utils import get_peft_model_state_dict

    from collapsecheck.load.conditions import pack_pooled
    from test_sd3 import write_sd3_pipeline

    root = write_sd3_pipeline(tmp_path / "sd3")  # its transformer is test_sd3's tiny_sd3, the same as tiny(SD3)
    (tmp_path / "p.txt").write_text("cat\ndog\n")
    transformer, factors = make_lora(SD3, tmp_path / "t")
    pipe = StableDiffusion3Pipeline.from_pretrained(str(root), vae=None, text_encoder_3=None, tokenizer_3=None,
                                                    local_files_only=True)
    config = LoraConfig(r=2, lora_alpha=6, target_modules=["q_proj", "v_proj", "fc1"])
    layers = {}
    for i, name in enumerate(("text_encoder", "text_encoder_2")):
        encoder = inject_adapter_in_model(config, getattr(pipe, name))
        random_factors(encoder, seed=10 + i)
        layers[name] = get_peft_model_state_dict(encoder)
        set_weights_and_activate_adapters(encoder, ["default"], [0.5])
    transformer_layers = {k[len("transformer."):]: v for k, v in load_file(str(transformer)).items()}
    SD3LoraLoaderMixin.save_lora_weights(
        str(tmp_path / "lora"), transformer_lora_layers=transformer_layers,
        text_encoder_lora_layers=layers["text_encoder"], text_encoder_2_lora_layers=layers["text_encoder_2"],
        transformer_lora_adapter_metadata=LoraConfig(r=RANK, lora_alpha=ALPHA, target_modules=TARGETS[SD3]).to_dict(),
        text_encoder_lora_adapter_metadata=config.to_dict(), text_encoder_2_lora_adapter_metadata=config.to_dict())
    with torch.no_grad():
        embeds, _, pooled, _ = pipe.encode_prompt(prompt=["cat", "dog"], prompt_2=None, prompt_3=None,
                                                  device=torch.device("cpu"), do_classifier_free_guidance=True)
    lora = tmp_path / "lora" / "pytorch_lora_weights.safetensors"
    ckpt = load_checkpoint(root, prompts=tmp_path / "p.txt", lora=lora, lora_scale=0.5)
    expected = pack_pooled(embeds.float(), pooled.float())
    torch.testing.assert_close(ckpt.conditions.values, expected, atol=1e-5, rtol=1e-4)
    plain = load_checkpoint(root, prompts=tmp_path / "p.txt").conditions.values
    assert (ckpt.conditions.values - plain).abs().max() > 1e-3
    torch.testing.assert_close(out(ckpt.model, SD3), out(merged(SD3, factors, 0.5), SD3), atol=1e-5, rtol=1e-4)
    assert sum("text_encoder_2 layers at scale 0.5" in n or "text-encoder layers at scale 0.5" in n
               for n in ckpt.conditions.notes) == 2, ckpt.conditions.notes
    assert not any("not applied" in n for n in ckpt.notes), ckpt.notes


def test_kohya_flux_text_encoder_layers_go_to_the_clip_encoder(tmp_path):
    """A kohya Flux LoRA's lora_te1_ layers, read by Flux's converter (alpha folded in), onto a CLIP text encoder."""
    from collapsecheck.load.lora import apply_text_encoder_lora
    from helpers_pipeline import tiny_text_encoder, write_tokenizer

    path, _ = kohya_flux(tmp_path / "k.safetensors")
    tensors = load_file(str(path))
    encoder = tiny_text_encoder(write_tokenizer(tmp_path / "tok"))
    expected_encoder, g = copy.deepcopy(encoder), torch.Generator().manual_seed(4)
    for proj in ("q_proj", "out_proj"):  # diffusers tells kohya's text-encoder names apart by out_proj's
        name, module = next((n, m) for n, m in expected_encoder.named_modules() if n.endswith(f"0.self_attn.{proj}"))
        down, up = torch.randn(2, module.in_features, generator=g), torch.randn(module.out_features, 2, generator=g)
        kohya = "lora_te1_text_model_encoder_layers_0_self_attn_" + proj
        tensors.update({f"{kohya}.lora_down.weight": down, f"{kohya}.lora_up.weight": up,
                        f"{kohya}.alpha": torch.tensor(1.0)})
        with torch.no_grad():
            module.weight += 0.5 * (1.0 / 2) * up @ down
    save_file(tensors, str(path))
    ids = torch.tensor([[0, 3, 5, 7]])
    with torch.no_grad():
        base, expected = encoder(ids)[0], expected_encoder(ids)[0]
    notes = apply_text_encoder_lora(encoder, path, 0.5)
    with torch.no_grad():
        ours = encoder(ids)[0]
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-4)
    assert (ours - base).abs().max() > 1e-3 and notes == [f"LoRA {path.name} applied to 2 text-encoder layers at "
                                                          "scale 0.5 (--lora-scale)"]


def test_pixart_t5_layers_reach_the_prompt_embeddings(tmp_path):
    """PixArt: a LoRA with transformer and T5 layers on a pipeline folder with --prompts; the embeddings are those
    of diffusers' PixArtAlphaPipeline.encode_prompt with the T5 the LoRA was made on, at the same scale."""
    from diffusers.loaders import SD3LoraLoaderMixin
    from diffusers.utils.peft_utils import set_weights_and_activate_adapters
    from peft import LoraConfig, inject_adapter_in_model
    from peft.utils import get_peft_model_state_dict

    from test_pixart import MAX_LENGTH, PROMPTS, _diffusers_pipeline, write_pixart_pipeline

    root = write_pixart_pipeline(tmp_path / "pipe")  # its transformer is test_pixart's tiny_pixart, = tiny(PIXART)
    prompts = tmp_path / "p.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    transformer, factors = make_lora(PIXART, tmp_path / "t")
    pipe = _diffusers_pipeline(root)
    config = LoraConfig(r=2, lora_alpha=1, target_modules=["q", "v", "wo"])
    transformer_config = LoraConfig(r=RANK, lora_alpha=ALPHA, target_modules=TARGETS[PIXART])
    encoder = inject_adapter_in_model(config, pipe.text_encoder)
    random_factors(encoder, seed=7)
    set_weights_and_activate_adapters(encoder, ["default"], [0.5])
    SD3LoraLoaderMixin.save_lora_weights(  # the generic transformer + text_encoder layout
        str(tmp_path / "lora"), transformer_lora_layers={k[len("transformer."):]: v for k, v in
                                                         load_file(str(transformer)).items()},
        text_encoder_lora_layers=get_peft_model_state_dict(encoder),
        text_encoder_lora_adapter_metadata=config.to_dict(),
        transformer_lora_adapter_metadata=transformer_config.to_dict())
    with torch.no_grad():
        embeds, mask, _, _ = pipe.encode_prompt(PROMPTS, device="cpu", clean_caption=False,
                                                max_sequence_length=MAX_LENGTH)
    ckpt = load_checkpoint(root, prompts=prompts, lora=tmp_path / "lora" / "pytorch_lora_weights.safetensors",
                           lora_scale=0.5)
    torch.testing.assert_close(ckpt.conditions.values, embeds * mask[..., None], atol=1e-5, rtol=1e-4)
    plain = load_checkpoint(root, prompts=prompts).conditions.values
    assert (ckpt.conditions.values - plain).abs().max() > 1e-3
    expected = out(merged(PIXART, factors, 0.5), PIXART)
    torch.testing.assert_close(out(ckpt.model, PIXART), expected, atol=1e-5, rtol=1e-4)
    assert any("text-encoder layers at scale 0.5" in n for n in ckpt.conditions.notes), ckpt.conditions.notes


def test_a_transformer_lora_on_a_unet_is_refused_by_family(tmp_path):
    from helpers_models import tiny_crossattn_unet

    with pytest.raises(LoadError, match="kohya LoRA for Flux .* applied to is a UNet2DConditionModel"):
        apply_lora(tiny_crossattn_unet(), UNET, kohya_flux(tmp_path / "k.safetensors")[0], 1.0, [])


def test_a_transformer_lora_checkpoint_folder_loads_as_its_file(loras, tmp_path):
    import shutil

    root, made = loras
    folder = tmp_path / "checkpoint-10"
    folder.mkdir()
    shutil.copy(made[PIXART][0], folder / "pytorch_lora_weights.safetensors")
    ckpt = load_checkpoint(folder, base=root / PIXART / "transformer", lora_scale=0.5)
    torch.testing.assert_close(out(ckpt.model, PIXART), out(merged(PIXART, made[PIXART][1], 0.5), PIXART),
                               atol=1e-5, rtol=1e-4)


def test_older_diffusers_names_load_as_peft_names(loras, tmp_path):
    """``lora.down`` / ``lora.up`` (older diffusers files) are the same LoRA as ``lora_A`` / ``lora_B``."""
    from safetensors import safe_open

    root, made = loras
    lora, factors = made[SD3]
    with safe_open(str(lora), "pt") as f:
        metadata = f.metadata()
    old = {k.replace(".lora_A.", ".lora.down.").replace(".lora_B.", ".lora.up."): v
           for k, v in load_file(str(lora)).items()}
    save_file(old, str(tmp_path / "old.safetensors"), metadata=metadata)
    ckpt = load_checkpoint(tmp_path / "old.safetensors", base=root / SD3 / "transformer", lora_scale=0.5)
    torch.testing.assert_close(out(ckpt.model, SD3), out(merged(SD3, factors, 0.5), SD3), atol=1e-5, rtol=1e-4)
