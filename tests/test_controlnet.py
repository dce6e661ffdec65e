"""ControlNets on their base pipeline: loading the layouts train_controlnet.py writes, hints from --cond,
the null condition (ControlNet off = the base model), the conditioning scale and its recovery sweep."""
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

pytest.importorskip("transformers")

from collapsecheck.load.dispatch import load_checkpoint  # noqa: E402
from collapsecheck.cli import cli  # noqa: E402
from collapsecheck.load.conditions import hint_conditions  # noqa: E402
from collapsecheck.sample.grid import probe_null_branch, sample_grid  # noqa: E402
from collapsecheck.model.build import denoiser_for  # noqa: E402
from collapsecheck.model.schedule import schedule_from_config  # noqa: E402
from collapsecheck.sample.variants import Variant, control_strength  # noqa: E402
from helpers_models import _seeded  # noqa: E402
from helpers_pipeline import tiny_latent_unet, write_tiny_pipeline  # noqa: E402

FAST = ["--seeds", "3", "--steps", "2", "--guidance", "0,1", "--no-lpips", "--no-posterior", "-q"]
HINT = (3, 16, 16)  # latents 8x8, ControlNet embedding downsampling 2


def tiny_controlnet(seed: int = 1):
    """A ControlNet from the tiny UNet whose zero convolutions are no longer zero (as after training)."""
    from diffusers import ControlNetModel

    def build():
        net = ControlNetModel.from_unet(tiny_latent_unet(0), conditioning_embedding_out_channels=(4, 8))
        zero = [*net.controlnet_down_blocks, net.controlnet_mid_block, net.controlnet_cond_embedding.conv_out]
        with torch.no_grad():
            for module in zero:
                module.weight.normal_(0.0, 0.3)
        return net.eval()

    return _seeded(seed, build)


def write_hints(folder, n=2):
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"hint{i}.png")
    return folder


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("cn")
    base = write_tiny_pipeline(root / "sd")
    net = tiny_controlnet()
    net.save_pretrained(str(root / "out"))  # train_controlnet.py's output folder
    net.save_pretrained(str(root / "out" / "checkpoint-500" / "controlnet"))  # its checkpoints
    hints = write_hints(root / "hints")
    return base, root / "out", hints, net


def invoke(*args):
    return CliRunner().invoke(cli, ["scan", *map(str, args)])


def test_scan_controlnet_end_to_end_with_scale_sweep(setup, tmp_path):
    base, out, hints, _ = setup
    report = tmp_path / "r.json"
    # at_risk_rms above any pixel RMS makes the verdict "not healthy", so the recovery probes run
    res = invoke(out, "--base", base, "--cond", hints, *FAST, "--threshold", "at_risk_rms=10", "--threshold", "at_risk_seed_share=10",
                 "--json", report)
    assert res.exit_code in (0, 1), res.output
    data = json.loads(report.read_text())
    assert data["checkpoint"]["model_class"] == "ControlNetModel"
    assert data["condition_set"]["kind"] == "control"
    assert data["condition_set"]["labels"] == ["hint0.png", "hint1.png"]
    assert "switched off" in data["condition_set"]["null"]
    notes = " ".join(data["checkpoint"]["notes"])
    assert "resized from 32x32 to 16x16" in notes and "the empty prompt" in notes
    probes = {p["name"]: p for p in data["guidance"]["recovery"]}
    assert {"controlnet x0.8", "controlnet x0.5"} <= set(probes)
    assert "conditioning scale 0.5" in probes["controlnet x0.5"]["description"]
    assert not probes["controlnet x0.5"]["uses_null_branch"]
    assert data["checkpoint"]["decoder"]["image_shape"] == [3, 16, 16]


def test_training_checkpoint_and_controlnet_pipeline_layouts(setup, tmp_path):
    import shutil

    base, out, _, net = setup
    ckpt = load_checkpoint(out / "checkpoint-500", base=base)
    assert ckpt.model_class == "ControlNetModel" and denoiser_for(ckpt).kind == "control"
    torch.testing.assert_close(ckpt.model.state_dict(), net.state_dict())
    pipe = tmp_path / "cnpipe"
    shutil.copytree(base, pipe)
    net.save_pretrained(str(pipe / "controlnet"))
    own = load_checkpoint(pipe)  # a ControlNet pipeline folder is its own base
    assert own.model_class == "ControlNetModel" and own.content_hash == ckpt.content_hash


