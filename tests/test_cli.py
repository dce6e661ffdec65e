"""The command line end to end on tiny diffusers checkpoints: inputs, outputs, exit codes, errors."""
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from diffusers import DDIMScheduler
from safetensors.torch import save_file

from collapsecheck.cli import cli
from helpers_models import save_bare_safetensors, tiny_class_unet, tiny_concat_unet, tiny_crossattn_unet

FAST = ["--seeds", "3", "--steps", "3", "--guidance", "0,1", "--no-lpips", "-q"]


def invoke(*args):
    result = CliRunner().invoke(cli, ["scan", *map(str, args)])
    return result


@pytest.fixture(scope="module")
def class_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipe")
    tiny_class_unet(num_classes=4).save_pretrained(root / "unet")
    DDIMScheduler(beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction").save_pretrained(root / "scheduler")
    return root


def test_scan_writes_the_documented_json(class_folder, tmp_path):
    out = tmp_path / "r.json"
    res = invoke(class_folder, *FAST, "--json", out)
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    for key in ("schema_version", "config", "versions", "seeds", "verdict", "nfe", "seconds", "conditions", "guidance"):
        assert key in data
    assert data["verdict"] in ("healthy", "at_risk", "collapsed")
    assert data["guidance"]["verdict"] in ("steerable", "weak", "not_steerable")
    assert data["seeds"] == [0, 1, 2]
    assert [c["label"] for c in data["conditions"]] == [f"class {i}" for i in range(4)]
    assert data["checkpoint"]["prediction_type"] == "v_prediction"
    assert data["config"]["guidance"] == [0.0, 1.0]
    # 2 scales x 4 classes x 3 seeds x 3 steps x 2 halves, plus the null-branch probe
    assert data["nfe"] >= 2 * 4 * 3 * 3 * 2
    assert data["lpips"]["available"] is False and "no-lpips" in data["lpips"]["reason"]
    assert data["gate"] == {"fail_on": "collapsed", "passed": True, "failed": [],
                            "checks": [{"axis": "collapsed", "failed": False, "verdict": data["verdict"]}]}
    assert all(c["reasons"] for c in data["conditions"])


def test_gate_fails_with_exit_code_1(class_folder, tmp_path):
    out = tmp_path / "r.json"
    res = invoke(class_folder, *FAST, "--threshold", "at_risk_rms=1e9", "--threshold", "at_risk_seed_share=1e9", "--fail-on", "at_risk", "--json", out)
    assert res.exit_code == 1, res.output
    assert json.loads(out.read_text())["verdict"] == "at_risk"
    assert invoke(class_folder, *FAST, "--threshold", "at_risk_rms=1e9", "--threshold", "at_risk_seed_share=1e9", "--fail-on", "never").exit_code == 0


def test_terminal_report_leads_with_the_verdict(class_folder):
    res = invoke(class_folder, "--seeds", "3", "--steps", "2", "--guidance", "1", "--no-lpips", "--classes", "0-1")
    assert res.exit_code == 0, res.output
    assert res.output.index("collapse:") < res.output.index("Seed diversity")
    assert "What to do" in res.output and "network evaluations" in res.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["--fail-on", "colapsed"], "Did you mean 'collapsed'"),
        (["--threshold", "colapsed_rms=0.1"], "Did you mean 'collapsed_rms'"),
        (["--threshold", "collapsed_rms"], "NAME=VALUE"),
        (["--classes", "0-9"], "out of range"),
        (["--classes", "4"], "null class"),
        (["--cond", "x.npy"], "class labels"),
        (["--seeds", "1"], "at least 2"),
        (["--guidance", "a,b"], "cannot read"),
        (["--weights", "ema"], "must be one of"),
        (["--json", "{folder}/unet/config.json/r.json"], "is a file, not a folder"),
        (["--report-dir", "{folder}/unet/config.json"], "is a file"),
    ],
)
def test_usage_errors_are_one_line_with_exit_code_2(class_folder, args, message):
    res = invoke(class_folder, *FAST, *(a.format(folder=class_folder) for a in args))
    assert res.exit_code == 2, res.output
    assert message in res.output
    assert "Traceback" not in res.output
    assert res.output.strip().count("\n") == 0


