"""The registry of checkpoint formats (collapsecheck.load.registry): each format detects its own layout and no
other's, an unknown layout is one UsageError line naming the known formats, and loading leaves the caller's
environment alone."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers_ldm import SDXL_METADATA, tiny_sd1_unet, tiny_sdxl_unet, write_ldm_file
from helpers_models import save_bare_safetensors, tiny_class_unet
from helpers_pipeline import tiny_latent_unet
from safetensors.torch import save_file

from collapsecheck.errors import UsageError
from collapsecheck.load.options import LoadOptions
from collapsecheck.load.registry import FORMATS, format_name, pick_format

REPO = Path(__file__).resolve().parents[1]


def _controlnet(folder: Path) -> None:
    from diffusers import ControlNetModel

    torch.manual_seed(0)
    ControlNetModel.from_unet(tiny_latent_unet(0), conditioning_embedding_out_channels=(4, 8)).save_pretrained(
        str(folder))


def _lora(path: Path) -> Path:
    name = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"
    save_file({f"{name}.lora_A.weight": torch.zeros(2, 8), f"{name}.lora_B.weight": torch.zeros(8, 2)}, str(path))
    return path


def _lora_folder(folder: Path) -> Path:
    folder.mkdir()
    _lora(folder / "pytorch_lora_weights.safetensors")
    (folder / "random_states_0.pkl").write_bytes(b"not read")
    return folder


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    """One (path, options) per registered format, by format name."""
    root = tmp_path_factory.mktemp("formats")
    unet = tiny_class_unet()
    unet.save_pretrained(str(root / "model"))
    unet.save_pretrained(str(root / "pipe" / "unet"))
    save_bare_safetensors(unet, root / "bare.safetensors")
    (root / "accelerate").mkdir()
    save_bare_safetensors(unet, root / "accelerate" / "model.safetensors", with_config=False)
    _controlnet(root / "controlnet")
    (root / "custom").mkdir()
    return {
        "hub": (Path("tiny-org/not-a-local-folder"), LoadOptions()),  # loaded in tests/test_hub.py
        "custom": (root / "custom", LoadOptions(model="mymodel:build")),
        "controlnet": (root / "controlnet", LoadOptions(base=root / "pipe")),
        "lora_file": (_lora(root / "lora.safetensors"), LoadOptions(base=root / "pipe")),
        "lora_folder": (_lora_folder(root / "checkpoint-200"), LoadOptions(base=root / "pipe")),
        "singlefile_sdxl": (write_ldm_file(root / "sdxl.safetensors", tiny_sdxl_unet(),
                                                   metadata=SDXL_METADATA), LoadOptions()),
        "singlefile": (write_ldm_file(root / "sd1.safetensors", tiny_sd1_unet()), LoadOptions()),
        "base_weights": (root / "accelerate" / "model.safetensors", LoadOptions(base=root / "model")),
        "weight_file": (root / "bare.safetensors", LoadOptions()),
        "model_folder": (root / "model", LoadOptions()),
        "pipeline_folder": (root / "pipe", LoadOptions()),
    }


def test_every_format_has_a_fixture_a_name_and_the_two_functions(fixtures):
    assert sorted(format_name(f) for f in FORMATS) == sorted(fixtures)
    for fmt in FORMATS:
        assert isinstance(fmt.NAME, str) and fmt.NAME
        assert callable(fmt.detect) and callable(fmt.load)


@pytest.mark.parametrize("fixture", [format_name(f) for f in FORMATS])
def test_each_format_detects_its_own_fixture_and_no_other(fixtures, fixture):
    path, options = fixtures[fixture]
    detected = [format_name(f) for f in FORMATS if f.detect(path, options)]
    assert detected == [fixture]
    assert format_name(pick_format(path, options)) == fixture


def test_the_ldm_formats_read_only_the_header(fixtures, monkeypatch):
    import safetensors.torch

    def refuse(*args, **kwargs):
        raise AssertionError("detection read the tensors")

    monkeypatch.setattr(safetensors.torch, "load_file", refuse)
    for name in ("singlefile", "singlefile_sdxl", "lora_file", "weight_file"):
        path, options = fixtures[name]
        assert format_name(pick_format(path, options)) == name


def test_the_lora_file_is_a_weight_file_without_base_and_the_ldm_file_with_base_stays_ldm(fixtures):
    lora, _ = fixtures["lora_file"]
    assert format_name(pick_format(lora, LoadOptions())) == "weight_file"
    sd1, _ = fixtures["singlefile"]
    base = fixtures["model_folder"][0]
    assert format_name(pick_format(sd1, LoadOptions(base=base))) == "singlefile"


def test_unknown_layout_is_one_line_listing_the_known_formats(tmp_path):
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    with pytest.raises(UsageError) as info:
        pick_format(tmp_path, LoadOptions())
    message = str(info.value)
    assert "\n" not in message
    assert "is not a checkpoint layout collapsecheck knows" in message
    for fmt in FORMATS:
        assert fmt.NAME in message


def test_unknown_layout_through_load_checkpoint(tmp_path):
    from collapsecheck.load.dispatch import load_checkpoint

    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match=r"not a checkpoint layout .*Known formats: .*LoRA file with --base.*diffusers model folder"):
        load_checkpoint(tmp_path / "empty")


ENV_SCRIPT = """
import json, os, sys
before = dict(os.environ)
import collapsecheck
from collapsecheck.load import dispatch, registry
from collapsecheck.load.dispatch import load_checkpoint
from collapsecheck.model.build import denoiser_for
from collapsecheck.model.schedule import schedule_from_config
ckpt = load_checkpoint(sys.argv[1])
denoiser_for(ckpt)
schedule_from_config(ckpt.scheduler_config).timesteps(4)
after = dict(os.environ)
changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
print(json.dumps({"changed": changed, "class": ckpt.model_class}))
"""


def test_importing_and_loading_leave_the_environment_unchanged(tmp_path):
    tiny_class_unet().save_pretrained(str(tmp_path / "model"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_", "DIFFUSERS_"))}
    env["PYTHONPATH"] = str(REPO)
    out = subprocess.run([sys.executable, "-c", ENV_SCRIPT, str(tmp_path / "model")], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"changed": [], "class": "UNet2DModel"}


def test_prompts_leave_transformers_logging_as_the_caller_set_it(tmp_path):
    import transformers.utils.logging as tlog
    from helpers_pipeline import write_tiny_pipeline

    from collapsecheck.load.dispatch import load_checkpoint

    root = write_tiny_pipeline(tmp_path / "pipe")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red square\na blue circle\n")
    saved, bars = tlog.get_verbosity(), tlog.is_progress_bar_enabled()
    try:
        tlog.set_verbosity_info()
        tlog.enable_progress_bar()
        ckpt = load_checkpoint(root, prompts=prompts)
        assert ckpt.conditions is not None and len(ckpt.conditions.labels) == 2
        assert tlog.get_verbosity() == tlog.INFO and tlog.is_progress_bar_enabled()
    finally:
        tlog.set_verbosity(saved)
        tlog.enable_progress_bar() if bars else tlog.disable_progress_bar()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs a named pipe")
def test_a_path_that_is_neither_file_nor_folder_is_one_usage_line(tmp_path):
    fifo = tmp_path / "pipe.fifo"
    os.mkfifo(fifo)
    with pytest.raises(UsageError, match=r"is neither a file nor a folder\. Known formats: "):
        pick_format(fifo, LoadOptions())