def test_denoiser_matches_diffusers_conditioning_scale_and_null_is_the_base(setup):
    base, out, hints, net = setup
    ckpt = load_checkpoint(out, base=base, controlnet_scale=0.7)
    den = denoiser_for(ckpt)
    conds = hint_conditions(hints, den.hint_shape)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 8, 8, generator=g)
    t = torch.tensor([500, 500])
    text = den.text.expand(2, -1, -1)
    with torch.no_grad():
        down, mid = net(x, t, encoder_hidden_states=text, controlnet_cond=conds.values, conditioning_scale=0.7,
                        return_dict=False)
        expected = den.model(x, t, encoder_hidden_states=text, down_block_additional_residuals=down,
                             mid_block_additional_residual=mid).sample
        plain_base = den.model(x, t, encoder_hidden_states=text).sample
        got = den(x, t, conds.values)
        null = den(x, t, conds.null.expand(2, -1, -1, -1))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(null, plain_base, atol=1e-6, rtol=1e-6)
    assert (got - plain_base).abs().max() > 1e-3  # the ControlNet does act


def test_strength_variant_equals_a_lower_conditioning_scale_and_zero_is_the_base(setup):
    base, out, hints, _ = setup
    full = load_checkpoint(out, base=base)
    half = load_checkpoint(out, base=base, controlnet_scale=0.5)
    schedule = schedule_from_config(full.scheduler_config)
    full_den, half_den = denoiser_for(full), denoiser_for(half)
    conds = hint_conditions(hints, full_den.hint_shape)
    seeds = [0, 1, 2]
    grid = sample_grid(full_den, schedule, conds, seeds, [control_strength(1.0, 0.5), Variant("off", 1.0, control_strength=0.0)], 3, 4)
    lower = sample_grid(half_den, schedule, conds, seeds, [1.0], 3, 8)
    torch.testing.assert_close(grid.samples[0], lower.samples[0], atol=1e-5, rtol=1e-5)
    base_only = probe_null_branch(full_den, schedule, conds, seeds, 3, [], 4, run_to_end=True).final
    for c in range(len(conds)):
        torch.testing.assert_close(grid.samples[1, c], base_only, atol=1e-5, rtol=1e-5)


def test_hint_tensors_and_their_errors(tmp_path):
    from collapsecheck.errors import UsageError

    good = tmp_path / "h.npy"
    np.save(good, np.full((2, 1, 16, 16), 0.5, dtype=np.float32))
    conds = hint_conditions(good, HINT)
    assert conds.values.shape == (2, *HINT) and float(conds.values.mean()) == pytest.approx(0.5)
    assert torch.isnan(conds.null).all()
    bad = tmp_path / "b.npy"
    np.save(bad, np.full((2, 3, 16, 16), -1.0, dtype=np.float32))
    with pytest.raises(UsageError, match=r"in \[0, 1\]"):
        hint_conditions(bad, HINT)


def test_controlnet_usage_errors(setup, tmp_path):
    base, out, hints, _ = setup
    res = invoke(out, "--cond", hints, *FAST)
    assert res.exit_code == 2 and "--base" in res.output
    res = invoke(out, "--base", base, *FAST)
    assert res.exit_code == 2 and "--cond" in res.output
    res = invoke(base, "--controlnet-scale", "0.5", "--cond", hints, *FAST)
    assert res.exit_code == 2 and "not one" in res.output
    assert "Traceback" not in res.output


def test_trend_over_controlnet_training_checkpoints(setup, tmp_path):
    base, _, hints, _ = setup
    run = tmp_path / "run"
    for step, seed in ((100, 2), (300, 3)):
        tiny_controlnet(seed).save_pretrained(str(run / f"checkpoint-{step}" / "controlnet"))
    out = tmp_path / "t.json"
    res = CliRunner().invoke(cli, ["trend", str(run), "--base", str(base), "--cond", str(hints), *FAST,
                                   "--json", str(out)])
    assert res.exit_code in (0, 1), res.output
    data = json.loads(out.read_text())
    assert [s["step"] for s in data["steps"]] == [100, 300]
    assert data["last"]["checkpoint"]["model_class"] == "ControlNetModel"


