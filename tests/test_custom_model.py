"""--model module:function: the shipped example end to end, a dict protocol, and one-line errors."""
import json
from pathlib import Path

import torch
from click.testing import CliRunner

from collapsecheck.cli import cli
from collapsecheck.load.dispatch import load_checkpoint
from collapsecheck.model.build import denoiser_for

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "custom_model.py"
FAST = ["--seeds", "3", "--steps", "2", "--guidance", "0,1", "--no-recovery", "--no-lpips", "-q"]


def invoke(*args):
    return CliRunner().invoke(cli, ["scan", *map(str, args)])


def test_shipped_example_end_to_end(tmp_path):
    weights = tmp_path / "tiny.safetensors"
    from safetensors.torch import save_file

    from collapsecheck.load.custom import load_entry_point

    net_class = load_entry_point(f"{EXAMPLE}:TinyEpsNet")  # what `python examples/custom_model.py FILE` writes
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        save_file(net_class().state_dict(), str(weights))
    out = tmp_path / "r.json"
    res = invoke(weights, "--model", f"{EXAMPLE}:build", *FAST, "--json", out)
    assert res.exit_code in (0, 1), res.output
    data = json.loads(out.read_text())
    assert [c["label"] for c in data["conditions"]] == [f"class {i}" for i in range(4)]
    assert data["checkpoint"]["scheduler_source"].startswith("alphas_cumprod from --model")
    assert data["checkpoint"]["content_hash"]
    assert data["guidance"]["null_branch"]["verdict"] in ("learned", "not_learned", "unclear")


DICT_MODEL = '''
import torch

def build(checkpoint):
    w = torch.nn.Conv2d(1, 1, 1)
    torch.nn.init.constant_(w.weight, 0.5)
    def network(x, t, cond):
        return w(x) + cond.view(-1, 1, 1, 1)
    return {"network": network, "sample_shape": (1, 4, 4), "conditions": torch.tensor([[0.0], [1.0]]),
            "null": torch.tensor([0.5]), "prediction_type": "v_prediction",
            "scheduler_config": {"beta_schedule": "squaredcos_cap_v2", "num_train_timesteps": 100},
            "decode": lambda s: s.repeat(1, 3, 1, 1).tanh()}

def wrong_shape(checkpoint):
    out = build(checkpoint)
    out["network"] = lambda x, t, c: x[:, :, :2]
    return out

def unknown_key(checkpoint):
    return {**build(checkpoint), "nework": None}
'''


def test_dict_protocol_with_plain_function_and_decode(tmp_path):
    (tmp_path / "mymodel.py").write_text(DICT_MODEL)
    ckpt = load_checkpoint(tmp_path, model=f"{tmp_path / 'mymodel.py'}:build")
    assert ckpt.scheduler_config["prediction_type"] == "v_prediction"
    assert ckpt.conditions.null.shape == (1, 1)
    out = tmp_path / "r.json"
    res = invoke(tmp_path, "--model", f"{tmp_path / 'mymodel.py'}:build", *FAST, "--json", out)
    assert res.exit_code in (0, 1), res.output
    data = json.loads(out.read_text())
    assert [c["label"] for c in data["conditions"]] == ["cond 0", "cond 1"]
    grid = denoiser_for(ckpt).decode_grid(torch.zeros(2, 1, 4, 4), 2)
    assert grid.shape == (2, 3, 4, 4)  # the user's decode ran


def test_custom_model_errors_are_one_line(tmp_path):
    (tmp_path / "mymodel.py").write_text(DICT_MODEL)
    spec = str(tmp_path / "mymodel.py")
    cases = [
        (["--model", "nocolon"], 2, "module:function"),
        (["--model", f"{spec}:missing"], 2, "has no function missing"),
        (["--model", f"{tmp_path / 'nope.py'}:build"], 2, "does not exist"),
        (["--model", f"{spec}:unknown_key"], 2, "unknown keys nework"),
        (["--model", f"{spec}:wrong_shape"], 3, "shaped like x_t"),
        (["--model", f"{spec}:build", "--cond", "x.npy"], 2, "leave out --cond"),
    ]
    for args, code, words in cases:
        res = invoke(tmp_path, *args, *FAST)
        assert res.exit_code == code, (args, res.output)
        assert words in res.output and len(res.output.strip().splitlines()) == 1, res.output
