"""Flux pipelines (FluxPipeline): tiny dev-like (guidance_embeds) and schnell-like transformers written in-process,
sampled as diffusers' FluxPipeline samples them (the same latents from the same seeds), and scanned end to end."""
import json
import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from collapsecheck.cli import cli
from collapsecheck.config import make_config
from collapsecheck.model import flux
from collapsecheck.model.families import distilled_hint
from collapsecheck.model.parametrization import FlowSampling, flow_table, vp_denoiser
from collapsecheck.run import conditions_of, load, schedule_for
from collapsecheck.sample.grid import sample_grid
from helpers_flux import LATENT, write_flux_pipeline

FAST = ["--mode", "fast", "--seeds", "3", "--steps", "3", "--no-lpips", "-q", "--fail-on", "never"]
SEEDS, STEPS = [0, 1], 4


@pytest.fixture(scope="module")
def pipes(tmp_path_factory):
    base = tmp_path_factory.mktemp("flux")
    prompts = base / "p.txt"
    prompts.write_text("cat\ndog\n")
    return {"dev": write_flux_pipeline(base / "dev", dev=True), "schnell": write_flux_pipeline(base / "schnell", dev=False),
            "prompts": prompts}


def ours(root, prompts, w):
    """collapsecheck's final latents (C, S, 4, 8, 8) at guidance ``w``."""
    config = make_config(checkpoint=str(root), prompts=str(prompts), steps=STEPS, seeds=len(SEEDS))
    ckpt, den = load(config)
    schedule = schedule_for(config, ckpt, den)
    grid = sample_grid(vp_denoiser(den, schedule), schedule, conditions_of(config, ckpt, den), SEEDS, [w], STEPS, 64)
    return grid.samples[0]


