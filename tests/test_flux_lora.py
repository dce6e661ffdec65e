"""A Flux LoRA file scanned end to end on its base pipeline folder (``scan lora.safetensors --base FLUX_DIR
--prompts FILE``): at --lora-scale 0 the scan's numbers are the base pipeline's own, at scale 1 they move."""
from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from collapsecheck.cli import cli
from helpers_flux import tiny_flux, write_flux_pipeline
from test_lora_transformer import ALPHA, FLUX, RANK, TARGETS, random_factors

FAST = ["--mode", "fast", "--seeds", "3", "--steps", "3", "--no-lpips", "-q", "--fail-on", "never"]


@pytest.fixture(scope="module")
def flux_lora(tmp_path_factory):
    from diffusers.loaders import FluxLoraLoaderMixin
    from peft import LoraConfig, inject_adapter_in_model
    from peft.utils import get_peft_model_state_dict

    root = tmp_path_factory.mktemp("flux_lora")
    base = write_flux_pipeline(root / "schnell", dev=False)
    config = LoraConfig(r=RANK, lora_alpha=ALPHA, target_modules=TARGETS[FLUX])
    model = inject_adapter_in_model(config, tiny_flux(dev=False))
    random_factors(model, seed=3)
    FluxLoraLoaderMixin.save_lora_weights(str(root / "lora"), transformer_lora_layers=get_peft_model_state_dict(model),
                                          transformer_lora_adapter_metadata=config.to_dict(), safe_serialization=True)
    prompts = root / "prompts.txt"
    prompts.write_text("cat\ndog\n")
    return base, root / "lora" / "pytorch_lora_weights.safetensors", prompts


def _scan(args, out):
    res = CliRunner().invoke(cli, ["scan", *map(str, args), *FAST, "--json", str(out)])
    assert res.exit_code in (0, 1), res.output
    return json.loads(out.read_text())


def _numbers(data):
    return [v for c in data["conditions"] for v in (c["pixel_rms"], c["seed_share"])]


def test_a_flux_lora_on_its_base_pipeline_scans_and_its_scale_is_honoured(flux_lora, tmp_path):
    base, lora, prompts = flux_lora
    plain = _scan([base, "--prompts", prompts], tmp_path / "base.json")
    off = _scan([lora, "--base", base, "--prompts", prompts, "--lora-scale", "0"], tmp_path / "off.json")
    on = _scan([lora, "--base", base, "--prompts", prompts], tmp_path / "on.json")
    assert on["checkpoint"]["model_class"] == "FluxTransformer2DModel" and "LoRA" in on["checkpoint"]["source"]
    assert _numbers(off) == pytest.approx(_numbers(plain), rel=1e-5)
    moved = torch.tensor(_numbers(on)) - torch.tensor(_numbers(plain))
    assert float(moved.abs().max()) > 1e-4
