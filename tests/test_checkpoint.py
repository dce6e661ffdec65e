"""Tests for collapsecheck.load.dispatch: layouts, config and scheduler discovery, strictness, safety."""
from __future__ import annotations

import io
import json
import os
import pickle
from pathlib import Path
from typing import Dict

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from diffusers import DDIMScheduler, DDPMScheduler  # noqa: E402
from helpers_models import (  # noqa: E402
    model_config_json,
    save_bare_safetensors,
    tiny_class_unet,
    tiny_concat_unet,
    tiny_crossattn_unet,
)

from collapsecheck.load.dispatch import (  # noqa: E402
    DEFAULT_SCHEDULER_CONFIG,
    LoadedCheckpoint,
    load_checkpoint,
)
from collapsecheck.errors import LoadError, UsageError  # noqa: E402

torch.set_num_threads(1)


def _forward(model: torch.nn.Module, kind: str) -> torch.Tensor:
    """One fixed, seeded forward pass for each model family."""
    gen = torch.Generator().manual_seed(123)
    t = torch.tensor([10, 500])
    with torch.no_grad():
        if kind == "class":
            x = torch.randn(2, 1, 8, 8, generator=gen)
            return model(x, t, class_labels=torch.tensor([3, 10])).sample
        if kind == "concat":
            x = torch.randn(2, 2, 8, 8, generator=gen)
            return model(x, t).sample
        x = torch.randn(2, 1, 8, 8, generator=gen)
        ctx = torch.randn(2, 4, 16, generator=gen)
        return model(x, t, encoder_hidden_states=ctx).sample


_BUILDERS = {"class": tiny_class_unet, "concat": tiny_concat_unet, "crossattn": tiny_crossattn_unet}


@pytest.fixture(scope="module")
def models() -> Dict[str, torch.nn.Module]:
    return {kind: build() for kind, build in _BUILDERS.items()}


def _files(root: Path) -> set:
    return {p for p in root.rglob("*")}


# ------------------------------------------------------------------------------ model folders


@pytest.mark.parametrize("kind", ["class", "concat", "crossattn"])
def test_model_folder_loads_and_matches_original(tmp_path, models, kind):
    model = models[kind]
    model.save_pretrained(tmp_path / "m")
    before = _files(tmp_path)

    ckpt = load_checkpoint(tmp_path / "m")

    assert isinstance(ckpt, LoadedCheckpoint)
    assert ckpt.model_class == type(model).__name__
    assert ckpt.model_config["_class_name"] == ckpt.model_class
    assert ckpt.model_config["block_out_channels"] == [8, 16]
    json.dumps(ckpt.model_config)  # plain, JSON-compatible
    assert not ckpt.model.training
    assert all(not p.requires_grad and p.dtype == torch.float32 for p in ckpt.model.parameters())
    assert len(ckpt.content_hash) == 16
    torch.testing.assert_close(_forward(ckpt.model, kind), _forward(model, kind), rtol=0, atol=0)
    assert _files(tmp_path) == before, "the loader must not write anything"


def test_model_folder_bin_and_fp16_variant(tmp_path, models):
    model = models["class"]
    model.save_pretrained(tmp_path / "bin", safe_serialization=False)
    assert (tmp_path / "bin" / "diffusion_pytorch_model.bin").is_file()
    ckpt = load_checkpoint(tmp_path / "bin")
    torch.testing.assert_close(_forward(ckpt.model, "class"), _forward(model, "class"), rtol=0, atol=0)

    half = tiny_class_unet().to(torch.float16)
    half.save_pretrained(tmp_path / "fp16", variant="fp16")
    ckpt16 = load_checkpoint(tmp_path / "fp16")
    assert any("fp16 variant" in n for n in ckpt16.notes)
    assert any("float16" in n and "cast to float32" in n for n in ckpt16.notes)
    assert next(ckpt16.model.parameters()).dtype == torch.float32
    torch.testing.assert_close(_forward(ckpt16.model, "class"), _forward(model, "class"), rtol=0, atol=2e-2)


def test_content_hash_tracks_weight_bytes(tmp_path):
    tiny_class_unet(seed=0).save_pretrained(tmp_path / "a")
    tiny_class_unet(seed=0).save_pretrained(tmp_path / "b")
    tiny_class_unet(seed=1).save_pretrained(tmp_path / "c")
    hashes = [load_checkpoint(tmp_path / n).content_hash for n in "abc"]
    assert hashes[0] == hashes[1] != hashes[2]


# ------------------------------------------------------------------------------ pipeline folders


