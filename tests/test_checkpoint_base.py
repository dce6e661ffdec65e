"""Training outputs: accelerate's model.safetensors carries no config; --base supplies it (and the scheduler),
and the DDP / torch.compile key prefixes are stripped as for any weight file."""
import json

import torch
from click.testing import CliRunner
from diffusers import DDIMScheduler
from safetensors.torch import save_file

from collapsecheck.load.dispatch import load_checkpoint
from collapsecheck.cli import cli
from helpers_models import tiny_class_unet

FAST = ["--seeds", "3", "--steps", "2", "--guidance", "1", "--no-recovery", "--no-lpips", "-q"]


def _accelerate_output(tmp_path, prefix="_orig_mod.module."):
    base = tmp_path / "base"
    tiny_class_unet(num_classes=3).save_pretrained(base / "unet")
    DDIMScheduler(prediction_type="v_prediction").save_pretrained(base / "scheduler")
    trained = tiny_class_unet(num_classes=3, seed=5)
    run = tmp_path / "run" / "checkpoint-100"
    run.mkdir(parents=True)
    save_file({prefix + k: v.contiguous() for k, v in trained.state_dict().items()}, str(run / "model.safetensors"))
    return base, run / "model.safetensors", trained


def test_model_safetensors_without_config_names_config_and_base(tmp_path):
    _, weights, _ = _accelerate_output(tmp_path)
    res = CliRunner().invoke(cli, ["scan", str(weights), *FAST])
    assert res.exit_code == 2
    line = res.output.strip()
    assert len(line.splitlines()) == 1 and "--config CONFIG.json" in line and "--base" in line


def test_base_supplies_config_and_scheduler(tmp_path):
    base, weights, trained = _accelerate_output(tmp_path)
    ckpt = load_checkpoint(weights, base=base)
    for key, value in trained.state_dict().items():
        torch.testing.assert_close(ckpt.model.state_dict()[key], value)
    assert ckpt.scheduler_config["prediction_type"] == "v_prediction"
    assert ckpt.scheduler_source.endswith("scheduler_config.json")
    assert any("--base" in n for n in ckpt.notes)
    assert any("'_orig_mod.' + 'module.'" in n for n in ckpt.notes)
    out = tmp_path / "r.json"
    res = CliRunner().invoke(cli, ["scan", str(weights), "--base", str(base), *FAST, "--json", str(out)])
    assert res.exit_code in (0, 1), res.output
    assert json.loads(out.read_text())["checkpoint"]["prediction_type"] == "v_prediction"


def test_base_that_does_not_match_says_so(tmp_path):
    base, weights, _ = _accelerate_output(tmp_path)
    other = tmp_path / "other"
    tiny_class_unet(num_classes=7).save_pretrained(other)
    res = CliRunner().invoke(cli, ["scan", str(weights), "--base", str(other), *FAST])
    assert res.exit_code == 3 and "is --base the right one?" in res.output
    res = CliRunner().invoke(cli, ["scan", str(weights), "--base", str(tmp_path / "nope"), *FAST])
    assert res.exit_code == 2 and "--base" in res.output
