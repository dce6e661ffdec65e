"""Resumable scans (--resume DIR): atomic state, a scan killed with SIGKILL and resumed, the units' split."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from diffusers import DDIMScheduler

from collapsecheck.distributed import World, shard, world_from_env
from collapsecheck.errors import UsageError
from collapsecheck.state import ScanState, atomic_write, state_key
from collapsecheck.units import unit_blocks, unit_size
from helpers_models import tiny_class_unet

REPO = Path(__file__).resolve().parents[1]


def cli_env() -> dict:
    # one thread, as torchrun sets it: the same reductions in every run compared
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return env


def class_model(root: Path, classes: int) -> Path:
    tiny_class_unet(num_classes=classes).save_pretrained(root / "unet")
    DDIMScheduler(beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction").save_pretrained(root / "scheduler")
    return root


SMALL = ["--device", "cpu", "--seeds", "3", "--steps", "4", "--batch-size", "4", "--no-lpips", "--no-posterior",
         "--guidance", "1,3", "-q"]


def without_run_facts(path: Path) -> dict:
    data = json.loads(path.read_text())
    for key in ("created", "seconds"):
        data.pop(key)
    return data


@pytest.mark.parametrize("count,size", [(0, 3), (1, 1), (7, 3), (10, 4), (9, 9)])
def test_units_and_shards_partition_the_work_in_order(count, size):
    blocks = unit_blocks(count, size)
    assert [c for a, b in blocks for c in range(a, b)] == list(range(count))
    for world_size in (1, 2, 3, 5):
        shards = [shard(len(blocks), World(r, world_size)) for r in range(world_size)]
        assert sorted(i for s in shards for i in s) == list(range(len(blocks)))
        assert all(s == sorted(s) for s in shards)
        assert shards == [shard(len(blocks), World(r, world_size)) for r in range(world_size)]  # stable


def test_unit_size_fills_a_batch_and_never_depends_on_the_processes():
    assert unit_size(256, 3 * 16) == 2  # 128 cells per chunk hold two conditions of 48 cells
    assert unit_size(8, 12) == 1
    assert unit_size(10_000, 4) == 1250


def test_world_from_env():
    assert world_from_env({}) == World(0, 1, 0)
    assert world_from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}) == World(3, 4, 1)
    with pytest.raises(UsageError, match="RANK 4"):
        world_from_env({"RANK": "4", "WORLD_SIZE": "4"})


def test_atomic_write_leaves_the_old_file_when_the_rename_never_comes(tmp_path, monkeypatch):
    target = tmp_path / "unit.json"
    atomic_write(target, b"old")

    def killed(src, dst):
        raise KeyboardInterrupt  # the process dies between writing the temporary file and renaming it

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, b"new")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["unit.json"]


def test_state_is_keyed_by_its_inputs_and_redoes_unreadable_files(tmp_path):
    inputs = {"content_hash": "abc", "config": {"seeds": 4}}
    assert state_key(inputs) != state_key({**inputs, "config": {"seeds": 5}})
    state = ScanState(tmp_path, inputs)
    state.save_tensors("unit-a", {"x": torch.arange(6.0)}, {"nfe": 12})
    tensors, meta = ScanState(tmp_path, inputs).load_tensors("unit-a")
    assert torch.equal(tensors["x"], torch.arange(6.0)) and meta == {"nfe": 12}
    path = state.folder / "unit-a.safetensors"
    path.write_bytes(path.read_bytes()[:20])  # truncated: read as work not done
    assert state.load_tensors("unit-a") is None
    assert ScanState(tmp_path, {**inputs, "content_hash": "abd"}).load_tensors("unit-a") is None


def test_a_scan_killed_with_sigkill_and_resumed_gives_the_uninterrupted_json(tmp_path):
    model = class_model(tmp_path / "m", classes=9)
    state, killed_json = tmp_path / "state", tmp_path / "out" / "killed.json"
    args = [sys.executable, "-m", "collapsecheck", "scan", str(model), *SMALL, "--resume", str(state)]
    proc = subprocess.Popen(args + ["--json", str(killed_json)], env=cli_env(), stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not list(state.glob("*/unit-*.safetensors")):
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    units = sorted(state.glob("*/unit-*.safetensors"))
    assert 1 <= len(units) < 8, "the scan was killed mid-way: some units saved, not all"
    assert not killed_json.parent.exists() or not any(killed_json.parent.iterdir())  # no report, whole or half
    first, first_time = units[0], units[0].stat().st_mtime_ns

    subprocess.run(args + ["--json", str(tmp_path / "resumed.json")], env=cli_env(), check=True)
    subprocess.run(args[:-2] + ["--json", str(tmp_path / "whole.json")], env=cli_env(), check=True)
    assert first.stat().st_mtime_ns == first_time  # read back, not sampled again
    assert len(list(state.glob("*/unit-*.safetensors"))) == 9
    resumed, whole = without_run_facts(tmp_path / "resumed.json"), without_run_facts(tmp_path / "whole.json")
    assert resumed == whole
    assert whole["world_size"] == 1 and len(whole["conditions"]) == 9


def test_trend_reads_back_the_units_scans_on_other_nodes_saved(tmp_path, monkeypatch):
    import collapsecheck.stages as stages
    import collapsecheck.units as units
    from collapsecheck.config import make_config
    from collapsecheck.run import scan
    from collapsecheck.trend import run_trend

    run = tmp_path / "run"
    for i, step in enumerate((10, 20)):
        tiny_class_unet(num_classes=3, seed=i).save_pretrained(run / f"checkpoint-{step}" / "unet")
    DDIMScheduler().save_pretrained(run / "scheduler")
    settings = dict(seeds=2, steps=3, batch_size=4, lpips=False, posterior=False, recovery=False, device="cpu",
                    guidance=(1.0, 3.0))
    state = tmp_path / "state"
    nodes = [scan(make_config(checkpoint=str(run / f"checkpoint-{step}"), **settings), resume=str(state))
             for step in (10, 20)]  # as jobs on two nodes would, by path

    def no_sampling(*args, **kwargs):
        raise AssertionError("sampled again")

    monkeypatch.setattr(units, "sample_grid", no_sampling)
    monkeypatch.setattr(stages, "probe_null_branch", no_sampling)
    trend = run_trend(run, make_config(checkpoint=str(run), **settings), cache_dir=None, resume=str(state))
    assert [r["pixel_rms"] for r in trend.steps] == [n.to_dict()["guidance"]["sweep"][0]["pixel_rms"] for n in nodes]
    assert trend.last["conditions"] == nodes[-1].to_dict()["conditions"]