def test_original_format_controlnet_single_file_is_refused_in_one_line(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "control_sd15_canny.safetensors"
    save_file({"control_model.input_blocks.0.0.weight": torch.zeros(4, 4, 3, 3)}, str(path))
    res = invoke(path, "--cond", tmp_path, "--no-lpips", "-q")
    assert res.exit_code == 3 and "control_model" in res.output and "Traceback" not in res.output


# ------------------------------------------------------------------ (prompt, hint) pairs, as train_controlnet.py


def test_two_prompts_with_two_hints_match_diffusers_controlnet_unet_call_per_pair(setup, tmp_path):
    """Each condition is a (prompt, hint) pair: diffusers' controlnet -> unet call with that prompt's embedding and
    that hint; each pair's null is the base UNet with the same prompt (the ControlNet off)."""
    from collapsecheck.load.conditions import pair_hints_with_prompts
    from collapsecheck.load.pipeline import encode_texts

    base, out, hints, net = setup
    prompts = tmp_path / "p.txt"
    prompts.write_text("a cat\na red house\n")
    ckpt = load_checkpoint(out, base=base, prompts=prompts, controlnet_scale=0.7)
    den = denoiser_for(ckpt)
    assert den.prompts == ("a cat", "a red house")
    conds = pair_hints_with_prompts(hint_conditions(hints, den.hint_shape), den.prompts, str(prompts))
    assert conds.labels == ("a cat | hint0.png", "a red house | hint1.png") and conds.paired_null
    texts, _, _ = encode_texts(base, ["a cat", "a red house"], int(den.model.config.cross_attention_dim))
    images = hint_conditions(hints, den.hint_shape).values
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 8, 8, generator=g)
    t = torch.tensor([500, 500])
    with torch.no_grad():
        down, mid = net(x, t, encoder_hidden_states=texts, controlnet_cond=images, conditioning_scale=0.7,
                        return_dict=False)
        expected = den.model(x, t, encoder_hidden_states=texts, down_block_additional_residuals=down,
                             mid_block_additional_residual=mid).sample
        base_only = den.model(x, t, encoder_hidden_states=texts).sample
        got = den(x, t, conds.values)
        null = den(x, t, conds.null)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(null, base_only, atol=1e-6, rtol=1e-6)
    assert (base_only[0] - base_only[1]).abs().max() > 1e-4  # the prompts differ, and each null keeps its own


def test_pairing_rules_one_hint_many_prompts_and_count_mismatch(setup, tmp_path):
    from collapsecheck.errors import UsageError
    from collapsecheck.load.conditions import pair_hints_with_prompts

    _, _, hints, _ = setup
    two = hint_conditions(hints, HINT)
    one = hint_conditions(write_hints(tmp_path / "one", n=1), HINT)
    paired = pair_hints_with_prompts(one, ["a", "b", "c"], "p.txt")
    assert paired.labels == ("a | hint0.png", "b | hint0.png", "c | hint0.png")
    for row in range(3):
        torch.testing.assert_close(paired.values[row, :3], one.values[0])
        assert float(paired.values[row, 3].unique()) == row and float(paired.null[row, 3, 0, 0]) == row
    assert torch.isnan(paired.null[:, :3]).all()
    with pytest.raises(UsageError, match="holds 3 prompts but --cond .* 2 hints"):
        pair_hints_with_prompts(two, ["a", "b", "c"], "p.txt")


def test_scan_two_prompts_with_two_hints_end_to_end(setup, tmp_path):
    base, out, hints, _ = setup
    prompts = tmp_path / "p.txt"
    prompts.write_text("a cat\na red house\n")
    report = tmp_path / "r.json"
    res = invoke(out, "--base", base, "--cond", hints, "--prompts", prompts, *FAST, "--threshold", "at_risk_rms=10", "--threshold", "at_risk_seed_share=10",
                 "--json", report)
    assert res.exit_code in (0, 1), res.output
    data = json.loads(report.read_text())
    assert data["condition_set"]["labels"] == ["a cat | hint0.png", "a red house | hint1.png"]
    assert "each condition's own prompt" in data["condition_set"]["null"]
    assert [c["label"] for c in data["conditions"]] == data["condition_set"]["labels"]
    assert "(prompt, hint) pair" in " ".join(data["checkpoint"]["notes"])
    three = tmp_path / "three.txt"
    three.write_text("a\nb\nc\n")
    res = invoke(out, "--base", base, "--cond", hints, "--prompts", three, *FAST)
    assert res.exit_code == 2 and "3 prompts" in res.output and "2 hints" in res.output
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1


def test_pairs_split_over_units_give_the_one_batch_numbers(setup, tmp_path):
    """A batch too small for both pairs samples them in two units (collapsecheck.units): each unit must carry its
    own pairs' nulls, so the numbers equal those of one batch."""
    base, out, hints, _ = setup
    prompts = tmp_path / "p.txt"
    prompts.write_text("a cat\na red house\n")
    rows = {}
    for batch in ("256", "8"):
        report = tmp_path / f"r{batch}.json"
        res = invoke(out, "--base", base, "--cond", hints, "--prompts", prompts, *FAST, "--no-recovery",
                     "--batch-size", batch, "--json", report)
        assert res.exit_code in (0, 1), res.output
        rows[batch] = [v for c in json.loads(report.read_text())["conditions"]
                       for v in (c["pixel_rms"], c["seed_share"], c["eps_ratio"])]
    assert rows["8"] == pytest.approx(rows["256"], rel=1e-5)