def diffusers_latents(root, prompt, seed, w):
    from diffusers import FluxPipeline

    pipe = FluxPipeline.from_pretrained(str(root), local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    size = LATENT * pipe.vae_scale_factor
    packed = pipe(prompt=prompt, height=size, width=size, num_inference_steps=STEPS, guidance_scale=w,
                  generator=torch.Generator().manual_seed(seed), output_type="latent").images
    return pipe._unpack_latents(packed, size, size, pipe.vae_scale_factor)[0]


@pytest.mark.parametrize("kind,w", [("dev", 3.5), ("schnell", 1.0)])
def test_latents_match_flux_pipeline(pipes, kind, w):
    """The same seeds and steps give FluxPipeline's latents: its noise, packing, position ids, dynamic shift and
    sigmas, and (dev) the embedded guidance value."""
    mine = ours(pipes[kind], pipes["prompts"], w)
    for s, seed in enumerate(SEEDS):
        theirs = diffusers_latents(pipes[kind], "dog", seed, w)
        assert theirs.abs().max() > 0.5
        torch.testing.assert_close(mine[1, s], theirs, atol=2e-5, rtol=1e-4)
    assert (mine[0] - mine[1]).abs().max() > 1e-3  # the prompt reaches the transformer


def test_embedded_guidance_changes_the_samples(pipes):
    """dev-like: w is the transformer's guidance input, not CFG between two predictions."""
    low, high = ours(pipes["dev"], pipes["prompts"], 1.0), ours(pipes["dev"], pipes["prompts"], 4.0)
    assert (low - high).abs().max() > 1e-4


def test_pack_unpack_and_ids_are_the_pipelines():
    from diffusers import FluxPipeline

    x = torch.randn(2, 4, 6, 8)
    packed = flux.pack(x)
    torch.testing.assert_close(packed, FluxPipeline._pack_latents(x, 2, 4, 6, 8), rtol=0, atol=0)
    torch.testing.assert_close(flux.unpack(packed, 6, 8), x, rtol=0, atol=0)
    ids = FluxPipeline._prepare_latent_image_ids(1, 3, 4, "cpu", torch.float32)
    torch.testing.assert_close(flux.image_ids(6, 8, torch.device("cpu"), torch.float32), ids, rtol=0, atol=0)
    assert flux.image_seq_len((4, 6, 8)) == packed.shape[1] == 12


@pytest.mark.parametrize("length", [16, 1024, 4096])
def test_dynamic_shift_is_the_pipelines(length):
    """mu = calculate_shift(image sequence length) and FluxPipeline's sigmas, taken by the scheduler itself."""
    from diffusers import FlowMatchEulerDiscreteScheduler
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift

    config = {"_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": 1000, "shift": 3.0,
              "use_dynamic_shifting": True, "base_shift": 0.5, "max_shift": 1.15, "base_image_seq_len": 256,
              "max_image_seq_len": 4096}
    table = flow_table(config, FlowSampling(steps=28, image_seq_len=length, pipeline="FluxPipeline", flux_sigmas=True))
    scheduler = FlowMatchEulerDiscreteScheduler.from_config(config)
    scheduler.set_timesteps(28, sigmas=np.linspace(1.0, 1 / 28, 28), mu=calculate_shift(length))
    torch.testing.assert_close(table.noise[table.sampling].float(), scheduler.sigmas[:-1], rtol=0, atol=1e-6)
    assert bool((table.noise[1:] > table.noise[:-1]).all())  # still a table, low noise first
    assert f"{calculate_shift(length):.4g}" in table.description


def test_families_say_why_flux_has_no_null_branch():
    dev = distilled_hint({"_class_name": "FluxTransformer2DModel", "guidance_embeds": True}, {})
    schnell = distilled_hint({"_class_name": "FluxTransformer2DModel", "guidance_embeds": False}, {})
    assert "FLUX.1-dev" in dev and "embedded guidance" in dev
    assert "FLUX.1-schnell" in schnell and "without guidance" in schnell
    assert distilled_hint({"_class_name": "SD3Transformer2DModel"}, {}) is None


def scan(root, prompts, tmp_path, *extra):
    out = tmp_path / "r.json"
    res = CliRunner().invoke(cli, ["scan", str(root), "--prompts", str(prompts), *FAST, "--json", str(out), *extra])
    assert res.exit_code == 0, res.output
    return json.loads(out.read_text())


def test_dev_scan_sweeps_embedded_guidance_and_has_no_null_branch(pipes, tmp_path):
    data = scan(pipes["dev"], pipes["prompts"], tmp_path)
    g = data["guidance"]
    assert data["checkpoint"]["model_class"] == "FluxTransformer2DModel"
    assert g["kind"] == "embedded" and [p["w"] for p in g["sweep"]] == [0, 1, 3]
    assert g["null_branch"]["verdict"] == "absent_by_design"
    assert "there is no null branch to check" in g["null_branch"]["reasons"][0]
    assert any("embedded guidance input" in r for r in g["reasons"])
    assert g["verdict"] in ("steerable", "weak", "not_steerable") and g["max_shift"] > 0
    assert data["checkpoint"]["decoder"]["shift_factor"] == pytest.approx(0.0609)
    assert any("(scaling_factor 1.5035, shift_factor 0.0609)" in n for n in data["checkpoint"]["notes"])
    assert "dynamic shift mu" in data["checkpoint"]["scheduler_source"]
    assert "FluxPipeline's sigmas" in data["checkpoint"]["scheduler_source"]
    assert any("FLUX.1-dev-like" in n for n in data["checkpoint"]["notes"])
    assert [c["label"] for c in data["conditions"]] == ["cat", "dog"]
    res = CliRunner().invoke(cli, ["scan", str(pipes["dev"]), "--prompts", str(pipes["prompts"]), *FAST[:-3]])
    assert "no null branch to check" in " ".join(res.output.split()) and "embedded guidance input" in res.output


def test_schnell_scan_is_guidance_distilled_without_embedded_guidance(pipes, tmp_path):
    data = scan(pipes["schnell"], pipes["prompts"], tmp_path)
    g = data["guidance"]
    assert g["kind"] == "cfg" and g["null_branch"]["verdict"] == "absent_by_design"
    assert g["verdict"] == "not_steerable" and "does not apply" in g["reasons"][0]
    assert any("FLUX.1-schnell-like" in n for n in data["checkpoint"]["notes"])


def test_bare_transformer_folder_with_base(pipes, tmp_path):
    """A fine-tuned transformer/ folder alone, the rest (scheduler, VAE, text encoders) from --base."""
    bare = tmp_path / "finetune"
    shutil.copytree(pipes["schnell"] / "transformer", bare)
    data = scan(bare, pipes["prompts"], tmp_path, "--base", str(pipes["schnell"]))
    assert data["checkpoint"]["model_class"] == "FluxTransformer2DModel"
    assert data["checkpoint"]["decoder"]["latent_shape"] == [4, LATENT, LATENT]
    assert "FluxPipeline's sigmas" in data["checkpoint"]["scheduler_source"]


def test_flux_pipeline_in_memory(pipes):
    """scan_model with a FluxPipeline object: its encode_prompt, its VAE, embedded guidance."""
    from diffusers import FluxPipeline

    from collapsecheck import scan_model

    pipe = FluxPipeline.from_pretrained(str(pipes["dev"]), local_files_only=True)
    result = scan_model(pipe, prompts=["cat", "dog"], seeds=3, steps=3, guidance=[1, 3], lpips=False)
    assert result.guidance.kind == "embedded" and result.guidance.null_branch.verdict == "absent_by_design"
    assert result.checkpoint["decoder"]["shift_factor"] == pytest.approx(0.0609)
    assert result.checkpoint["decoder"]["latent_shape"] == [4, LATENT, LATENT]


def test_no_interval_probe_without_a_null_branch():
    from collapsecheck.stages import recovery_variants

    assert "interval" in [v.name for v in recovery_variants([0, 1, 3], 3.0)]
    names = [v.name for v in recovery_variants([0, 1, 3], 3.0, embedded=True)]
    assert "interval" not in names and "cads" in names


def test_bare_transformer_with_cond_file(pipes, tmp_path):
    """--cond ('cond' and 'pooled') for a transformer folder alone; without a scheduler config it is refused (a
    DDPM default would be wrong for a flow-matching model), with --scheduler it scans."""
    from safetensors.torch import save_file

    from helpers_flux import WIDTH

    bare = tmp_path / "finetune"
    shutil.copytree(pipes["dev"] / "transformer", bare)
    g = torch.Generator().manual_seed(0)
    save_file({"cond": torch.randn(2, 6, WIDTH, generator=g), "pooled": torch.randn(2, WIDTH, generator=g)},
              str(tmp_path / "c.safetensors"))
    args = ["scan", str(bare), "--cond", str(tmp_path / "c.safetensors"), *FAST]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 2 and "flow-matching model" in res.output and "--base" in res.output
    res = CliRunner().invoke(cli, args + ["--scheduler", str(pipes["dev"] / "scheduler"), "--json", str(tmp_path / "r.json")])
    assert res.exit_code == 0, res.output
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["guidance"]["kind"] == "embedded" and data["condition_set"]["count"] == 2
