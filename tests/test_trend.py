"""Checkpoint trends: discovery and ordering, onset detection, the cache, and the trend command end to end."""
import json
from types import SimpleNamespace

import pytest
from click.testing import CliRunner
from diffusers import DDIMScheduler
from PIL import Image

from collapsecheck import make_config

from collapsecheck import run as scanner
from collapsecheck.cli import cli
from collapsecheck.errors import UsageError
from collapsecheck.trend import (
    CACHE_DIRNAME,
    cache_key,
    content_hash,
    find_checkpoints,
    largest_drop,
    onset,
    parse_step,
    run_trend,
    scan_settings,
)
from helpers_models import save_bare_safetensors, tiny_class_unet

FAST = ["--seeds", "2", "--steps", "1", "--guidance", "1", "--no-lpips", "--classes", "0-1"]


# ------------------------------------------------------------------------------------------ pure


@pytest.mark.parametrize("name, expected", [
    ("checkpoint-4000", (4000, "step")),
    ("model-step004000.safetensors", (4000, "step")),
    ("epoch_12.safetensors", (12, "epoch")),
    ("sd15-ft-v2-step-300.safetensors", (300, "step")),
    ("global_step1200.ckpt", (1200, "step")),
    ("unet_8000.safetensors", (8000, "step")),
    ("model.safetensors", None),
])
def test_step_numbers_from_names(name, expected):
    assert parse_step(name) == expected


@pytest.mark.parametrize("verdicts, expected", [
    ([(1, "healthy"), (2, "healthy"), (3, "at_risk"), (4, "collapsed")], 3),
    ([(1, "healthy"), (2, "at_risk"), (3, "healthy"), (4, "at_risk"), (5, "collapsed")], 4),  # a relapse
    ([(1, "at_risk"), (2, "healthy")], None),  # recovered: no onset
    ([(1, "collapsed"), (2, "collapsed")], 1),  # collapsed from the first checkpoint
    ([(1, "healthy")], None),
    ([], None),
])
def test_onset_is_the_first_step_from_which_the_verdict_stays_unhealthy(verdicts, expected):
    assert onset(verdicts) == expected


def test_largest_drop_names_the_step_it_arrived_at():
    drop = largest_drop([(10, 0.5), (20, 0.45), (30, 0.1), (40, 0.2), (50, None), (60, 0.15)])
    assert drop["step"] == 30 and drop["previous_step"] == 20
    assert drop["drop"] == pytest.approx(0.35) and drop["relative"] == pytest.approx(0.35 / 0.45)
    assert largest_drop([(1, 0.1), (2, 0.2)]) is None


def test_checkpoints_are_found_in_numeric_order(tmp_path):
    for n in (1000, 30, 200):
        (tmp_path / f"checkpoint-{n}").mkdir()
    (tmp_path / "checkpoint-final").mkdir()  # no number: not a checkpoint
    (tmp_path / CACHE_DIRNAME).mkdir()
    (tmp_path / "optimizer.bin").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("x")
    assert [c.step for c in find_checkpoints(tmp_path)] == [30, 200, 1000]


def test_weight_files_with_step_numbers(tmp_path):
    for name in ("model-step004000.safetensors", "model-step000500.safetensors", "model.safetensors"):
        (tmp_path / name).write_bytes(b"x")
    found = find_checkpoints(tmp_path)
    assert [(c.step, c.path.name) for c in found] == [(500, "model-step000500.safetensors"), (4000, "model-step004000.safetensors")]


@pytest.mark.parametrize("names, message", [
    ([], "no checkpoints"),
    (["checkpoint-100/", "model-step100.safetensors"], "claim step 100"),
    (["epoch_1.safetensors", "model-step100.safetensors"], "mixes"),
])
def test_checkpoint_discovery_errors(tmp_path, names, message):
    for name in names:
        if name.endswith("/"):
            (tmp_path / name).mkdir()
        else:
            (tmp_path / name).write_bytes(b"x")
    with pytest.raises(UsageError, match=message):
        find_checkpoints(tmp_path)


