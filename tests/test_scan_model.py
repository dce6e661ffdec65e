"""scan_model: a network held in memory is scanned as `collapsecheck scan` scans its saved copy, and the caller's
model, random states, environment and logging are exactly as before."""
import json
import logging
import os
import random

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from diffusers import DDIMScheduler

import collapsecheck
from collapsecheck.cli import cli
from collapsecheck.errors import UsageError
from helpers_models import tiny_class_unet, tiny_crossattn_unet

SETTINGS = dict(seeds=4, steps=3, guidance=(1.0, 3.0), lpips=False, recovery=False, posterior=False)
CLI_SETTINGS = ["--seeds", "4", "--steps", "3", "--guidance", "1,3", "--no-lpips", "--no-recovery", "--no-posterior",
                "-q"]


def scheduler():
    return DDIMScheduler(beta_schedule="squaredcos_cap_v2", clip_sample=False, set_alpha_to_one=False)


def cli_scan(folder, out, *args):
    res = CliRunner().invoke(cli, ["scan", str(folder), *CLI_SETTINGS, "--json", str(out), *map(str, args)])
    assert res.exit_code in (0, 1), res.output
    return json.loads(out.read_text())


def snapshot(model):
    """Everything scan_model must leave as it was."""
    return {
        "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "devices": [p.device for p in model.parameters()],
        "dtypes": [p.dtype for p in model.parameters()],
        "training": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "torch_rng": torch.get_rng_state(),
        "numpy_rng": np.random.get_state()[1].copy(),
        "python_rng": random.getstate(),
        "environ": dict(os.environ),
        "diffusers_level": logging.getLogger("diffusers").level,
        "grad": torch.is_grad_enabled(),
    }


def assert_unchanged(model, before):
    after = snapshot(model)
    assert after["state"].keys() == before["state"].keys()
    for key, value in before["state"].items():
        assert after["state"][key].dtype == value.dtype and torch.equal(after["state"][key], value), key
    for name in ("devices", "dtypes", "training", "requires_grad", "python_rng", "environ", "diffusers_level", "grad"):
        assert after[name] == before[name], name
    assert torch.equal(after["torch_rng"], before["torch_rng"])
    assert np.array_equal(after["numpy_rng"], before["numpy_rng"])


def a_model_mid_training():
    """A tiny class UNet as a training loop holds it: train mode, some layers frozen, a dropout layer in eval."""
    model = tiny_class_unet(seed=3).train()
    model.conv_in.requires_grad_(False)
    next(m for m in model.modules() if isinstance(m, torch.nn.Dropout)).eval()
    return model


def compare_with_cli(result, data):
    assert result.verdict == data["verdict"]
    assert result.guidance.verdict == data["guidance"]["verdict"]
    assert result.guidance.null_branch.verdict == data["guidance"]["null_branch"]["verdict"]
    assert [c.verdict for c in result.conditions] == [c["verdict"] for c in data["conditions"]]
    assert [c.label for c in result.conditions] == [c["label"] for c in data["conditions"]]
    for ours, theirs in zip(result.conditions, data["conditions"]):
        for measure in ("pixel_rms", "pixel_std", "eps_ratio", "seed_share"):
            if theirs[measure] is None:
                assert getattr(ours, measure) is None
            else:
                assert getattr(ours, measure) == pytest.approx(theirs[measure], rel=1e-4, abs=1e-6), measure
    assert result.guidance.null_branch.residual == pytest.approx(data["guidance"]["null_branch"]["residual"], rel=1e-4)


def test_scan_model_leaves_the_model_and_the_process_as_they_were(tmp_path):
    model = a_model_mid_training()
    torch.manual_seed(1234)
    np.random.seed(7)
    os.environ["COLLAPSECHECK_TEST_MARK"] = "1"
    logging.getLogger("diffusers").setLevel(logging.INFO)
    try:
        before = snapshot(model)
        result = collapsecheck.scan_model(model, scheduler(), classes=[0, 1, 2], **SETTINGS)
        assert_unchanged(model, before)
    finally:
        del os.environ["COLLAPSECHECK_TEST_MARK"]
        logging.getLogger("diffusers").setLevel(logging.NOTSET)
    assert "HF_HUB_OFFLINE" not in os.environ or before["environ"].get("HF_HUB_OFFLINE") == os.environ["HF_HUB_OFFLINE"]
    assert result.checkpoint["path"] == "<in memory>"
    assert result.checkpoint["model_class"] == "UNet2DModel"
    assert isinstance(result, collapsecheck.ScanResult)
    result.to_dict()  # validates against the schema (conftest)


