"""LoRA through diffusers' own loaders: the scale is honoured (0 = the base model), the LoRA file may be
CHECKPOINT with --base, kohya names are converted, and a LoRA for another model is refused."""
import json

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

pytest.importorskip("peft")

from collapsecheck.load.dispatch import load_checkpoint  # noqa: E402
from collapsecheck.cli import cli  # noqa: E402
from helpers_models import tiny_crossattn_unet  # noqa: E402

FAST = ["--seeds", "3", "--steps", "2", "--guidance", "1", "--no-recovery", "--no-lpips", "-q"]


def _lora_unet(cross_dim: int = 16):
    """A tiny UNet with a peft LoRA whose factors are all random (so it changes the output)."""
    from peft import LoraConfig

    unet = tiny_crossattn_unet(cross_dim=cross_dim)
    unet.add_adapter(LoraConfig(r=2, lora_alpha=2, target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        for name, p in unet.named_parameters():
            if "lora" in name:
                p.normal_(0, 0.2)
    return unet.eval()


def _save_lora(unet, folder):
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    StableDiffusionPipeline.save_lora_weights(str(folder), unet_lora_layers=layers, safe_serialization=True)
    return folder / "pytorch_lora_weights.safetensors"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("lora")
    tiny_crossattn_unet().save_pretrained(root / "base")
    trained = _lora_unet()
    lora = _save_lora(trained, root / "lora")
    save_file({"cond": torch.randn(2, 1, 16, generator=torch.Generator().manual_seed(0))}, str(root / "emb.safetensors"))
    return root, lora, trained


def _out(model):
    g = torch.Generator().manual_seed(3)
    x, c = torch.randn(2, 1, 8, 8, generator=g), torch.randn(2, 1, 16, generator=g)
    with torch.no_grad():
        return model(x, torch.tensor([10, 600]), encoder_hidden_states=c).sample


def test_scale_zero_is_the_base_model_and_scale_one_the_lora(setup):
    root, lora, trained = setup
    base = _out(load_checkpoint(root / "base").model)
    zero = load_checkpoint(root / "base", lora=lora, lora_scale=0.0)
    one = load_checkpoint(root / "base", lora=lora, lora_scale=1.0)
    torch.testing.assert_close(_out(zero.model), base, atol=0, rtol=0)
    assert (_out(one.model) - base).abs().max() > 1e-3
    torch.testing.assert_close(_out(one.model), _out(trained), atol=1e-5, rtol=1e-5)
    half = _out(load_checkpoint(root / "base", lora=lora, lora_scale=0.5).model)
    assert 0 < (half - base).abs().max() < (_out(one.model) - base).abs().max()
    assert any("scale 1" in n and "--lora-scale" in n for n in one.notes)
    assert zero.content_hash != one.content_hash  # the trend cache tells scales apart


def test_lora_file_as_checkpoint_with_base(setup):
    root, lora, trained = setup
    ckpt = load_checkpoint(lora, base=root / "base")
    torch.testing.assert_close(_out(ckpt.model), _out(trained), atol=1e-5, rtol=1e-5)
    assert "LoRA" in ckpt.source


def test_kohya_names_are_converted(setup, tmp_path):
    root, lora, trained = setup
    kohya = {}
    for key, value in load_file(str(lora)).items():
        module, kind = key[len("unet."):].rsplit(".lora.", 1)
        name = "lora_unet_" + module.replace(".", "_")
        kohya[f"{name}.lora_{kind.split('.')[0]}.weight"] = value
        kohya[f"{name}.alpha"] = torch.tensor(float(value.shape[0] if kind.startswith("down") else 2))
    path = tmp_path / "kohya.safetensors"
    save_file(kohya, str(path))
    ckpt = load_checkpoint(root / "base", lora=path)
    torch.testing.assert_close(_out(ckpt.model), _out(trained), atol=1e-5, rtol=1e-5)


def test_scan_with_lora_end_to_end(setup, tmp_path):
    root, lora, _ = setup
    out = tmp_path / "r.json"
    res = CliRunner().invoke(cli, ["scan", str(root / "base"), "--lora", str(lora), "--lora-scale", "0.5",
                                   "--cond", str(root / "emb.safetensors"), *FAST, "--json", str(out)])
    assert res.exit_code in (0, 1), res.output
    data = json.loads(out.read_text())
    assert "LoRA" in data["checkpoint"]["source"] and "scale 0.5" in data["checkpoint"]["source"]
    assert data["config"]["lora_scale"] == 0.5


def test_lora_errors_are_one_line(setup, tmp_path):
    root, lora, _ = setup
    other = _save_lora(_lora_unet(cross_dim=8), tmp_path / "other")
    cases = [
        (["--lora", str(tmp_path / "missing.safetensors")], 2, "--lora"),
        (["--lora", str(other)], 3, "--lora"),
        (["--lora-scale", "0.5"], 2, "--lora FILE"),
    ]
    for args, code, words in cases:
        res = CliRunner().invoke(cli, ["scan", str(root / "base"), *args, "--cond", str(root / "emb.safetensors"),
                                       *FAST])
        assert res.exit_code == code, (args, res.output)
        assert words in res.output and len(res.output.strip().splitlines()) == 1, res.output


@pytest.fixture(scope="module")
def te_setup(tmp_path_factory):
    """A tiny SD pipeline and a LoRA with UNet and text-encoder layers (random factors), and prompts."""
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig, inject_adapter_in_model
    from peft.utils import get_peft_model_state_dict

    from helpers_pipeline import tiny_latent_unet, tiny_text_encoder, write_tiny_pipeline, write_tokenizer

    root = tmp_path_factory.mktemp("te_lora")
    pipe = write_tiny_pipeline(root / "pipe")
    unet = tiny_latent_unet()
    unet.add_adapter(LoraConfig(r=2, lora_alpha=2, target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    encoder = tiny_text_encoder(write_tokenizer(root / "tok"))  # peft directly: transformers 5 wants peft >= 0.22
    encoder = inject_adapter_in_model(LoraConfig(r=2, lora_alpha=2, target_modules=["q_proj", "k_proj", "v_proj",
                                                                                      "out_proj"]), encoder)
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        for model in (unet, encoder):
            for name, p in model.named_parameters():
                if "lora" in name:
                    p.normal_(0, 0.3)
    StableDiffusionPipeline.save_lora_weights(
        str(root / "lora"), unet_lora_layers=convert_state_dict_to_diffusers(get_peft_model_state_dict(unet)),
        text_encoder_lora_layers=get_peft_model_state_dict(encoder), safe_serialization=True)
    prompts = root / "prompts.txt"
    prompts.write_text("a cat\na dog\n")
    return pipe, root / "lora" / "pytorch_lora_weights.safetensors", prompts, encoder.eval()


def _kohya(lora, path):
    """The same LoRA under kohya names (lora_unet_* and lora_te_*, with alphas)."""
    kohya = {}
    for key, value in load_file(str(lora)).items():
        part, rest = key.split(".", 1)
        module, kind = rest.rsplit(".lora.", 1) if ".lora." in rest else rest.rsplit(".lora_", 1)
        name = ("lora_unet_" if part == "unet" else "lora_te_text_model_") + module.replace(".", "_")
        up = kind.startswith(("up", "B"))
        kohya[f"{name}.lora_{'up' if up else 'down'}.weight"] = value
        kohya[f"{name}.alpha"] = torch.tensor(2.0)
    save_file(kohya, str(path))
    return path


def test_text_encoder_layers_reach_the_prompt_embeddings(te_setup, tmp_path):
    import transformers

    pipe, lora, prompts, trained = te_setup
    base = load_checkpoint(pipe, prompts=prompts).conditions
    zero = load_checkpoint(pipe, prompts=prompts, lora=lora, lora_scale=0.0)
    one = load_checkpoint(pipe, prompts=prompts, lora=lora, lora_scale=1.0)
    torch.testing.assert_close(zero.conditions.values, base.values, atol=0, rtol=0)
    torch.testing.assert_close(zero.conditions.null, base.null, atol=0, rtol=0)
    assert (one.conditions.values - base.values).abs().max() > 1e-3
    tok = transformers.CLIPTokenizer.from_pretrained(str(pipe / "tokenizer"), local_files_only=True)
    ids = tok(["a cat", "a dog", ""], padding="max_length", max_length=tok.model_max_length, return_tensors="pt")
    with torch.no_grad():
        expected = trained(ids.input_ids)[0]  # the text encoder the LoRA was trained into
    torch.testing.assert_close(one.conditions.values, expected[:2], atol=1e-5, rtol=1e-5)
    assert any("text-encoder layers at scale 1" in n for n in one.conditions.notes)
    assert not any("not applied" in n for n in one.notes)
    kohya = load_checkpoint(pipe, prompts=prompts, lora=_kohya(lora, tmp_path / "kohya.safetensors"))
    torch.testing.assert_close(kohya.conditions.values, expected[:2], atol=1e-5, rtol=1e-5)


def test_text_encoder_layers_unused_with_cond_embeddings_are_noted(te_setup, tmp_path):
    pipe, lora, prompts, _ = te_setup
    emb = tmp_path / "emb.safetensors"
    save_file({"cond": torch.randn(2, 8, 16, generator=torch.Generator().manual_seed(0))}, str(emb))
    out = tmp_path / "r.json"
    res = CliRunner().invoke(cli, ["scan", str(pipe), "--lora", str(lora), "--cond", str(emb), *FAST,
                                   "--json", str(out)])
    assert res.exit_code in (0, 1), res.output
    notes = json.loads(out.read_text())["checkpoint"]["notes"]
    assert any("text_encoder layers are not applied" in n and "--prompts" in n for n in notes), notes
    out = tmp_path / "p.json"
    res = CliRunner().invoke(cli, ["scan", str(pipe), "--lora", str(lora), "--prompts", str(prompts), *FAST,
                                   "--json", str(out)])
    assert res.exit_code in (0, 1), res.output
    notes = json.loads(out.read_text())["checkpoint"]["notes"]
    assert any("text-encoder layers" in n for n in notes) and not any("not applied" in n for n in notes), notes


# ------------------------------------------------------------- accelerate's LoRA checkpoint-N/ folders


class _Trap:
    """Unpickling this creates ``marker``: a pickle that is opened leaves a trace."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _lora_checkpoint(folder, lora, marker):
    """accelerate's save_state output of a LoRA run: the LoRA file beside pickled training state."""
    import pickle
    import shutil

    folder.mkdir(parents=True)
    shutil.copy(lora, folder / "pytorch_lora_weights.safetensors")
    for name in ("optimizer.bin", "scheduler.bin", "random_states_0.pkl", "scaler.pt"):
        (folder / name).write_bytes(pickle.dumps(_Trap(marker)))
    return folder


def test_lora_checkpoint_folder_with_base_never_opens_its_pickles(setup, tmp_path, monkeypatch):
    import pickle

    root, lora, trained = setup
    marker = tmp_path / "unpickled"
    folder = _lora_checkpoint(tmp_path / "run" / "checkpoint-500", lora, marker)
    pickle.loads((folder / "scheduler.bin").read_bytes())  # the trap works: unpickling leaves the marker
    assert marker.exists()
    marker.unlink()

    def refuse(*args, **kwargs):
        raise AssertionError("a pickle was opened")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    ckpt = load_checkpoint(folder, base=root / "base")
    direct = load_checkpoint(root / "base", lora=lora)
    torch.testing.assert_close(_out(ckpt.model), _out(trained), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(_out(ckpt.model), _out(direct.model), atol=0, rtol=0)
    assert ckpt.content_hash == direct.content_hash
    assert any("random_states_0.pkl" in n and "never opened" in n for n in ckpt.notes)
    assert not marker.exists()


def test_lora_checkpoint_folder_scan_equals_base_with_lora_file(setup, tmp_path):
    root, lora, _ = setup
    marker = tmp_path / "unpickled"
    folder = _lora_checkpoint(tmp_path / "run" / "checkpoint-500", lora, marker)
    emb = str(root / "emb.safetensors")
    runs = {}
    for name, args in (("folder", [str(folder), "--base", str(root / "base")]),
                       ("file", [str(root / "base"), "--lora", str(lora)])):
        out = tmp_path / f"{name}.json"
        res = CliRunner().invoke(cli, ["scan", *args, "--cond", emb, *FAST, "--json", str(out)])
        assert res.exit_code in (0, 1), res.output
        runs[name] = json.loads(out.read_text())
    assert runs["folder"]["conditions"] == runs["file"]["conditions"]
    assert runs["folder"]["verdict"] == runs["file"]["verdict"]
    assert not marker.exists()
    res = CliRunner().invoke(cli, ["scan", str(folder), "--cond", emb, *FAST])  # no --base: one line naming it
    assert res.exit_code == 2 and "--base" in res.output and len(res.output.strip().splitlines()) == 1


def test_trend_over_a_lora_run_of_checkpoint_folders(setup, tmp_path):
    root, lora, _ = setup
    marker = tmp_path / "unpickled"
    run = tmp_path / "run"
    other = _save_lora(_lora_unet(), tmp_path / "other")
    for step, weights in ((100, other), (300, lora)):
        _lora_checkpoint(run / f"checkpoint-{step}", weights, marker)
    out = tmp_path / "t.json"
    res = CliRunner().invoke(cli, ["trend", str(run), "--base", str(root / "base"), "--cond",
                                   str(root / "emb.safetensors"), *FAST, "--json", str(out)])
    assert res.exit_code in (0, 1), res.output
    data = json.loads(out.read_text())
    assert [s["step"] for s in data["steps"]] == [100, 300]
    assert "LoRA" in data["last"]["checkpoint"]["source"] and not marker.exists()


def test_a_lora_at_scale_zero_equals_its_base_as_reference(setup, tmp_path):
    """--reference BASE of a LoRA file on --base BASE: the base alone is the reference; at --lora-scale 0
    the LoRA is the base, so every ratio is exactly 1; at scale 1 the ratios move."""
    root, lora, _ = setup
    ratios = {}
    for scale in ("0", "1"):
        out = tmp_path / f"r{scale}.json"
        res = CliRunner().invoke(cli, ["scan", str(lora), "--base", str(root / "base"), "--lora-scale", scale,
                                       "--reference", str(root / "base"), "--cond", str(root / "emb.safetensors"),
                                       *FAST, "--json", str(out), "--fail-on", "never"])
        assert res.exit_code == 0, res.output
        ref = json.loads(out.read_text())["reference"]
        assert ref["path"] == str(root / "base") and "LoRA" not in (ref["model_class"] or "")
        ratios[scale] = [c["pixel_ratio"] for c in ref["conditions"]]
    assert ratios["0"] == [1.0, 1.0]
    assert all(abs(r - 1.0) > 1e-6 for r in ratios["1"])
