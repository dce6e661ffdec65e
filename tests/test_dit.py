"""DiTTransformer2DModel with class labels: the null class is index num_embeds_ada_norm, the learned-sigma
half of the output is dropped, CADS reaches every block's label table, and a DiT pipeline decodes its latents."""
import json

import torch
from click.testing import CliRunner
from diffusers import DDIMScheduler, DiTTransformer2DModel

from collapsecheck.load.dispatch import load_checkpoint
from collapsecheck.cli import cli
from collapsecheck.model.denoiser import build_denoiser
from helpers_models import _seeded

FAST = ["--seeds", "3", "--steps", "2", "--guidance", "1,3", "--no-lpips", "-q"]


def tiny_dit(seed=0):
    return _seeded(seed, lambda: DiTTransformer2DModel(
        num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8, num_layers=2, sample_size=8,
        patch_size=2, num_embeds_ada_norm=3))


def test_dit_pipeline_end_to_end(tmp_path):
    from helpers_pipeline import tiny_vae

    root = tmp_path / "dit"
    tiny_dit().save_pretrained(root / "transformer")
    DDIMScheduler().save_pretrained(root / "scheduler")
    tiny_vae().save_pretrained(root / "vae")
    (root / "model_index.json").write_text(json.dumps({
        "_class_name": "DiTPipeline", "transformer": ["diffusers", "DiTTransformer2DModel"],
        "vae": ["diffusers", "AutoencoderKL"], "scheduler": ["diffusers", "DDIMScheduler"]}))
    out = tmp_path / "r.json"
    res = CliRunner().invoke(cli, ["scan", str(root), *FAST, "--json", str(out)])
    assert res.exit_code in (0, 1), res.output
    data = json.loads(out.read_text())
    assert data["checkpoint"]["model_class"] == "DiTTransformer2DModel"
    assert [c["label"] for c in data["conditions"]] == ["class 0", "class 1", "class 2"]
    assert data["condition_set"]["null"].startswith("class 3")
    assert data["checkpoint"]["decoder"]["image_shape"] == [3, 16, 16]
    assert data["checkpoint"]["decoder"]["latent_shape"] == [4, 8, 8]


def test_dit_denoiser_drops_learned_sigma_and_cads_reaches_every_block(tmp_path):
    tiny_dit().save_pretrained(tmp_path / "transformer")
    ckpt = load_checkpoint(tmp_path / "transformer")
    den = build_denoiser(ckpt.model, ckpt.model_class, ckpt.model_config)
    assert den.kind == "class" and den.sample_shape == (4, 8, 8)
    assert len(den.class_tables()) == 2
    x, t, c = torch.randn(2, 4, 8, 8), torch.tensor([5, 900]), torch.tensor([0, 3])
    with torch.no_grad():
        plain = den(x, t, c)
        full = ckpt.model(x, t, class_labels=c).sample
        torch.testing.assert_close(plain, full[:, :4])
        same = den(x, t, c, (torch.ones(2), torch.randn(2, 16)))  # gamma 1: the condition untouched
        moved = den(x, t, c, (torch.zeros(2), torch.randn(2, 16)))
    torch.testing.assert_close(same, plain, atol=1e-5, rtol=1e-5)
    assert (moved - plain).abs().max() > 1e-4


def _legacy_config(folder, **extra):
    """Rewrite a saved config.json as the Hub's DiT and PixArt folders still have it: the class named
    ``Transformer2DModel`` (diffusers < 0.28), with that class's extra keys."""
    path = folder / "config.json"
    cfg = json.loads(path.read_text())
    cfg.update({"_class_name": "Transformer2DModel", "_diffusers_version": "0.12.0.dev0", "num_vector_embeds": None,
                "only_cross_attention": False, "use_linear_projection": False, **extra})
    path.write_text(json.dumps(cfg))


def test_published_dit_config_naming_transformer2dmodel_loads_as_dit(tmp_path):
    """facebook/DiT-XL-2-256's transformer/config.json names Transformer2DModel (norm_type ada_norm_zero):
    diffusers loads it as DiTTransformer2DModel, and so must the scan."""
    model = tiny_dit(seed=1).eval()
    model.save_pretrained(tmp_path / "transformer")
    _legacy_config(tmp_path / "transformer", cross_attention_dim=None)
    ckpt = load_checkpoint(tmp_path / "transformer")
    assert ckpt.model_class == "DiTTransformer2DModel"
    assert ckpt.model_config["_class_name"] == "DiTTransformer2DModel"
    assert any("Transformer2DModel" in n and "ada_norm_zero" in n for n in ckpt.notes)
    den = build_denoiser(ckpt.model, ckpt.model_class, ckpt.model_config)
    x, t, c = torch.randn(2, 4, 8, 8), torch.tensor([5, 900]), torch.tensor([0, 3])
    with torch.no_grad():
        torch.testing.assert_close(den(x, t, c), model(x, t, class_labels=c).sample[:, :4], atol=1e-6, rtol=0)
