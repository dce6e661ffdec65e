"""examples/truth_repeat.py (the brute force measured twice) and ground_truth.py's --seed-offset."""
import copy
import importlib.util
import json
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture(scope="module")
def repeat():
    spec = importlib.util.spec_from_file_location("truth_repeat_script", EXAMPLES / "truth_repeat.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def committed() -> dict:
    return json.loads((EXAMPLES / "latent_zoo" / "ground_truth.json").read_text())["models"]


def test_the_seed_offset_moves_every_x_t_seed_and_zero_keeps_the_committed_ones(latent_truth, monkeypatch):
    assert latent_truth.seed_list(3) == [0, 1, 2]
    monkeypatch.setattr(latent_truth, "SEED_OFFSET", 1000)
    assert latent_truth.seed_list(3) == [1000, 1001, 1002]


def run_lines(repeat, latent_truth, first: dict, second: dict) -> list[str]:
    lines: list[str] = []
    repeat.compare_runs(latent_truth, first, second, say=lines.append)
    return lines


def test_a_run_compared_with_itself_agrees_on_every_axis(repeat, latent_truth, committed):
    some = {k: committed[k] for k in list(committed)[:16]}
    lines = run_lines(repeat, latent_truth, some, some)
    for axis in ("collapse", "null_branch", "guidance"):
        assert any(line.startswith(f"{axis}: 16/16") for line in lines), lines
    assert lines[-1] == "labels that moved: none"


def test_a_label_that_moved_is_counted_and_named(repeat, latent_truth, committed):
    some = {k: committed[k] for k in list(committed)[:16]}
    other = copy.deepcopy(some)
    key = next(iter(other))
    was = other[key]["labels"]["guidance"]
    now = "weak" if was != "weak" else "steerable"
    other[key]["labels"]["guidance"] = now
    lines = run_lines(repeat, latent_truth, some, other)
    assert any(line.startswith("guidance: 15/16") for line in lines), lines
    assert any(line.startswith("collapse: 16/16") for line in lines), lines
    assert lines[-1] == f"labels that moved: {key}: {was} -> {now}"