def test_content_hash_follows_weights_and_configs_not_training_state(tmp_path):
    ck = tmp_path / "checkpoint-1"
    (ck / "unet").mkdir(parents=True)
    (ck / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"w1")
    (ck / "unet" / "config.json").write_text("{}")
    first = content_hash(ck)
    (ck / "optimizer.bin").write_bytes(b"state")
    (ck / "random_states_0.pkl").write_bytes(b"rng")
    assert content_hash(ck) == first
    (ck / "unet" / "config.json").write_text('{"a": 1}')
    assert content_hash(ck) != first
    (tmp_path / "scheduler").mkdir()
    (tmp_path / "scheduler" / "scheduler_config.json").write_text("{}")
    assert content_hash(ck) != first  # the run's scheduler/ decides the schedule of checkpoint-N/


def test_cache_key_changes_with_any_setting_but_not_the_checkpoint_path(tmp_path):
    a = scan_settings(make_config(checkpoint="x", seeds=4))
    assert a == scan_settings(make_config(checkpoint="y", seeds=4))
    assert cache_key("h", a) != cache_key("h", scan_settings(make_config(checkpoint="x", seeds=5)))
    assert cache_key("h", a) != cache_key("h2", a)


def _fake_result(verdict, rms):
    data = {
        "schema_version": "1.1", "verdict": verdict, "seconds": 0.1,
        "guidance": {"verdict": "steerable", "max_shift": 0.2, "null_branch": {"verdict": "learned"}},
        "conditions": [{"label": "class 0", "verdict": verdict, "pixel_rms": rms, "seed_share": rms, "lpips": None,
                        "near_duplicates": 0.0, "eps_ratio": 1.0 - rms}],
    }
    return SimpleNamespace(to_dict=lambda: data)


def test_run_trend_with_a_fake_scan(tmp_path):
    plan = {10: ("healthy", 0.5), 20: ("at_risk", 0.2), 30: ("healthy", 0.4), 40: ("collapsed", 0.02)}
    for step in plan:
        (tmp_path / f"checkpoint-{step}").mkdir()
        (tmp_path / f"checkpoint-{step}" / "w.safetensors").write_bytes(str(step).encode())
    calls = []

    def fake_scan(config, progress=None):
        calls.append(config.checkpoint)
        return _fake_result(*plan[int(config.checkpoint.rsplit("-", 1)[1])])

    cfg = make_config(checkpoint=str(tmp_path), seeds=2, steps=1, lpips=False)
    trend = run_trend(tmp_path, cfg, cache_dir=None, scan_fn=fake_scan, fail_on="at_risk")
    assert [r["step"] for r in trend.steps] == [10, 20, 30, 40]
    assert trend.onset == 40 and trend.largest_drop["step"] == 40
    assert trend.gate == {"fail_on": "at_risk", "passed": False, "checkpoint": str(tmp_path / "checkpoint-40"),
                          "checks": [{"axis": "at_risk", "failed": True, "verdict": "collapsed"}], "failed": ["at_risk"]}
    assert len(calls) == 4 and trend.cache["folder"] is None


# ------------------------------------------------------------------------------------ end to end


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    for i, step in enumerate((1000, 30, 200)):  # created out of order; 1000 sorts before 200 as text
        tiny_class_unet(num_classes=2, seed=i).save_pretrained(root / f"checkpoint-{step}" / "unet")
    DDIMScheduler().save_pretrained(root / "scheduler")
    return root