def _pipeline(root: Path, unet=None, ema=None, scheduler=None) -> Path:
    if unet is not None:
        unet.save_pretrained(root / "unet")
    if ema is not None:
        ema.save_pretrained(root / "unet_ema")
    if scheduler is not None:
        scheduler.save_pretrained(root / "scheduler")
    return root


def test_pipeline_folder_picks_up_scheduler(tmp_path, models):
    root = _pipeline(tmp_path / "pipe", unet=models["crossattn"], scheduler=DDIMScheduler(prediction_type="v_prediction"))
    ckpt = load_checkpoint(root)
    assert ckpt.scheduler_config["prediction_type"] == "v_prediction"
    assert ckpt.scheduler_config["_class_name"] == "DDIMScheduler"
    assert ckpt.scheduler_source == str(root / "scheduler" / "scheduler_config.json")
    assert ckpt.source == str(root / "unet")
    assert ckpt.notes == ()

    # the unet/ folder on its own still finds ../scheduler/
    assert load_checkpoint(root / "unet").scheduler_config["prediction_type"] == "v_prediction"


def test_pipeline_with_ema_defaults_to_unet_and_says_so(tmp_path, models):
    ema = tiny_class_unet(seed=7)
    root = _pipeline(tmp_path / "run", unet=models["class"], ema=ema, scheduler=DDPMScheduler())

    auto = load_checkpoint(root)
    assert auto.source.startswith(str(root / "unet"))
    assert any("unet_ema/ is also present" in n and "--weights unet_ema" in n for n in auto.notes)
    torch.testing.assert_close(_forward(auto.model, "class"), _forward(models["class"], "class"))

    chosen = load_checkpoint(root, weights="unet_ema")
    assert "EMA weights" in chosen.source and "--weights unet" in chosen.source
    torch.testing.assert_close(_forward(chosen.model, "class"), _forward(ema, "class"), rtol=0, atol=0)
    assert chosen.content_hash != auto.content_hash

    explicit = load_checkpoint(root, weights="unet")
    assert not any("also present" in n for n in explicit.notes)


def test_missing_weights_choice_names_what_exists(tmp_path, models):
    root = _pipeline(tmp_path / "run", unet=models["class"])
    with pytest.raises(UsageError, match=r"no unet_ema/ folder; it has unet/"):
        load_checkpoint(root, weights="unet_ema")
    with pytest.raises(UsageError, match=r"Did you mean 'unet_ema'"):
        load_checkpoint(root, weights="unet-ema")
    with pytest.raises(UsageError, match=r"applies to a folder holding unet/"):
        load_checkpoint(root / "unet", weights="unet")


def test_training_checkpoint_folders(tmp_path, models):
    out = tmp_path / "output"
    _pipeline(out / "checkpoint-500", unet=models["class"], ema=tiny_class_unet(seed=3))
    _pipeline(out / "checkpoint-1000", unet=models["class"])
    with pytest.raises(UsageError, match=r"checkpoint-500, checkpoint-1000.*pass one of them"):
        load_checkpoint(out)

    # scheduler saved once at the end of training, beside the checkpoints
    DDIMScheduler(prediction_type="sample").save_pretrained(out / "scheduler")
    ckpt = load_checkpoint(out / "checkpoint-500", weights="unet_ema")
    assert ckpt.scheduler_source == str(out / "scheduler" / "scheduler_config.json")
    assert ckpt.scheduler_config["prediction_type"] == "sample"


def test_scheduler_argument_and_prediction_type_override(tmp_path, models):
    root = _pipeline(tmp_path / "pipe", unet=models["class"], scheduler=DDPMScheduler())
    DDIMScheduler(prediction_type="v_prediction").save_pretrained(tmp_path / "other")

    via_folder = load_checkpoint(root, scheduler=tmp_path / "other")
    assert via_folder.scheduler_config["prediction_type"] == "v_prediction"
    assert via_folder.scheduler_source == str(tmp_path / "other" / "scheduler_config.json")

    overridden = load_checkpoint(root, prediction_type="sample")
    assert overridden.scheduler_config["prediction_type"] == "sample"
    assert any("overrides 'epsilon'" in n for n in overridden.notes)

    with pytest.raises(UsageError, match=r"--prediction-type must be one of .*Did you mean 'v_prediction'"):
        load_checkpoint(root, prediction_type="v-prediction")
    with pytest.raises(UsageError, match=r"--scheduler .* does not exist"):
        load_checkpoint(root, scheduler=tmp_path / "nope.json")