def test_scan_model_equals_the_cli_scan_of_the_saved_weights(tmp_path):
    model = a_model_mid_training()
    result = collapsecheck.scan_model(model, scheduler(), classes=[0, 1, 2], **SETTINGS)
    model.save_pretrained(str(tmp_path / "ckpt" / "unet"))
    scheduler().save_pretrained(str(tmp_path / "ckpt" / "scheduler"))
    data = cli_scan(tmp_path / "ckpt", tmp_path / "scan.json", "--classes", "0-2")
    compare_with_cli(result, data)
    assert result.checkpoint["scheduler_source"] == "DDIMScheduler (in memory)"


def test_embedding_tensors_as_conditions_match_a_cond_file(tmp_path):
    from safetensors.torch import save_file

    model = tiny_crossattn_unet(seed=2)
    cond = torch.randn(3, 1, 16, generator=torch.Generator().manual_seed(0))
    result = collapsecheck.scan_model(model, scheduler().config, cond=cond, **SETTINGS)
    model.save_pretrained(str(tmp_path / "ckpt" / "unet"))
    scheduler().save_pretrained(str(tmp_path / "ckpt" / "scheduler"))
    save_file({"cond": cond}, str(tmp_path / "cond.safetensors"))
    data = cli_scan(tmp_path / "ckpt", tmp_path / "scan.json", "--cond", tmp_path / "cond.safetensors")
    compare_with_cli(result, data)
    assert result.condition_set["kind"] == "cross_attn"


def test_a_bfloat16_model_scanned_in_float32_is_moved_back_exactly():
    model = tiny_class_unet(seed=4).to(torch.bfloat16).train()
    before = snapshot(model)
    result = collapsecheck.scan_model(model, scheduler(), classes=[0, 1], dtype="float32", **SETTINGS)
    assert_unchanged(model, before)
    assert result.device == "cpu (float32)"
    assert result.config["dtype"] == "float32"


def test_a_downcast_is_evaluated_on_a_copy():
    model = tiny_class_unet(seed=5)
    before = snapshot(model)
    result = collapsecheck.scan_model(model, scheduler(), classes=[0, 1], dtype="bfloat16", **SETTINGS)
    assert_unchanged(model, before)
    assert any("bfloat16 copy" in note for note in result.checkpoint["notes"])


def test_device_and_dtype_default_to_the_models_own():
    model = tiny_class_unet(seed=6)
    result = collapsecheck.scan_model(model, scheduler(), classes=[0, 1], **SETTINGS)
    assert result.config["device"] == "cpu" and result.config["dtype"] == "float32"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_cuda_model_scanned_on_the_cpu_goes_back_to_cuda():
    model = tiny_class_unet(seed=7).cuda().train()
    before = snapshot(model)
    result = collapsecheck.scan_model(model, scheduler(), classes=[0, 1], device="cpu", **SETTINGS)
    assert_unchanged(model, before)
    assert result.device.startswith("cpu")


@pytest.mark.parametrize("kwargs, words", [
    (dict(seeds=1), "scan_model(seeds=...): must be an int"),
    (dict(seeds="8"), "scan_model(seeds=...): must be an int"),
    (dict(seed_count=8), "scan_model(seed_count=...): unknown argument. Did you mean 'seeds'?"),
    (dict(steps=0), "scan_model(steps=...): must be at least 1"),
    (dict(mode="quick"), "scan_model(mode=...): must be one of full, fast"),
    (dict(classes=[42]), "scan_model(classes=...): class 42 is out of range"),
    (dict(classes=[1], prompts=["a cat"]), "scan_model(classes=..., prompts=...): pass one kind of condition"),
    (dict(prompts=["a cat"]), "scan_model(prompts=...): prompts are encoded by a pipeline"),
    (dict(thresholds={"colapsed_rms": 0.1}), "scan_model(thresholds=...): unknown threshold 'colapsed_rms'"),
    (dict(checkpoint="x"), "scan_model(checkpoint=...): unknown argument"),
])
def test_errors_name_the_python_arguments(kwargs, words):
    with pytest.raises(UsageError) as err:
        collapsecheck.scan_model(tiny_class_unet(), scheduler(), **kwargs)
    assert words in str(err.value)
    assert "--" not in str(err.value)


