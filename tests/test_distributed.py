"""Several processes on one scan: torchrun with 2 CPU processes (gloo) against one process."""
import json
import socket
import subprocess
import sys

from test_resume import SMALL, class_model, cli_env, without_run_facts


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_with_two_processes_gives_the_one_process_numbers(tmp_path):
    model = class_model(tmp_path / "m", classes=5)
    scan = ["-m", "collapsecheck", "scan", str(model), *SMALL, "--steps", "3", "--seeds", "2"]
    two, one = tmp_path / "two" / "scan.json", tmp_path / "one.json"
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                          "--master-port", str(free_port()), *scan, "--json", str(two)],
                         env=cli_env(), capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]
    subprocess.run([sys.executable, *scan, "--json", str(one)], env=cli_env(), check=True, timeout=240)
    a, b = without_run_facts(one), without_run_facts(two)
    assert (a.pop("world_size"), b.pop("world_size")) == (1, 2)
    assert [c["pixel_rms"] for c in a["conditions"]] == [c["pixel_rms"] for c in b["conditions"]]
    assert a == b
    assert sorted(p.name for p in two.parent.iterdir()) == ["scan.json"]  # rank 1 wrote nothing, no temporaries


def test_trend_checkpoints_are_shared_among_ranks_and_gathered_on_rank_0(tmp_path, monkeypatch):
    import collapsecheck.trend as trend_module
    from collapsecheck.config import make_config
    from collapsecheck.distributed import World
    from test_trend import _fake_result

    plan = {10: ("healthy", 0.5), 20: ("at_risk", 0.2), 30: ("healthy", 0.4), 40: ("collapsed", 0.02), 50: ("collapsed", 0.01)}
    for step in plan:
        (tmp_path / f"checkpoint-{step}").mkdir()
        (tmp_path / f"checkpoint-{step}" / "w.safetensors").write_bytes(str(step).encode())
    calls = {}

    def scanner(rank):
        def fake_scan(config, progress=None):
            calls.setdefault(rank, []).append(int(config.checkpoint.rsplit("-", 1)[1]))
            return _fake_result(*plan[int(config.checkpoint.rsplit("-", 1)[1])])
        return fake_scan

    cfg = make_config(checkpoint=str(tmp_path), seeds=2, steps=1, lpips=False)
    one = trend_module.run_trend(tmp_path, cfg, cache_dir=None, scan_fn=scanner("one"), fail_on="at_risk")
    sent = {}
    monkeypatch.setattr(trend_module, "gather", lambda value, world: sent.setdefault(world.rank, value) and None)
    assert trend_module.run_trend(tmp_path, cfg, cache_dir=None, scan_fn=scanner(1), world=World(1, 2)) is None
    monkeypatch.setattr(trend_module, "gather", lambda value, world: [value, sent[1]])
    two = trend_module.run_trend(tmp_path, cfg, cache_dir=None, scan_fn=scanner(0), fail_on="at_risk", world=World(0, 2))
    assert calls == {"one": [10, 20, 30, 40, 50], 1: [20, 40], 0: [10, 30, 50]}
    assert sent[1][1][1] is None  # rank 1 sends the rows, not full results it does not hold last
    a, b = one.to_dict(), two.to_dict()
    a.pop("created"), b.pop("created")
    assert a == b