def test_bad_prediction_type_in_scheduler_config(tmp_path, models):
    root = _pipeline(tmp_path / "pipe", unet=models["class"])
    (root / "scheduler").mkdir()
    (root / "scheduler" / "scheduler_config.json").write_text(json.dumps({"prediction_type": "flow"}))
    with pytest.raises(UsageError, match=r"prediction_type in .*scheduler_config.json"):
        load_checkpoint(root)
    assert load_checkpoint(root, prediction_type="epsilon").scheduler_config["prediction_type"] == "epsilon"


def test_default_scheduler_is_assumed_and_said(tmp_path, models):
    models["concat"].save_pretrained(tmp_path / "m")
    ckpt = load_checkpoint(tmp_path / "m")
    assert ckpt.scheduler_source.startswith("assumed default")
    assert any("assumed default" in n for n in ckpt.notes)
    reference = dict(DDPMScheduler().config)
    for key, value in DEFAULT_SCHEDULER_CONFIG.items():
        if key != "_class_name":
            assert reference[key] == value, key


# ------------------------------------------------------------------------------ bare files


def test_bare_safetensors_with_metadata(tmp_path, models):
    sched = dict(DDIMScheduler(prediction_type="v_prediction").config)
    path = save_bare_safetensors(models["crossattn"], tmp_path / "model.safetensors", scheduler_config=sched)
    ckpt = load_checkpoint(path)
    assert ckpt.model_class == "UNet2DConditionModel"
    assert "model config taken from the safetensors metadata" in ckpt.notes
    assert ckpt.scheduler_config["prediction_type"] == "v_prediction"
    assert "safetensors metadata" in ckpt.scheduler_source
    torch.testing.assert_close(_forward(ckpt.model, "crossattn"), _forward(models["crossattn"], "crossattn"), rtol=0, atol=0)


def test_bare_safetensors_with_config_beside(tmp_path, models):
    path = save_bare_safetensors(models["class"], tmp_path / "w.safetensors", with_config=False)
    models["class"].save_config(tmp_path)
    DDIMScheduler().save_config(tmp_path)
    ckpt = load_checkpoint(path)
    assert any("config.json beside the file" in n for n in ckpt.notes)
    assert ckpt.scheduler_source == str(tmp_path / "scheduler_config.json")
    torch.testing.assert_close(_forward(ckpt.model, "class"), _forward(models["class"], "class"), rtol=0, atol=0)


def test_bare_safetensors_with_config_argument(tmp_path, models):
    path = save_bare_safetensors(models["concat"], tmp_path / "w.safetensors", with_config=False)
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "my_config.json").write_text(model_config_json(models["concat"]))
    ckpt = load_checkpoint(path, config=tmp_path / "cfg" / "my_config.json")
    assert any("--config" in n for n in ckpt.notes)
    torch.testing.assert_close(_forward(ckpt.model, "concat"), _forward(models["concat"], "concat"), rtol=0, atol=0)


def test_bare_safetensors_without_config(tmp_path, models):
    path = save_bare_safetensors(models["concat"], tmp_path / "w.safetensors", with_config=False)
    with pytest.raises(UsageError, match=r"no model config found \(looked in the file's metadata and for config.json beside it\); pass --config CONFIG.json"):
        load_checkpoint(path)


@pytest.mark.parametrize("prefix", ["_orig_mod.", "module.", "module._orig_mod."])
def test_compile_and_ddp_prefixes_are_stripped(tmp_path, models, prefix):
    path = save_bare_safetensors(models["class"], tmp_path / "w.safetensors", key_prefix=prefix)
    ckpt = load_checkpoint(path)
    assert any("stripped key prefix" in n for n in ckpt.notes)
    torch.testing.assert_close(_forward(ckpt.model, "class"), _forward(models["class"], "class"), rtol=0, atol=0)


def test_torch_state_dict_file(tmp_path, models):
    torch.save({"module." + k: v for k, v in models["class"].state_dict().items()}, tmp_path / "w.pt")
    models["class"].save_config(tmp_path)
    ckpt = load_checkpoint(tmp_path / "w.pt")
    torch.testing.assert_close(_forward(ckpt.model, "class"), _forward(models["class"], "class"), rtol=0, atol=0)


# ------------------------------------------------------------------------------ strictness and errors


