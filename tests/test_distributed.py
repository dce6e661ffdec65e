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