def test_cond_of_the_wrong_width_names_the_argument():
    with pytest.raises(UsageError) as err:
        collapsecheck.scan_model(tiny_crossattn_unet(), scheduler(), cond=torch.zeros(2, 1, 5), **SETTINGS)
    assert str(err.value).startswith("scan_model(cond=...): conditions have shape (2, 1, 5)")


def test_not_a_diffusers_network_is_one_line():
    with pytest.raises(UsageError, match=r"scan_model\(model=...\): expected a diffusers network"):
        collapsecheck.scan_model(torch.nn.Linear(2, 2), scheduler())


def test_make_config_names_keywords_and_suggests():
    with pytest.raises(UsageError, match=r"make_config\(seed_count=...\): unknown argument. Did you mean 'seeds'\?"):
        collapsecheck.make_config(checkpoint="x", seed_count=8)
    with pytest.raises(UsageError, match=r"make_config\(stepz=...\): unknown argument. Did you mean 'steps'\?"):
        collapsecheck.make_config(checkpoint="x", stepz=8)
    with pytest.raises(UsageError, match=r"^make_config\(seeds=...\): must be at least 2"):
        collapsecheck.make_config(checkpoint="x", seeds=1)


def test_the_cli_still_names_flags(tmp_path):
    res = CliRunner().invoke(cli, ["scan", str(tmp_path), "--seeds", "1"])
    assert res.exit_code == 2
    assert "--seeds" in res.output and "seeds=" not in res.output


def test_a_pipeline_object_with_prompts_equals_the_cli_scan_of_its_folder(tmp_path):
    pytest.importorskip("transformers")
    from diffusers import StableDiffusionPipeline

    from helpers_pipeline import write_tiny_pipeline

    root = write_tiny_pipeline(tmp_path / "pipe")
    (tmp_path / "prompts.txt").write_text("a cat\na dog\n")
    pipe = StableDiffusionPipeline.from_pretrained(str(root), local_files_only=True, safety_checker=None,
                                                   requires_safety_checker=False)
    pipe.unet.train()
    before_unet, before_vae, before_text = snapshot(pipe.unet), snapshot(pipe.vae), snapshot(pipe.text_encoder)
    result = collapsecheck.scan_model(pipe, prompts=["a cat", "a dog"], **SETTINGS)
    assert_unchanged(pipe.unet, before_unet)
    assert_unchanged(pipe.vae, before_vae)
    assert_unchanged(pipe.text_encoder, before_text)
    # StableDiffusionPipeline.__init__ rewrites an old scheduler config (steps_offset 1, clip_sample off): the
    # folder gets the scheduler the pipeline object runs
    pipe.scheduler.save_pretrained(str(root / "scheduler"))
    data = cli_scan(root, tmp_path / "scan.json", "--prompts", tmp_path / "prompts.txt")
    compare_with_cli(result, data)
    assert result.condition_set["null"] == "the empty prompt"
    assert result.checkpoint["decoder"]["image_shape"] == [3, 16, 16]


def _write_pixart(root):
    from test_pixart import write_pixart_pipeline

    return write_pixart_pipeline(root)


def _write_sdxl(root):
    from test_sdxl import write_sdxl_pipeline

    return write_sdxl_pipeline(root)


def _write_sd3(root):
    from test_sd3 import write_sd3_pipeline

    return write_sd3_pipeline(root)


@pytest.mark.parametrize("write, absent", [
    (_write_sdxl, {}),
    (_write_sd3, {"vae": None, "text_encoder_3": None, "tokenizer_3": None}),  # none in the folder
    (_write_pixart, {}),
], ids=["sdxl", "sd3", "pixart"])
def test_pipelines_with_pooled_or_masked_prompts_equal_the_cli_scan(tmp_path, write, absent):
    pytest.importorskip("transformers")
    from diffusers import DiffusionPipeline

    root = write(tmp_path / "pipe")
    (tmp_path / "prompts.txt").write_text("cat\ndog\n")
    pipe = DiffusionPipeline.from_pretrained(str(root), local_files_only=True, **absent)
    pipe.scheduler.save_pretrained(str(root / "scheduler"))  # the scheduler the pipeline object runs
    result = collapsecheck.scan_model(pipe, prompts=["cat", "dog"], **SETTINGS)
    data = cli_scan(root, tmp_path / "scan.json", "--prompts", tmp_path / "prompts.txt")
    compare_with_cli(result, data)
    assert result.condition_set["null"] == data["condition_set"]["null"]