def test_mismatched_config_names_keys(tmp_path, models):
    path = save_bare_safetensors(models["class"], tmp_path / "w.safetensors", with_config=False)
    (tmp_path / "concat.json").write_text(model_config_json(models["concat"]))
    with pytest.raises(LoadError) as info:
        load_checkpoint(path, config=tmp_path / "concat.json")
    message = str(info.value)
    assert "weights do not match the config" in message
    assert "1 unexpected (class_embedding.weight)" in message
    assert "conv_in.weight: 8x1x3x3 in file vs 8x2x3x3 in config" in message
    assert "is --config the right one?" in message and "\n" not in message


def test_partial_prefix_is_not_silently_dropped(tmp_path, models):
    state = models["class"].state_dict()
    first = next(iter(state))
    renamed = {("module." + k if k == first else k): v for k, v in state.items()}
    torch.save(renamed, tmp_path / "w.bin")
    models["class"].save_config(tmp_path)
    with pytest.raises(LoadError, match=rf"1 missing keys \({first}\), 1 unexpected \(module.{first}\)"):
        load_checkpoint(tmp_path / "w.bin")


def test_truncated_and_corrupt_safetensors(tmp_path, models):
    path = save_bare_safetensors(models["class"], tmp_path / "w.safetensors")
    data = path.read_bytes()
    (tmp_path / "trunc.safetensors").write_bytes(data[: len(data) - 100])
    with pytest.raises(LoadError, match=r"is truncated"):
        load_checkpoint(tmp_path / "trunc.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00\x01garbage that is not a header")
    with pytest.raises(LoadError, match=r"not a valid safetensors file"):
        load_checkpoint(tmp_path / "junk.safetensors")

    models["class"].save_pretrained(tmp_path / "m")
    weights = tmp_path / "m" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:50])
    with pytest.raises(LoadError) as info:
        load_checkpoint(tmp_path / "m")
    assert "\n" not in str(info.value)


def test_truncated_torch_file(tmp_path, models):
    torch.save(models["class"].state_dict(), tmp_path / "full.bin")
    data = (tmp_path / "full.bin").read_bytes()
    (tmp_path / "w.bin").write_bytes(data[: len(data) // 2])
    models["class"].save_config(tmp_path)
    with pytest.raises(LoadError, match=r"cannot read as a torch state dict .*corrupt"):
        load_checkpoint(tmp_path / "w.bin")


class _Payload:
    """Unpickling this would create a file: proof that code ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (io.open, (self.marker, "w"))


class _Plain:
    pass


def test_pickled_code_is_refused_and_never_runs(tmp_path, models):
    models["class"].save_config(tmp_path)
    marker = tmp_path / "pwned"
    state = dict(models["class"].state_dict())
    state["payload"] = _Payload(str(marker))
    torch.save(state, tmp_path / "evil.bin")
    # the payload is live: a plain unpickle would create its file
    pickle.loads(pickle.dumps(_Payload(str(tmp_path / "control")))).close()
    assert (tmp_path / "control").exists()
    torch.save({**state, "payload": _Plain()}, tmp_path / "object.pt")

    with pytest.raises(LoadError, match=r"refuses to unpickle untrusted files.*safetensors"):
        load_checkpoint(tmp_path / "evil.bin")
    assert not marker.exists()
    with pytest.raises(LoadError, match=r"_Plain.*refuses to unpickle"):
        load_checkpoint(tmp_path / "object.pt")


def test_unsupported_class_and_missing_class_name(tmp_path, models):
    path = save_bare_safetensors(models["class"], tmp_path / "w.safetensors", with_config=False)
    cfg = json.loads(model_config_json(models["class"]))
    (tmp_path / "vq.json").write_text(json.dumps({**cfg, "_class_name": "VQModel"}))
    with pytest.raises(LoadError, match=r"model class VQModel is not supported yet; supported: UNet2DModel, UNet2DConditionModel"):
        load_checkpoint(path, config=tmp_path / "vq.json")
    del cfg["_class_name"]
    (tmp_path / "anon.json").write_text(json.dumps(cfg))
    with pytest.raises(LoadError, match=r"has no _class_name"):
        load_checkpoint(path, config=tmp_path / "anon.json")


def test_path_errors(tmp_path):
    with pytest.raises(UsageError, match=r"checkpoint path .*nowhere does not exist"):
        load_checkpoint(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "model.safetensors").write_bytes(b"")
    with pytest.raises(UsageError, match=r"looked for config.json with diffusion_pytorch_model.safetensors.*unet/.*found model.safetensors"):
        load_checkpoint(tmp_path / "empty")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(UsageError, match=r"unsupported file type"):
        load_checkpoint(tmp_path / "notes.txt")