def test_missing_checkpoint_is_a_usage_error(tmp_path):
    res = invoke(tmp_path / "nope", *FAST)
    assert res.exit_code == 2 and "does not exist" in res.output


def test_unloadable_checkpoint_exits_3_and_writes_nothing(tmp_path):
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    out = tmp_path / "r.json"
    res = invoke(bad, *FAST, "--json", out)
    assert res.exit_code == 3, res.output
    assert not out.exists()
    assert "Traceback" not in res.output


def test_bare_safetensors_with_metadata_config(tmp_path):
    path = save_bare_safetensors(tiny_class_unet(num_classes=3), tmp_path / "ckpt.safetensors")
    out = tmp_path / "r.json"
    assert invoke(path, *FAST, "--json", out).exit_code == 0
    data = json.loads(out.read_text())
    assert len(data["conditions"]) == 3
    assert "assumed" in data["checkpoint"]["scheduler_source"]


def _concat_folder(tmp_path):
    tiny_concat_unet(cond_channels=1).save_pretrained(tmp_path / "unet")
    return tmp_path


@pytest.mark.parametrize("fmt", ["npy", "safetensors", "pt", "images"])
def test_concat_conditions_in_every_format(tmp_path, fmt):
    root = _concat_folder(tmp_path / "m")
    cond = torch.rand(2, 1, 8, 8) * 2 - 1
    if fmt == "npy":
        path = tmp_path / "c.npy"
        np.save(path, cond.numpy())
    elif fmt == "safetensors":
        path = tmp_path / "c.safetensors"
        save_file({"cond": cond, "null": torch.full((1, 1, 8, 8), -1.0)}, str(path))
    elif fmt == "pt":
        path = tmp_path / "c.pt"
        torch.save({"cond": cond}, path)
    else:
        from PIL import Image

        path = tmp_path / "imgs"
        path.mkdir()
        for i in range(2):
            Image.fromarray((np.random.rand(8, 8) * 255).astype("uint8"), mode="L").save(path / f"{i}.png")
    out = tmp_path / "r.json"
    res = invoke(root, *FAST, "--cond", path, "--json", out)
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert data["condition_set"]["kind"] == "concat" and data["condition_set"]["count"] == 2
    assert data["condition_set"]["null"].startswith("zeros") == (fmt != "safetensors")


def test_concat_order_changes_what_the_network_sees(tmp_path):
    root = _concat_folder(tmp_path / "m")
    path = tmp_path / "c.npy"
    np.save(path, (torch.rand(2, 1, 8, 8) * 2 - 1).numpy())
    runs = {}
    for order in ("after", "before"):
        out = tmp_path / f"{order}.json"
        assert invoke(root, *FAST, "--cond", path, "--concat-order", order, "--json", out).exit_code == 0
        runs[order] = json.loads(out.read_text())["conditions"][0]["pixel_rms"]
    assert runs["after"] != runs["before"]


def test_concat_model_without_cond_says_what_to_pass(tmp_path):
    res = invoke(_concat_folder(tmp_path), *FAST)
    assert res.exit_code == 2 and "--cond" in res.output


def test_concat_cond_of_the_wrong_shape(tmp_path):
    path = tmp_path / "c.npy"
    np.save(path, np.zeros((2, 3, 8, 8), dtype=np.float32))
    res = invoke(_concat_folder(tmp_path / "m"), *FAST, "--cond", path)
    assert res.exit_code == 2 and "expects" in res.output