def test_a_loops_unet_text_encoder_and_tokenizer_scan_as_their_pipeline(tmp_path):
    pytest.importorskip("transformers")
    from diffusers import StableDiffusionPipeline

    from helpers_pipeline import tiny_latent_unet, tiny_text_encoder, tiny_vae, write_tokenizer

    tokenizer = write_tokenizer(tmp_path / "tokenizer")
    text_encoder, unet, vae = tiny_text_encoder(tokenizer).train(), tiny_latent_unet().train(), tiny_vae()
    sched = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False,
                          steps_offset=1)  # as StableDiffusionPipeline.__init__ would rewrite it
    before = snapshot(text_encoder)
    loose = collapsecheck.scan_model(unet, sched, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                                     prompts=["a cat", "a dog"], **SETTINGS)
    assert_unchanged(text_encoder, before)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=sched,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    whole = collapsecheck.scan_model(pipe, prompts=["a cat", "a dog"], **SETTINGS)
    compare_with_cli(loose, whole.to_dict())
    assert loose.condition_set["source"] == "prompts encoded by CLIPTextModel (in memory)"


def test_collapse_monitor_is_exported():
    from collapsecheck.monitor import CollapseMonitor

    assert collapsecheck.CollapseMonitor is CollapseMonitor
    with pytest.raises(AttributeError):
        collapsecheck.NoSuchThing  # noqa: B018


def test_a_controlnet_in_memory_scans_as_the_cli_scans_it_on_its_base(tmp_path):
    pytest.importorskip("transformers")
    from diffusers import StableDiffusionControlNetPipeline, StableDiffusionPipeline
    from safetensors.torch import save_file

    from helpers_pipeline import write_tiny_pipeline
    from test_controlnet import tiny_controlnet

    base = write_tiny_pipeline(tmp_path / "sd")
    sd = StableDiffusionPipeline.from_pretrained(str(base), local_files_only=True, safety_checker=None,
                                                 requires_safety_checker=False)
    sd.scheduler.save_pretrained(str(base / "scheduler"))  # the scheduler the pipeline object runs
    controlnet = tiny_controlnet().train()
    controlnet.save_pretrained(str(tmp_path / "cn"))
    hints = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    save_file({"cond": hints}, str(tmp_path / "hints.safetensors"))
    before = snapshot(controlnet)
    loose = collapsecheck.scan_model(controlnet, sd.scheduler, unet=sd.unet, vae=sd.vae, text_encoder=sd.text_encoder,
                                     tokenizer=sd.tokenizer, cond=hints, **SETTINGS)
    assert_unchanged(controlnet, before)
    data = cli_scan(tmp_path / "cn", tmp_path / "scan.json", "--base", base, "--cond", tmp_path / "hints.safetensors")
    compare_with_cli(loose, data)
    pipe = StableDiffusionControlNetPipeline(vae=sd.vae, text_encoder=sd.text_encoder, tokenizer=sd.tokenizer,
                                             unet=sd.unet, controlnet=controlnet, scheduler=sd.scheduler,
                                             safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    whole = collapsecheck.scan_model(pipe, cond=hints, **SETTINGS)
    compare_with_cli(whole, data)
    assert whole.condition_set["kind"] == "control"
    with pytest.raises(UsageError, match=r"^scan_model\(unet=...\): a ControlNet runs on the UNet"):
        collapsecheck.scan_model(controlnet, sd.scheduler, cond=hints)
    with pytest.raises(UsageError, match=r"^scan_model\(prompts=...\): a ControlNet scan takes one fixed prompt"):
        collapsecheck.scan_model(pipe, cond=hints, prompts=["a", "b"])


def test_the_python_scan_of_a_path_names_make_config_keywords(tmp_path):
    tiny_class_unet().save_pretrained(str(tmp_path / "ckpt"))
    config = collapsecheck.make_config(checkpoint=str(tmp_path / "ckpt"), classes="42", seeds=2, steps=1)
    with pytest.raises(UsageError, match=r"^make_config\(classes=...\): class 42 is out of range"):
        collapsecheck.scan(config)
    res = CliRunner().invoke(cli, ["scan", str(tmp_path / "ckpt"), "--classes", "42"])
    assert res.exit_code == 2 and "--classes: class 42 is out of range" in res.output