def test_trend_command_scans_in_step_order_and_reuses_the_cache(run_folder, tmp_path, monkeypatch):
    out, plot = tmp_path / "t.json", tmp_path / "t.png"
    res = CliRunner().invoke(cli, ["trend", str(run_folder), *FAST, "--json", str(out), "--plot", str(plot)])
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert [s["step"] for s in data["steps"]] == [30, 200, 1000]
    assert [s["cached"] for s in data["steps"]] == [False] * 3
    assert {s["verdict"] for s in data["steps"]} <= {"healthy", "at_risk", "collapsed"}
    assert data["last"]["checkpoint"]["path"].endswith("checkpoint-1000")
    assert data["gate"]["checkpoint"].endswith("checkpoint-1000")
    for key in ("step", "verdict", "pixel_rms", "seed_share", "lpips", "eps_ratio", "null_branch", "guidance"):
        assert key in data["steps"][0]
    lines = res.output.splitlines()
    rows = [ln.split()[0] for ln in lines if ln.strip() and ln.split()[0] in ("30", "200", "1000")]
    assert rows == ["30", "200", "1000"]
    assert Image.open(plot).size[0] == 820
    assert len(list((run_folder / CACHE_DIRNAME).glob("*.json"))) == 3

    def must_not_scan(config, progress=None):
        raise AssertionError(f"scanned {config.checkpoint} again")

    monkeypatch.setattr(scanner, "scan", must_not_scan)
    again = CliRunner().invoke(cli, ["trend", str(run_folder), *FAST, "--json", str(out), "--report-dir", str(tmp_path / "rep")])
    assert again.exit_code == 0, again.output
    data2 = json.loads(out.read_text())
    assert [s["cached"] for s in data2["steps"]] == [True] * 3
    assert [s["pixel_rms"] for s in data2["steps"]] == [s["pixel_rms"] for s in data["steps"]]
    assert "3 of 3 results reused" in " ".join(again.output.split())
    assert sorted(p.name for p in (tmp_path / "rep").iterdir()) == ["trend.json", "trend.md", "trend.png"]

    # another setting is another cache entry; --no-cache never reads the cache
    for extra in (["--seed", "5"], ["--no-cache"]):
        res = CliRunner().invoke(cli, ["trend", str(run_folder), *FAST, *extra])
        # the fake scanner's AssertionError is, to the CLI, a bug of collapsecheck: exit 5 with its traceback
        assert res.exit_code == 5 and "AssertionError: scanned" in res.output, res.output


def test_trend_exit_code_follows_fail_on_for_the_last_checkpoint(tmp_path, monkeypatch):
    plan = {1: ("collapsed", 0.01), 2: ("healthy", 0.5)}
    for step in plan:
        (tmp_path / f"checkpoint-{step}").mkdir()
    monkeypatch.setattr(scanner, "scan", lambda config, progress=None: _fake_result(*plan[int(config.checkpoint[-1])]))
    assert CliRunner().invoke(cli, ["trend", str(tmp_path), "--no-cache", "-q"]).exit_code == 0
    plan[2] = ("at_risk", 0.1)
    res = CliRunner().invoke(cli, ["trend", str(tmp_path), "--no-cache", "--fail-on", "at_risk"])
    assert res.exit_code == 1, res.output
    assert "collapse began at step 1" in " ".join(res.output.split())


def test_trend_usage_errors(tmp_path):
    res = CliRunner().invoke(cli, ["trend", str(tmp_path)])
    assert res.exit_code == 2 and "no checkpoints" in res.output
    res = CliRunner().invoke(cli, ["trend", str(tmp_path / "missing")])
    assert res.exit_code == 2 and "not a folder" in res.output


def test_trend_over_bare_weight_files(tmp_path, monkeypatch):
    for i, step in enumerate((4000, 500)):
        save_bare_safetensors(tiny_class_unet(num_classes=2, seed=i), tmp_path / f"model-step{step:06d}.safetensors")
    seen = []

    def fake(config, progress=None):
        seen.append(config.checkpoint)
        return _fake_result("healthy", 0.5)

    monkeypatch.setattr(scanner, "scan", fake)
    res = CliRunner().invoke(cli, ["trend", str(tmp_path), "--cache-dir", str(tmp_path / "cache"), "-q"])
    assert res.exit_code == 0, res.output
    assert [p.rsplit("/", 1)[1] for p in seen] == ["model-step000500.safetensors", "model-step004000.safetensors"]
    assert len(list((tmp_path / "cache").glob("*.json"))) == 2