def test_cross_attention_embeddings(tmp_path):
    tiny_crossattn_unet(cross_dim=16).save_pretrained(tmp_path / "m" / "unet")
    path = tmp_path / "e.safetensors"
    save_file({"cond": torch.randn(3, 2, 16)}, str(path))
    out = tmp_path / "r.json"
    res = invoke(tmp_path / "m", *FAST, "--cond", path, "--json", out)
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert data["condition_set"]["kind"] == "cross_attn" and data["condition_set"]["null"].startswith("zeros")


def test_pickled_condition_files_are_not_unpickled(tmp_path):
    class Evil:
        def __reduce__(self):
            return (open, (str(tmp_path / "pwned"), "w"))

    import pickle

    path = tmp_path / "c.pt"
    with open(path, "wb") as f:
        pickle.dump({"cond": Evil()}, f)
    res = invoke(_concat_folder(tmp_path / "m"), *FAST, "--cond", path)
    assert res.exit_code == 2
    assert not (tmp_path / "pwned").exists()


def test_help_is_fast_and_lists_exit_codes():
    res = CliRunner().invoke(cli, ["scan", "--help"])
    assert res.exit_code == 0 and "Exit codes" in res.output


def test_noise_like_samples_are_flagged(class_folder, tmp_path):
    """An untrained network samples noise: the report says the numbers may not measure images."""
    out = tmp_path / "r.json"
    assert invoke(class_folder, *FAST, "--json", out).exit_code == 0
    data = json.loads(out.read_text())
    mean_rms = sum(c["pixel_rms"] for c in data["conditions"]) / len(data["conditions"])
    flagged = any("as far apart as noise" in n for n in data["checkpoint"]["notes"])
    assert flagged == (mean_rms > 1.0)
    assert flagged  # a random tiny UNet's samples are noise


def test_outputs_may_point_inside_the_report_dir_and_into_new_folders(class_folder, tmp_path):
    """--junit DIR/junit.xml with --report-dir DIR: the folders are made when the files are written."""
    report = tmp_path / "out" / "report"
    res = invoke(class_folder, *FAST, "--report-dir", report, "--junit", report / "junit.xml",
                 "--json", tmp_path / "out" / "deep" / "er" / "scan.json")
    assert res.exit_code == 0, res.output
    assert (report / "index.html").is_file() and (report / "scan.json").is_file()
    assert (report / "junit.xml").read_text().lstrip().startswith("<?xml")
    assert json.loads((tmp_path / "out" / "deep" / "er" / "scan.json").read_text())["verdict"]
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]


def test_a_failed_scan_leaves_no_output_folders_behind(tmp_path):
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    res = invoke(bad, *FAST, "--json", tmp_path / "new" / "r.json", "--report-dir", tmp_path / "new2" / "report")
    assert res.exit_code == 3, res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]


def test_a_failed_write_removes_the_folders_it_made_and_its_temporary_file(tmp_path, monkeypatch):
    import os

    from collapsecheck.cli.outputs import write_file
    from collapsecheck.errors import UsageError

    (tmp_path / "kept").mkdir()
    target = tmp_path / "kept" / "a" / "b" / "r.json"

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(UsageError, match=r"^cannot write .*r\.json: disk full"):  # one line, exit 2
        write_file(target, "{}")
    assert list((tmp_path / "kept").iterdir()) == []
    monkeypatch.undo()
    write_file(target, "{}\n")
    assert target.read_text() == "{}\n" and sorted(p.name for p in target.parent.iterdir()) == ["r.json"]


def _help(command):
    res = CliRunner().invoke(cli, [command, "--help"])
    assert res.exit_code == 0, res.output
    return res.output


def _section(help_text, heading):
    """The lines of one help section: from its heading to the next blank line before a heading."""
    start = help_text.index(f"\n{heading}:\n")
    end = help_text.find(":\n", start + len(heading) + 3)
    end = help_text.rfind("\n\n", start, end) if end != -1 else len(help_text)
    return help_text[start:end]


def test_scan_help_lists_options_in_sections_in_order():
    text = _help("scan")
    headings = ["Input", "Sampling", "Measures", "Gate", "Outputs", "Examples"]
    positions = [text.index(f"\n{h}:\n") for h in headings]
    assert positions == sorted(positions)
    expected = {"Input": ["--cond", "--weights", "--prompts", "--lora", "--model"],
                "Sampling": ["--seeds", "--steps", "--guidance", "--mode", "--device"],
                "Measures": ["--lpips", "--recovery", "--posterior", "--adherence"],
                "Gate": ["--fail-on", "--threshold", "--baseline", "--max-regression", "--max-drop"],
                "Outputs": ["--json", "--report-dir", "--junit", "--quiet"]}
    for heading, options in expected.items():
        section = _section(text, heading)
        for name in options:
            assert f" {name} " in section or f" {name}/" in section, (heading, name)
    assert "collapsecheck scan examples/digits-healthy" in _section(text, "Examples")


@pytest.mark.parametrize("command", ["scan", "compare", "trend"])
def test_every_command_has_examples_that_name_itself(command):
    examples = _section(_help(command), "Examples").splitlines()[2:]
    assert examples and all(line.strip().startswith(f"collapsecheck {command} ") for line in examples if line.strip())


def test_fixed_sets_show_as_choices():
    text = _help("scan")
    for shown in ("--weights [auto|unet|unet_ema]", "--prediction-type [epsilon|v_prediction|sample]",
                  "--concat-order [after|before]", "--mode [full|fast]", "--device [auto|cpu|cuda|cuda:N|mps]",
                  "--dtype [float32|float16|bfloat16]", "--lpips-net [alex|vgg]", "--fail-on AXIS[,AXIS...]"):
        assert shown in text, shown
    fail_on_help = " ".join(text[text.index("--fail-on AXIS"):].split())
    for axis in ("collapsed", "at_risk", "weak", "not_steerable", "null_not_learned", "never"):
        assert axis in fail_on_help[:600], axis


def test_the_choices_are_the_values_the_library_accepts():
    from typing import get_args

    from collapsecheck import make_config
    from collapsecheck.cli import options
    from collapsecheck.load.scheduler import PREDICTION_TYPES
    from collapsecheck.model.denoiser import ConcatOrder

    assert options.PREDICTION_TYPES == PREDICTION_TYPES
    assert options.CONCAT_ORDERS == get_args(ConcatOrder)
    for field, values in (("weights", options.WEIGHTS), ("device", ("auto", "cpu", "cuda", "cuda:1", "mps")), ("dtype", options.DTYPES),
                          ("lpips_net", options.LPIPS_NETS), ("mode", options.MODES)):
        for value in values:
            assert getattr(make_config(checkpoint="x", **{field: value}), field) == value


def test_help_does_not_import_torch():
    import subprocess
    import sys

    code = ("import sys; from collapsecheck.cli import cli\n"
            "for c in ('scan', 'compare', 'trend'):\n"
            "    try: cli([c, '--help'])\n"
            "    except SystemExit: pass\n"
            "print(sorted(m for m in ('torch', 'diffusers', 'numpy', 'rich') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("flag", ["--json", "--plot", "--report-dir", "--cache-dir"])
def test_trend_output_paths_are_checked_before_any_scan(tmp_path, flag):
    tiny_class_unet(num_classes=2).save_pretrained(tmp_path / "run" / "checkpoint-1" / "unet")
    (tmp_path / "file").write_text("x")
    res = CliRunner().invoke(cli, ["trend", str(tmp_path / "run"), *FAST, flag, str(tmp_path / "file" / "out")])
    assert res.exit_code == 2, res.output
    assert "is a file, not a folder" in res.output and res.output.strip().count("\n") == 0
    assert not (tmp_path / "run" / ".collapsecheck-cache").exists()
